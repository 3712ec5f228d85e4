"""``POST /v1/messages/count_tokens`` through the ``anthropic`` SDK: exact on the embedded
engine (the count equals the ``input_tokens`` of the answer to the same prompt), an estimate
said to be one in front of an engine that tokenizes for itself, errors in Anthropic's shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

pytestmark = pytest.mark.slow

PROMPT: dict[str, Any] = {
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "Name one colour."}],
}


def client(gw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0, timeout=120)


@pytest.mark.embedded
@pytest.mark.parametrize("model", ["kimi-k2.5-instant", "kimi-k2.5-thinking"])
def test_the_embedded_engine_counts_exactly(embedded_gateway: Any, model: str) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded engine needs llama-cpp-python")
    counted = client(embedded_gateway).messages.count_tokens(model=model, **PROMPT)
    assert counted.model_extra == {"estimated": False}
    answer = client(embedded_gateway).messages.create(model=model, max_tokens=4, **PROMPT)
    assert counted.input_tokens == answer.usage.input_tokens > 0


def test_elsewhere_the_count_is_an_estimate_and_says_so(
        start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
        upstream_toml: Callable[..., str]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway('[server]\napi_keys = ["sk-a"]\n' + upstream_toml(sim.v1))
    sdk = anthropic.Anthropic(base_url=gw.url, api_key="sk-a", max_retries=0)
    counted = sdk.messages.count_tokens(model="kimi-k2.5-agent", **PROMPT)
    assert counted.input_tokens > 0 and counted.model_extra == {"estimated": True}
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="claude-x", **PROMPT)
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.count_tokens(model="kimi-k2.5-instant", messages=[])
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    denied = httpx.post(gw.v1 + "/messages/count_tokens", json={"model": "kimi-k2.5-instant",
                                                                **PROMPT})
    assert denied.status_code == 401 and denied.json()["type"] == "error"
