"""Security cases of a real gateway (``kimi-modes serve``) that the other suites do not hold:
keys stay on their side (a client's key never goes upstream, the upstream's key never comes
back to a client, not even when the upstream refuses it) and a body declared larger than the
limit is refused before any of it is read."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

CLIENT_KEY = "sk-client-7d2e"
UPSTREAM_KEY = "sk-upstream-91ab"
_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}'
    b"\n\ndata: [DONE]\n\n")


class _Upstream(BaseHTTPRequestHandler):
    """An engine that records every header block and serves only ``Bearer UPSTREAM_KEY``;
    its refusal repeats the key it got, as some servers' error messages do."""

    seen: list[dict[str, str]]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(dict(self.headers.items()))
        auth = self.headers.get("Authorization", "")
        if auth == f"Bearer {UPSTREAM_KEY}":
            status, body, ctype = 200, _STREAM, "text/event-stream"
        else:
            status, ctype = 401, "application/json"
            body = b'{"error": {"message": "invalid key %s"}}' % auth.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Handler", (_Upstream,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler.seen
    server.shutdown()
    server.server_close()


def _ask(gw: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.v1 + "/chat/completions", headers=headers, timeout=30, json={
        "model": "kimi-k2.5-instant", "messages": [{"role": "user", "content": "x"}]})


def test_the_client_key_never_goes_upstream(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        upstream: tuple[str, list[dict[str, str]]]) -> None:
    # Tries: a key holder's request, by both key headers. Must not happen: the client's key
    # in any header the upstream sees; the upstream's key in the client's answer.
    url, seen = upstream
    config = upstream_toml(url, extra='model = "m"\napi_key_env = "UP_KEY"\n')
    gw = start_gateway(config + f'[server]\napi_keys = ["{CLIENT_KEY}"]\n',
                       env={"UP_KEY": UPSTREAM_KEY})
    for headers in ({"Authorization": f"Bearer {CLIENT_KEY}"}, {"x-api-key": CLIENT_KEY}):
        resp = _ask(gw, headers)
        assert resp.status_code == 200, resp.text
        assert UPSTREAM_KEY not in resp.text and UPSTREAM_KEY not in str(resp.headers)
    assert len(seen) == 2
    for request in seen:
        assert CLIENT_KEY not in str(request)
        assert request.get("Authorization") == f"Bearer {UPSTREAM_KEY}"
    assert UPSTREAM_KEY not in gw.output() and CLIENT_KEY not in gw.output()


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_refusing_its_key_does_not_show_the_key(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        upstream: tuple[str, list[dict[str, str]]], stream: bool) -> None:
    # Tries: an upstream whose 401 echoes the (wrong) key the gateway sent. Must not happen:
    # that key in the client's answer.
    url, seen = upstream
    wrong = "sk-upstream-wrong-55c3"
    gw = start_gateway(upstream_toml(url, name="gpu",
                                     extra=f'model = "m"\napi_key = "{wrong}"\n')
                       + f'[server]\napi_keys = ["{CLIENT_KEY}"]\n')
    keyed = {"Authorization": f"Bearer {CLIENT_KEY}"}
    resp = httpx.post(gw.v1 + "/chat/completions", headers=keyed, timeout=30, json={
        "model": "kimi-k2.5-instant", "stream": stream,
        "messages": [{"role": "user", "content": "x"}]})
    assert seen and seen[-1]["Authorization"] == f"Bearer {wrong}"  # it was refused
    assert resp.status_code >= 400 or stream, resp.text
    assert wrong not in resp.text and "gpu" in resp.text


def test_health_details_do_not_show_an_upstream_key_it_echoed(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        upstream: tuple[str, list[dict[str, str]]]) -> None:
    # Tries: as above, then reads /health's details as a key holder. Must not happen: the
    # upstream's key in them.
    url, seen = upstream
    wrong = "sk-upstream-wrong-55c3"
    gw = start_gateway(upstream_toml(url, name="gpu",
                                     extra=f'model = "m"\napi_key = "{wrong}"\n')
                       + f'[server]\napi_keys = ["{CLIENT_KEY}"]\n')
    keyed = {"Authorization": f"Bearer {CLIENT_KEY}"}
    assert _ask(gw, keyed).status_code >= 400
    assert seen and seen[-1]["Authorization"] == f"Bearer {wrong}"
    health = httpx.get(gw.url + "/health", headers=keyed).text
    assert wrong not in health


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        unused_port: int) -> None:
    # Tries: Content-Length of 1 GiB on a gateway limited to 1 MiB, sending nothing after the
    # headers. Must not happen: the gateway waiting for (reading) the body, or any upstream
    # traffic: the 413 comes at once and the connection closes.
    gw = start_gateway(upstream_toml(f"http://127.0.0.1:{unused_port}/v1",
                                     extra='model = "m"\n')
                       + "[server]\nmax_body_bytes = 1048576\nbody_timeout = 30\n")
    host, port = gw.url.removeprefix("http://").split(":")
    for path in ("/v1/chat/completions", "/v1/messages"):
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json"
                         f"\r\nContent-Length: {1 << 30}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert time.monotonic() - started < 5  # not the 30 s body deadline
        head = data.partition(b"\r\n\r\n")[0].decode().lower()
        assert head.startswith("http/1.1 413") and "connection: close" in head, head
        assert b"larger than 1048576 bytes" in data
