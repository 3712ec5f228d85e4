"""ChatModes.stream: engine events pass through; failing tool calls are marked at the end;
the reasoning of Instant/Thinking tool-call answers (only theirs) is remembered."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kimi_modes.engines.base import ChatRequest, Event, Finish, InvalidToolCall, Usage
from kimi_modes.modes import ChatModes, ChatParams, Mode, ModeDefaults, resolve_mode
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


class ScriptedEngine:
    name = "scripted"

    def __init__(self, events: list[Event]) -> None:
        self.events = events

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        for event in self.events:
            yield event

    async def aclose(self) -> None:
        pass


async def run(events: list[Event], tools: list[dict] | None) -> list[Event]:
    engine = ScriptedEngine(events)
    modes = ChatModes({"e": engine}, {Mode.INSTANT: ModeDefaults(None, None)})
    request = ChatRequest(messages=[{"role": "user", "content": "x"}], tools=tools)
    return [event async for event in modes.stream(engine, request)]


async def test_invalid_calls_are_marked_before_finish_and_never_dropped() -> None:
    events: list[Event] = [
        ContentDelta("Checking."),
        ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": '),
        ToolCallDelta(0, None, None, '"Paris"}'),
        ToolCallDelta(1, "functions.get_weather:1", "get_weather", '{"town": "Lyon"}'),
        ToolCallDelta(2, "functions.nope:2", "nope", "{}"),
        ToolCallDelta(3, "functions.get_weather:3", "get_weather", "{not json"),
        Usage(3, 9),
        Finish("tool_calls"),
    ]
    out = await run(events, [WEATHER])
    marks = [e for e in out if isinstance(e, InvalidToolCall)]
    assert [(m.index, m.id) for m in marks] == [
        (1, "functions.get_weather:1"), (2, "functions.nope:2"), (3, "functions.get_weather:3")]
    assert "city" in marks[0].error and "nope" in marks[1].error
    assert all(m.error for m in marks)
    assert [e for e in out if not isinstance(e, InvalidToolCall)] == events
    assert out[-1] == Finish("tool_calls")
    assert out.index(marks[0]) > out.index(events[-2])


async def test_valid_calls_and_plain_answers_get_no_marks() -> None:
    events: list[Event] = [
        ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": "Oslo"}'),
        Finish("tool_calls"),
    ]
    assert await run(events, [WEATHER]) == events
    plain: list[Event] = [ContentDelta("hi"), Finish("stop")]
    assert await run(plain, None) == plain


async def test_a_stream_without_finish_is_still_checked() -> None:
    events: list[Event] = [ToolCallDelta(0, "functions.get_weather:0", "get_weather", "[]")]
    out = await run(events, [WEATHER])
    assert isinstance(out[-1], InvalidToolCall) and out[-1].index == 0


CALL = ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": "Oslo"}')


async def continued_on_thinking(answered_by: str) -> dict[str, object]:
    """Answer a question with a tool call in mode ``answered_by``, then continue on
    kimi-k2.5-thinking without the answer's reasoning, as most clients do; returns the
    assistant message the Thinking engine is sent."""
    chat = ScriptedEngine([ReasoningDelta("Oslo needs a lookup."), CALL, Finish("tool_calls")])
    agent = ScriptedEngine([ReasoningDelta("[agent run run_1: ...]\n[tool] python({})\n"),
                            CALL, Finish("tool_calls")])
    defaults = {mode: ModeDefaults(None, None) for mode in (Mode.INSTANT, Mode.THINKING)}
    modes = ChatModes({"e": chat}, defaults, agent=agent)
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    engine, request = modes.prepare(resolve_mode(answered_by), ChatParams(question, [WEATHER]))
    assert engine is (agent if answered_by.endswith("agent") else chat)
    [event async for event in modes.stream(engine, request)]
    continued = [*question,
                 {"role": "assistant", "content": "", "tool_calls": [{
                     "id": CALL.id, "type": "function",
                     "function": {"name": CALL.name, "arguments": CALL.arguments}}]},
                 {"role": "tool", "tool_call_id": CALL.id, "content": "sunny"}]
    _, request = modes.prepare(resolve_mode("kimi-k2.5-thinking"),
                               ChatParams(continued, [WEATHER]))
    return request.messages[1]


async def test_thinking_reasoning_of_a_tool_call_answer_is_restored() -> None:
    sent = await continued_on_thinking("kimi-k2.5-thinking")
    assert sent["reasoning_content"] == "Oslo needs a lookup."


async def test_agent_progress_is_never_restored_as_reasoning() -> None:
    sent = await continued_on_thinking("kimi-k2.5-agent")
    assert "reasoning_content" not in sent
