"""The gateway's /v1/messages driven with the official anthropic SDK, in front of the
simulated engine (its own process) reached both as openai_chat and as kimi_raw."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from helpers.clients import anthropic_client as client
from helpers.clients import last_upstream_request
from helpers.tools import anthropic_tool, weather_tool

WEATHER = anthropic_tool(weather_tool("city", "unit"))


@pytest.fixture(params=["openai_chat", "kimi_raw"])
def gw(request: pytest.FixtureRequest, sim: Any, start_gateway: Callable[..., Any],
       upstream_toml: Callable[..., str]) -> Any:
    gateway = start_gateway(upstream_toml(sim.v1, kind=request.param))
    gateway.kind = request.param
    return gateway


def assert_thinking_sent(gw: Any, sent: dict[str, Any], thinking: bool) -> None:
    """The thinking switch as each kind sends it: a template kwarg, or the prompt's end."""
    if gw.kind == "openai_chat":
        assert sent["chat_template_kwargs"] == {"thinking": thinking}
    else:
        assert sent["prompt"].endswith("<think>" if thinking else "<think></think>")


def test_thinking_comes_back_as_thinking_blocks(gw: Any, sim: Any) -> None:
    message = client(gw).messages.create(
        model="kimi-k2.5-thinking", max_tokens=256,
        messages=[{"role": "user", "content": "Is 97 prime?"}])
    kinds = [block.type for block in message.content]
    assert kinds[0] == "thinking" and "text" in kinds
    assert message.content[0].thinking
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert_thinking_sent(gw, last_upstream_request(sim), True)


def test_thinking_disabled_and_temperature_mapping(gw: Any, sim: Any) -> None:
    message = client(gw).messages.create(
        model="kimi-k2.5-thinking", max_tokens=64, extra_body={"temperature": 0.5},
        thinking={"type": "disabled"},
        messages=[{"role": "user", "content": "hello"}])
    assert [b.type for b in message.content] == ["text"]
    sent = last_upstream_request(sim)
    assert_thinking_sent(gw, sent, False)
    assert sent["temperature"] == pytest.approx(0.3)
    assert sent["max_tokens"] == 64


def test_streaming_with_the_sdk_accumulator(gw: Any) -> None:
    with client(gw).messages.stream(
        model="kimi-k2.5-thinking", max_tokens=256,
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.content[0].type == "thinking" and final.content[0].thinking
    assert final.content[-1].type == "text" and final.content[-1].text == text


def test_tool_use_and_tool_result_round_trip(gw: Any, sim: Any) -> None:
    c = client(gw)
    first = c.messages.create(
        model="kimi-k2.5-instant", max_tokens=256, tools=[WEATHER],
        messages=[{"role": "user", "content": "Use get_weather for Paris"}])
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input["city"]
    second = c.messages.create(
        model="kimi-k2.5-instant", max_tokens=256, tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Use get_weather for Paris"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                              for b in first.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "21 degrees"}]},
        ])
    assert second.stop_reason == "end_turn"
    sent = last_upstream_request(sim)
    if gw.kind == "openai_chat":
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["user", "assistant", "tool"]
        arguments = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
    else:
        prompt = sent["prompt"]
        assert prompt.count("<|im_user|>") == 1 and prompt.count("<|im_assistant|>") == 2
        assert f"## Return of {use.id}\n21 degrees<|im_end|>" in prompt
        call = prompt.split("<|tool_call_begin|>", 1)[1].split("<|tool_call_end|>", 1)[0]
        call_id, arguments = call.split("<|tool_call_argument_begin|>")
        assert call_id == use.id
    assert json.loads(arguments) == use.input


def test_streamed_tool_use(gw: Any) -> None:
    with client(gw).messages.stream(
        model="kimi-k2.5-thinking", max_tokens=256, tools=[WEATHER],
        messages=[{"role": "user", "content": "call get_weather for Lyon"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.input["city"]


def test_errors_in_anthropic_shape(gw: Any) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client(gw).messages.create(model="claude-x", max_tokens=10,
                                   messages=[{"role": "user", "content": "x"}])
    resp = httpx.post(gw.url + "/v1/messages", json={"model": "kimi-k2.5-instant",
                                                     "messages": [{"role": "user"}]})
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]
    resp = httpx.post(gw.url + "/v1/messages", content=b"{nope",
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["type"] == "error"
    with pytest.raises(anthropic.BadRequestError) as info:  # the swarm runs its own tools
        client(gw).messages.create(
            model="kimi-k2.5-swarm", max_tokens=10, messages=[{"role": "user", "content": "x"}],
            tools=[{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
    assert "kimi-k2.5-agent" in str(info.value)


@pytest.mark.parametrize("kind", ["openai_chat", "kimi_raw"])
def test_anthropic_api_key_header(sim: Any, start_gateway: Callable[..., Any],
                                  upstream_toml: Callable[..., str], kind: str) -> None:
    gw = start_gateway('[server]\napi_keys = ["sk-a"]\n' + upstream_toml(sim.v1, kind=kind))
    with pytest.raises(anthropic.AuthenticationError):
        client(gw, "sk-b").messages.create(model="kimi-k2.5-instant", max_tokens=10,
                                           messages=[{"role": "user", "content": "x"}])
    ok = client(gw, "sk-a").messages.create(model="kimi-k2.5-instant", max_tokens=10,
                                            messages=[{"role": "user", "content": "x"}])
    assert ok.content


def test_upstream_failure_is_an_anthropic_error(sim: Any, gw: Any) -> None:
    httpx.post(sim.url + "/sim/control", json={"fail_rate": 1.0, "fail_status": 503})
    with pytest.raises(anthropic.APIStatusError) as info:
        client(gw).messages.create(model="kimi-k2.5-instant", max_tokens=10,
                                   messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
