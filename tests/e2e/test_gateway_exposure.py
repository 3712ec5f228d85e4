"""What the gateway tells whom: /health without a key, upstream failures in error bodies,
and browsers (CORS: off unless origins are configured)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

KEY = "sk-exposure-test"
_CHAT = {"model": "kimi-k2.5-instant", "messages": [{"role": "user", "content": "x"}]}
_MESSAGES = {**_CHAT, "max_tokens": 16}


@pytest.fixture
def gateway_with_a_dead_upstream(start_gateway: Callable[..., Any],
                                 upstream_toml: Callable[..., str], unused_port: int) -> Any:
    """A gateway requiring ``KEY``, whose upstream 'gpu-box' is at ``unused_port`` (down)."""
    config = upstream_toml(f"http://127.0.0.1:{unused_port}/v1", name="gpu-box",
                           extra='model = "m"\n')
    return start_gateway(config + f'[server]\napi_keys = ["{KEY}"]\n')


def test_health_without_a_key_is_a_bare_status(gateway_with_a_dead_upstream: Any) -> None:
    gw = gateway_with_a_dead_upstream
    keyed = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(gw.url + "/health").json() == {"status": "ok"}
    assert httpx.post(gw.v1 + "/chat/completions", json=_CHAT, headers=keyed).status_code == 502
    assert httpx.get(gw.url + "/health").json() == {"status": "degraded"}
    wrong = httpx.get(gw.url + "/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 200 and wrong.json() == {"status": "degraded"}
    detailed = httpx.get(gw.url + "/health", headers=keyed).json()
    assert detailed["status"] == "degraded"
    assert detailed["upstreams"]["gpu-box"]["ok"] is False
    assert "cannot reach" in detailed["upstreams"]["gpu-box"]["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_error_bodies_name_the_upstream_never_its_address(
        gateway_with_a_dead_upstream: Any, unused_port: int, stream: bool) -> None:
    gw = gateway_with_a_dead_upstream
    for path, body, headers in (
            ("/chat/completions", _CHAT, {"Authorization": f"Bearer {KEY}"}),
            ("/messages", _MESSAGES, {"x-api-key": KEY})):
        resp = httpx.post(gw.v1 + path, json={**body, "stream": stream}, headers=headers)
        assert resp.status_code == 502, resp.text
        assert "upstream 'gpu-box' cannot be reached" in resp.text
        assert str(unused_port) not in resp.text and "127.0.0.1" not in resp.text
    # The operator's log keeps where it tried.
    assert f"127.0.0.1:{unused_port}" in gw.output()


_PREFLIGHT = {"Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"}


def test_cors_is_off_by_default(gateway_with_a_dead_upstream: Any) -> None:
    gw = gateway_with_a_dead_upstream
    origin = {"Origin": "https://app.example"}
    preflight = httpx.options(gw.v1 + "/chat/completions", headers={**origin, **_PREFLIGHT})
    assert not preflight.is_success
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.get(gw.url + "/health", headers=origin)
    assert not any(h.startswith("access-control-") for h in plain.headers)


def test_cors_answers_configured_origins_only(start_gateway: Callable[..., Any],
                                              upstream_toml: Callable[..., str],
                                              unused_port: int) -> None:
    config = upstream_toml(f"http://127.0.0.1:{unused_port}/v1", extra='model = "m"\n')
    gw = start_gateway(config + '[server]\ncors_allow_origins = ["https://app.example"]\n')
    for path in ("/v1/chat/completions", "/v1/messages"):
        ok = httpx.options(gw.url + path, headers={"Origin": "https://app.example",
                                                   **_PREFLIGHT,
                                                   "Access-Control-Request-Headers":
                                                   "x-api-key, anthropic-version"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in ok.headers["access-control-allow-methods"]
        allowed = ok.headers["access-control-allow-headers"].lower()
        assert "x-api-key" in allowed and "anthropic-version" in allowed
        assert "authorization" in allowed and "content-type" in allowed
    sdk = httpx.options(gw.v1 + "/chat/completions",
                        headers={"Origin": "https://app.example", **_PREFLIGHT})
    assert sdk.status_code == 200
    other = httpx.options(gw.v1 + "/chat/completions",
                          headers={"Origin": "https://evil.example", **_PREFLIGHT})
    assert not other.is_success
    assert "access-control-allow-origin" not in other.headers
    # The answer itself carries the header too, so the page may read it.
    answer = httpx.post(gw.v1 + "/chat/completions", json=_CHAT,
                        headers={"Origin": "https://app.example"})
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "retry-after" in answer.headers["access-control-expose-headers"].lower()
    foreign = httpx.post(gw.v1 + "/chat/completions", json=_CHAT,
                         headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers
