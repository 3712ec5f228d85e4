"""``serve --config`` with an upstream whose key comes from ``api_key_env``: the gateway starts
and the key reaches the upstream."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

KEY = "sk-upstream-from-env"
_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"keyed"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


class _KeyedUpstream(BaseHTTPRequestHandler):
    """An OpenAI-style engine that serves only callers sending ``Bearer KEY`` and remembers
    the Authorization header of each request."""

    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        if auth != f"Bearer {KEY}":
            body = b'{"error": {"message": "bad key"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
        else:
            body = _STREAM
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def keyed_upstream() -> Iterator[tuple[str, list[str | None]]]:
    """A running keyed engine: its base URL (with ``/v1``) and the headers it saw."""
    handler = type("Handler", (_KeyedUpstream,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler.seen
    server.shutdown()
    server.server_close()


def test_serve_config_with_api_key_env_sends_the_key_upstream(
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str],
        keyed_upstream: tuple[str, list[str | None]]) -> None:
    url, seen = keyed_upstream
    config = upstream_toml(url, name="keyed", extra='model = "m"\napi_key_env = "KEYED_KEY"\n')
    gw = start_gateway(config, env={"KEYED_KEY": KEY})
    resp = httpx.post(gw.v1 + "/chat/completions", timeout=30, json={
        "model": "kimi-k2.5-instant", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "keyed"
    assert seen == [f"Bearer {KEY}"]
    assert KEY not in gw.output()
