"""KimiRawEngine against simulated engines serving K3 and K2.6 (each its own process): the
prompt rendered for the family (K3: XTML, with its thinking_effort; K2.6 with
preserve_thinking), the family's stop strings, reasoning, content and a tool call parsed from
the raw text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from helpers.clients import last_upstream_request as last_body
from helpers.tools import weather_tool
from kimi_modes.engines.base import ChatRequest, UpstreamRejected
from kimi_modes.engines.kimi_raw import KimiRawEngine
from kimi_modes.engines.message import Completion, collect
from kimi_modes.protocol import family_info, render_prompt

MODEL = "moonshotai/Kimi-K2.5"
FAST = ("--ttft", "0", "--tpot", "0")
WEATHER = weather_tool("city", "days", required=("city", "days"))
HELLO = [{"role": "user", "content": "Hello there"}]
ASK_TOOL = [{"role": "user", "content": "Use get_weather for city=Paris days=3"}]
REASONING = "The user wrote 2 words. A direct answer fits; I will echo them."

Start = Callable[..., Any]  # the start_simulator fixture


async def run(engine: KimiRawEngine, request: ChatRequest) -> Completion:
    try:
        return await collect(engine.stream(request))
    finally:
        await engine.aclose()


@pytest.mark.parametrize("family", ["k3", "k2.6"])
async def test_the_familys_prompt_stop_strings_and_answer(
    start_simulator: Start, family: str
) -> None:
    sim = start_simulator("--family", family, *FAST)
    engine = KimiRawEngine("sim", sim.v1, family=family, model=MODEL)
    done = await run(engine, ChatRequest(messages=HELLO, thinking=True, stop=["STOP"]))
    assert (done.message.reasoning_content, done.message.content) == (
        REASONING, "You said: Hello there"
    )
    assert done.finish_reason == "stop" and done.usage is not None
    body = last_body(sim)
    assert body["prompt"] == render_prompt({"messages": HELLO}, family, thinking=True)
    assert body["stop"] == [*family_info(family).stop_strings, "STOP"]
    assert body["skip_special_tokens"] is False

    engine = KimiRawEngine("sim", sim.v1, family=family, model=MODEL)
    done = await run(engine, ChatRequest(messages=HELLO, thinking=False))
    assert (done.message.reasoning_content, done.message.content) == (
        None, "You said: Hello there"
    )


async def test_k3_stops_on_end_of_msg(start_simulator: Start) -> None:
    sim = start_simulator("--family", "k3", *FAST)
    # ignore_eos makes the simulated model write past its stop token: only the stop strings
    # the engine sends end the answer there
    engine = KimiRawEngine("sim", sim.v1, family="k3", model=MODEL)
    request = ChatRequest(messages=HELLO, thinking=False, max_tokens=60,
                          extra={"ignore_eos": True})
    done = await run(engine, request)
    assert done.message.content == "You said: Hello there"
    assert done.finish_reason == "stop"
    assert last_body(sim)["stop"] == ["<|end_of_msg|>", "[EOS]"]


async def test_k3_effort_and_k26_preserve_thinking_shape_the_prompt(
    start_simulator: Start,
) -> None:
    k3 = start_simulator("--family", "k3", *FAST)
    engine = KimiRawEngine("sim", k3.v1, family="k3", model=MODEL)
    done = await run(engine, ChatRequest(messages=HELLO, thinking_effort="low"))
    assert done.message.content == "You said: Hello there"
    body = last_body(k3)
    assert body["prompt"] == render_prompt({"messages": HELLO}, "k3", thinking_effort="low")
    assert "`thinking_effort=low`" in body["prompt"] and "thinking_effort" not in body
    engine = KimiRawEngine("sim", k3.v1, family="k3", model=MODEL)
    with pytest.raises(UpstreamRejected, match="'medium' is not supported by k3"):
        await run(engine, ChatRequest(messages=HELLO, thinking_effort="medium"))

    k26 = start_simulator("--family", "k2.6", *FAST)
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello.", "reasoning_content": "A greeting."},
        *HELLO,
    ]
    for preserve in (True, False):
        engine = KimiRawEngine("sim", k26.v1, family="k2.6", model=MODEL)
        await run(engine, ChatRequest(messages=history, preserve_thinking=preserve))
        prompt = last_body(k26)["prompt"]
        assert ("<think>A greeting.</think>" in prompt) is preserve
        assert "preserve_thinking" not in last_body(k26)
    engine = KimiRawEngine("sim", k26.v1, family="k2.6", model=MODEL)
    with pytest.raises(UpstreamRejected, match="takes no thinking_effort"):
        await run(engine, ChatRequest(messages=HELLO, thinking_effort="low"))


@pytest.mark.parametrize("family", ["k3", "k2.6"])
async def test_a_tool_call_parsed_from_the_raw_text(start_simulator: Start, family: str) -> None:
    sim = start_simulator("--family", family, *FAST)
    engine = KimiRawEngine("sim", sim.v1, family=family, model=MODEL)
    done = await run(engine, ChatRequest(messages=ASK_TOOL, tools=[WEATHER]))
    assert done.finish_reason == "tool_calls"
    (call,) = done.message.tool_calls
    assert (call.id, call.name, call.error) == ("functions.get_weather:0", "get_weather", None)
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    assert done.message.reasoning_content is not None
    assert done.message.reasoning_content.startswith("The user asks for a tool.")
