"""Errors the gateway answers in the API's own shape: unknown routes, wrong methods, and an
overloaded upstream's Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx


def test_unknown_routes_and_methods_answer_in_the_api_shape(
        start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
        upstream_toml: Callable[..., str]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(upstream_toml(sim.v1))
    resp = httpx.get(gw.v1 + "/chat/completions")
    assert resp.status_code == 405
    assert "GET /v1/chat/completions" in resp.json()["error"]["message"]
    resp = httpx.post(gw.v1 + "/nope", json={})
    assert resp.status_code == 404
    assert "/v1/chat/completions" in resp.json()["error"]["message"]
    resp = httpx.get(gw.v1 + "/messages")
    assert resp.status_code == 405 and resp.json()["type"] == "error"


def test_retry_after_of_an_overloaded_upstream_reaches_the_client(
        start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
        upstream_toml: Callable[..., str]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--retry-after", "7")
    gw = start_gateway(upstream_toml(sim.v1))
    httpx.post(sim.url + "/sim/control", json={"fail_rate": 1.0, "fail_status": 429})
    resp = httpx.post(gw.v1 + "/chat/completions", json={
        "model": "kimi-k2.5-instant", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"


def test_health_reports_a_failing_upstream(start_gateway: Callable[..., Any],
                                           upstream_toml: Callable[..., str],
                                           unused_port: int) -> None:
    gw = start_gateway(upstream_toml(f"http://127.0.0.1:{unused_port}/v1", name="gpu-box",
                                     extra='model = "m"\n'))
    health = httpx.get(gw.url + "/health").json()
    assert health["status"] == "ok" and health["upstreams"] == {"gpu-box": {"ok": None}}
    httpx.post(gw.v1 + "/chat/completions", json={
        "model": "kimi-k2.5-instant", "messages": [{"role": "user", "content": "x"}]})
    health = httpx.get(gw.url + "/health").json()
    assert health["status"] == "degraded"
    assert health["upstreams"]["gpu-box"]["ok"] is False
    assert "cannot reach" in health["upstreams"]["gpu-box"]["error"]
