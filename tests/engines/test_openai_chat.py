"""OpenAIChatEngine against simulated engines serving K3 and K2.6 (each its own process):
reasoning and content streamed, a tool call, the thinking switch with K3's thinking_effort
and K2.6's preserve_thinking in the dialect's place, and raw K3 XTML in the content (an
engine started without its parsers) parsed by the family's parser."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from helpers.clients import last_upstream_request as last_body
from helpers.tools import weather_tool
from kimi_modes.engines.base import ChatRequest, Event, UpstreamRejected
from kimi_modes.engines.message import Completion, collect
from kimi_modes.engines.openai_chat import OpenAIChatEngine
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta

MODEL = "moonshotai/Kimi-K2.5"
FAST = ("--ttft", "0", "--tpot", "0")
WEATHER = weather_tool("city", "days", required=("city", "days"))
HELLO = [{"role": "user", "content": "Hello there"}]
ASK_TOOL = [{"role": "user", "content": "Use get_weather for city=Paris days=3"}]
REASONING = "The user wrote 2 words. A direct answer fits; I will echo them."

Start = Callable[..., Any]  # the start_simulator fixture


async def run(engine: OpenAIChatEngine, request: ChatRequest) -> tuple[Completion, list[Event]]:
    events: list[Event] = []

    async def keep(event: Event) -> None:
        events.append(event)

    try:
        return await collect(engine.stream(request), on_event=keep), events
    finally:
        await engine.aclose()


@pytest.mark.parametrize("family", ["k3", "k2.6"])
async def test_reasoning_and_content_stream_with_the_familys_switches(
    start_simulator: Start, family: str
) -> None:
    sim = start_simulator("--family", family, *FAST)
    engine = OpenAIChatEngine("sim", sim.v1, family=family, model=MODEL)
    done, events = await run(engine, ChatRequest(messages=HELLO, thinking=True))
    assert (done.message.reasoning_content, done.message.content) == (
        REASONING, "You said: Hello there"
    )
    assert done.finish_reason == "stop" and done.usage is not None
    kinds = [type(e) for e in events if isinstance(e, ReasoningDelta | ContentDelta)]
    assert kinds.index(ContentDelta) > kinds.index(ReasoningDelta)  # streamed in order
    assert len(kinds) > 4  # piece by piece, not in one lump
    expected = (
        {"thinking": True, "thinking_effort": "max"}
        if family == "k3"
        else {"thinking": True, "preserve_thinking": False}
    )
    assert last_body(sim)["chat_template_kwargs"] == expected

    engine = OpenAIChatEngine("sim", sim.v1, family=family, model=MODEL)
    done, _ = await run(engine, ChatRequest(messages=HELLO, thinking=False))
    assert (done.message.reasoning_content, done.message.content) == (
        None, "You said: Hello there"
    )
    assert last_body(sim)["chat_template_kwargs"] == {"thinking": False}


async def test_k3_effort_and_k26_preserve_thinking_travel_in_template_kwargs(
    start_simulator: Start,
) -> None:
    k3 = start_simulator("--family", "k3", *FAST)
    engine = OpenAIChatEngine("sim", k3.v1, family="k3", model=MODEL)
    request = ChatRequest(messages=HELLO, thinking_effort="low", extra={"top_k": 5})
    done, _ = await run(engine, request)
    assert done.message.content == "You said: Hello there"
    body = last_body(k3)
    assert body["chat_template_kwargs"] == {"thinking": True, "thinking_effort": "low"}
    assert body["top_k"] == 5 and "thinking_effort" not in body
    # an effort K3's encoder rejects is refused before anything is sent
    engine = OpenAIChatEngine("sim", k3.v1, family="k3", model=MODEL)
    with pytest.raises(UpstreamRejected, match="'medium' is not supported by k3"):
        await run(engine, ChatRequest(messages=HELLO, thinking_effort="medium"))

    k26 = start_simulator("--family", "k2.6", *FAST)
    engine = OpenAIChatEngine("sim", k26.v1, family="k2.6", model=MODEL, dialect="moonshot")
    request = ChatRequest(messages=HELLO, preserve_thinking=True)
    await run(engine, request)
    body = last_body(k26)
    assert body["thinking"] == {"type": "enabled", "keep": "all"}
    assert "preserve_thinking" not in body


@pytest.mark.parametrize("family", ["k3", "k2.6"])
async def test_a_tool_call_from_the_upstreams_parser(start_simulator: Start, family: str) -> None:
    sim = start_simulator("--family", family, *FAST)
    engine = OpenAIChatEngine("sim", sim.v1, family=family, model=MODEL)
    done, events = await run(engine, ChatRequest(messages=ASK_TOOL, tools=[WEATHER]))
    assert done.finish_reason == "tool_calls"
    (call,) = done.message.tool_calls
    assert (call.id, call.name) == ("functions.get_weather:0", "get_weather")
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    assert done.message.content is None
    assert sum(isinstance(e, ToolCallDelta) for e in events) > 1  # arguments streamed


@pytest.mark.parametrize("family", ["k3", "k2.6"])
async def test_raw_markers_in_the_content_are_parsed_by_the_familys_parser(
    start_simulator: Start, family: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = start_simulator("--family", family, "--raw-markers", *FAST)
    # an upstream without any parser: reasoning, markers and all arrive as content
    engine = OpenAIChatEngine("sim", sim.v1, family=family, model=MODEL, reasoning_parser=False)
    done, events = await run(engine, ChatRequest(messages=ASK_TOOL, tools=[WEATHER]))
    assert done.finish_reason == "tool_calls"
    assert done.message.reasoning_content is not None
    assert done.message.reasoning_content.startswith("The user asks for a tool.")
    (call,) = done.message.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris", "days": 3})
    assert not any("<|" in getattr(e, "text", "") for e in events)
    # the same upstream, taken for one with a reasoning parser: the end of the reasoning in
    # the content is noticed once, and no marker reaches the client
    engine = OpenAIChatEngine("sim", sim.v1, family=family, model=MODEL)
    with caplog.at_level(logging.WARNING, logger="kimi_modes.engines.openai_chat"):
        done, events = await run(engine, ChatRequest(messages=HELLO))
    assert "seems to run without a reasoning parser" in caplog.text
    assert ("kimi_k3" if family == "k3" else "kimi_k2") in caplog.text
    assert done.message.content is not None and "You said: Hello there" in done.message.content
    assert not any("<|" in getattr(e, "text", "") for e in events)
