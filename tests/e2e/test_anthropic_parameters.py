"""Anthropic parameters real clients send, through a real gateway with the ``anthropic`` SDK:
an assistant prefill is continued, not closed;
``stop_sequences`` report ``stop_reason: "stop_sequence"`` and the sequence that fired,
streamed and not, on every engine kind (the simulated engine as openai_chat and kimi_raw, and
the embedded engine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from helpers import clients

pytestmark = pytest.mark.slow

SAY = [{"role": "user", "content": "Say hello to the world"}]


def client(gw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0, timeout=120)


@pytest.fixture(params=["openai_chat", "kimi_raw"])
def gateway(request: pytest.FixtureRequest, start_simulator: Callable[..., Any],
            start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    return start_gateway(upstream_toml(sim.v1, kind=request.param))


def test_a_stop_sequence_that_fires_is_reported(gateway: Any) -> None:
    # The simulated model echoes: "You said: Say hello to the world".
    message = client(gateway).messages.create(
        model="kimi-k2.5-instant", max_tokens=64, messages=SAY,  # type: ignore[arg-type]
        stop_sequences=["nothing like this", "hello"])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "hello"
    assert message.content[0].text == "You said: Say "  # type: ignore[union-attr]
    with client(gateway).messages.stream(
            model="kimi-k2.5-instant", max_tokens=64, messages=SAY,  # type: ignore[arg-type]
            stop_sequences=["hello"]) as stream:
        streamed = stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", "hello")
    plain = client(gateway).messages.create(
        model="kimi-k2.5-instant", max_tokens=64, messages=SAY,  # type: ignore[arg-type]
        stop_sequences=["absent"])
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


@pytest.mark.embedded
def test_the_embedded_engine_reports_its_stop_sequence(embedded_gateway: Any) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded engine needs llama-cpp-python")
    # A sentence has a space within its first 24 tokens: the answer stops at the first one.
    message = client(embedded_gateway).messages.create(
        model="kimi-k2.5-instant", max_tokens=24, stop_sequences=[" "],
        messages=[{"role": "user", "content": "Write a sentence about the sea."}])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " ")


@pytest.fixture(params=["openai_chat", "kimi_raw"])
def prefill_gateway(request: pytest.FixtureRequest, start_simulator: Callable[..., Any],
                    start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(upstream_toml(sim.v1, kind=request.param))
    gw.sim, gw.kind = sim, request.param
    return gw


@pytest.mark.parametrize("model", ["kimi-k2.5-instant", "kimi-k2.5-thinking"])
def test_an_assistant_prefill_is_continued_not_closed(prefill_gateway: Any, model: str) -> None:
    message = client(prefill_gateway).messages.create(
        model=model, max_tokens=64, messages=[
            *SAY, {"role": "assistant", "content": "Hello, world! I am"}])
    assert message.stop_reason == "end_turn"
    assert all(block.type == "text" for block in message.content)  # no reasoning
    sent = upstream_body(prefill_gateway)
    if prefill_gateway.kind == "kimi_raw":
        assert sent["prompt"].endswith("<think></think>Hello, world! I am")
    else:
        assert sent["continue_final_message"] is True
        assert sent["add_generation_prompt"] is False
        assert sent["messages"][-1] == {"role": "assistant", "content": "Hello, world! I am"}
        assert sent["chat_template_kwargs"]["thinking"] is False


@pytest.mark.embedded
def test_the_embedded_models_own_template_refuses_a_prefill(embedded_gateway: Any) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded engine needs llama-cpp-python")
    with pytest.raises(anthropic.BadRequestError) as info:
        client(embedded_gateway).messages.create(
            model="kimi-k2.5-instant", max_tokens=8,
            messages=[*SAY, {"role": "assistant", "content": "Hello"}])  # type: ignore[list-item]
    assert "prefill" in info.value.body["error"]["message"]  # type: ignore[index]


def upstream_body(gw: Any) -> dict[str, Any]:
    """What the gateway's simulator last received."""
    return clients.last_upstream_request(gw.sim)
