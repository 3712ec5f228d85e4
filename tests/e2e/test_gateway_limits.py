"""What a client cannot do to a running gateway (uvloop + httptools, as ``kimi-modes serve``
runs): hold memory with a body over the limit, hold a connection with slow headers or a
slow body, or turn its own disconnect into a server error. Raw sockets, since ordinary
clients do not misbehave this way."""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

CHUNK = b"x" * 65536
MiB = 1024 * 1024

_APIS = [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")]


def _gateway(start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
             port: int, server: str) -> Any:
    # The upstream is never reached: everything here happens while the request is read.
    return start_gateway(upstream_toml(f"http://127.0.0.1:{port}/v1", extra='model = "m"\n')
                         + "[server]\n" + server)


def _connect(gw: Any) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _head(path: str, *lines: str, complete: bool = True) -> bytes:
    """A request's header block (without its closing blank line unless ``complete``)."""
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            + "".join(line + "\r\n" for line in lines) + ("\r\n" if complete else "")).encode()


def _read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the response on ``sock`` (read until it is complete)."""
    data = b""
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not piece:
            break
        data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "no response"
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def _send_until_answered(sock: socket.socket, pieces: Any, every: float = 0.0,
                         limit: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``pieces`` (``every`` seconds apart) until the gateway answers or stops
    listening; then read its answer."""
    deadline = time.monotonic() + limit
    for piece in pieces:
        if time.monotonic() > deadline:
            pytest.fail(f"no answer within {limit} s")
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
    return _read_response(sock, time.monotonic() + 10)


def _error_shape(api: str, body: bytes) -> dict[str, Any]:
    """The error object of an OpenAI or Anthropic error body (asserting the shape)."""
    parsed = httpx.Response(200, content=body).json()
    if api == "anthropic":
        assert parsed["type"] == "error"
    return dict(parsed["error"])


def _vm(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory figure (``VmRSS``, ``VmHWM``) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_a_chunked_body_over_the_limit_is_refused_while_read(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        unused_port: int) -> None:
    limit = 4 * MiB
    gw = _gateway(start_gateway, upstream_toml, unused_port, f"max_body_bytes = {limit}\n")
    # One request first, so that what the first one loads is not counted.
    assert httpx.post(gw.v1 + "/chat/completions", content=b"{}").status_code == 400
    peak_before = _vm(gw.process.pid, "VmHWM")
    upload = 128 * MiB  # 32 times the limit, generated as it is sent
    for path, api in _APIS:
        with _connect(gw) as sock:
            sock.sendall(_head(path, "Transfer-Encoding: chunked"))
            chunks = (b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) for _ in range(upload // len(CHUNK)))
            status, headers, body = _send_until_answered(sock, chunks)
        assert status == 413, body
        assert headers.get("connection") == "close"
        error = _error_shape(api, body)
        assert f"larger than {limit} bytes" in error["message"]
    # The peak resident size: what the body would have cost had it been read whole.
    grown = _vm(gw.process.pid, "VmHWM") - peak_before
    assert grown < 2 * limit, f"the gateway grew by {grown / MiB:.0f} MiB"
    assert "Traceback" not in gw.output()


def test_headers_sent_too_slowly_lose_the_connection(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        unused_port: int) -> None:
    gw = _gateway(start_gateway, upstream_toml, unused_port, "header_timeout = 1\n")
    started = time.monotonic()
    closed = False
    with _connect(gw) as sock:
        head = _head("/v1/chat/completions", complete=False) + b"X-Slow: " + b"a" * 1000
        for byte in head:  # a byte every 0.1 s: 100 s for the lot, far beyond the timeout
            try:
                sock.sendall(bytes([byte]))
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable and sock.recv(1024) == b"":
                    closed = True
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed or time.monotonic() - started > 15:
                break
    assert closed, "the connection was still open after 15 s"
    assert time.monotonic() - started >= 0.9  # not before the timeout
    # A prompt client on a new connection is served as usual.
    assert httpx.get(gw.url + "/health").status_code == 200


@pytest.mark.parametrize(("path", "api"), _APIS)
def test_a_body_sent_too_slowly_is_408(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        unused_port: int, path: str, api: str) -> None:
    gw = _gateway(start_gateway, upstream_toml, unused_port, "body_timeout = 1\n")
    with _connect(gw) as sock:
        sock.sendall(_head(path, "Content-Length: 1000"))
        trickle = (b"{" if i == 0 else b" " for i in range(1000))  # 1000 s at one byte/s
        status, headers, body = _send_until_answered(sock, trickle, every=0.2, limit=15)
    assert status == 408, body
    assert headers.get("connection") == "close"
    error = _error_shape(api, body)
    assert "did not arrive within 1 s" in error["message"]
    if api == "anthropic":
        assert error["type"] == "timeout_error"


def test_a_client_leaving_mid_body_is_a_disconnect_not_an_error(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        unused_port: int) -> None:
    gw = _gateway(start_gateway, upstream_toml, unused_port, "")
    with _connect(gw) as sock:
        sock.sendall(_head("/v1/chat/completions", "Content-Length: 100000") + b'{"model": ')
        time.sleep(0.3)  # the app is reading the body now
    counted = 'kimi_modes_client_disconnects_total{api="chat_completions"} 1.0'
    deadline = time.monotonic() + 10
    while counted not in (metrics := httpx.get(gw.url + "/metrics").text):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.1)
    assert re.search(r'kimi_modes_requests_total\{api="chat_completions",model="unknown",'
                     r'status="499"\} 1\.0', metrics), metrics
    assert 'status="500"' not in metrics
    log = gw.output()
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "the client disconnected while sending the request body" in log
