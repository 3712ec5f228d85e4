"""ChatMode: engine events pass through; failing tool calls are marked at the end; the
reasoning of a tool-call answer is remembered for the same caller and conversation."""

from __future__ import annotations

from helpers.tools import weather_tool
from kimi_modes.engines.base import ChatRequest, Choice, Event, Finish, InvalidToolCall, Usage
from kimi_modes.engines.scripted import ScriptedEngine
from kimi_modes.modes import ChatMode, ReasoningMemory
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta

WEATHER = weather_tool()


async def run(events: list[Event], tools: list[dict] | None) -> list[Event]:
    mode = ChatMode(ScriptedEngine(events), ReasoningMemory())
    request = ChatRequest(messages=[{"role": "user", "content": "x"}], tools=tools)
    return [event async for event in mode.stream(request)]


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


async def test_each_choice_is_checked_on_its_own() -> None:
    events: list[Event] = [
        Choice(0), ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": '),
        Choice(1), ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"town": 1}'),
        Choice(0), ToolCallDelta(0, None, None, '"Oslo"}'), Finish("tool_calls"),
        Choice(1), Finish("tool_calls"),
        Choice(2), ToolCallDelta(0, "functions.nope:0", "nope", "{}"),
    ]
    out = await run(events, [WEATHER])
    marks = [(i, e) for i, e in enumerate(out) if isinstance(e, InvalidToolCall)]
    assert [m.index for _, m in marks] == [0, 0]
    assert "city" in marks[0][1].error and "nope" in marks[1][1].error
    first, last = marks[0][0], marks[1][0]
    assert out[first - 1] == Choice(1) and out[first + 1] == Finish("tool_calls")
    assert out[last - 1] == Choice(2) and last == len(out) - 1  # choice 2 never finished


async def test_a_stream_without_finish_is_still_checked() -> None:
    events: list[Event] = [ToolCallDelta(0, "functions.get_weather:0", "get_weather", "[]")]
    out = await run(events, [WEATHER])
    assert isinstance(out[-1], InvalidToolCall) and out[-1].index == 0


CALL = ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": "Oslo"}')
QUESTION = [{"role": "user", "content": "Weather in Oslo?"}]
CONTINUED = [*QUESTION,
             {"role": "assistant", "content": "", "tool_calls": [{
                 "id": CALL.id, "type": "function",
                 "function": {"name": CALL.name, "arguments": CALL.arguments}}]},
             {"role": "tool", "tool_call_id": CALL.id, "content": "sunny"}]


async def test_reasoning_comes_back_to_the_same_caller_only() -> None:
    engine = ScriptedEngine([ReasoningDelta("Oslo needs a lookup."), CALL, Finish("tool_calls")],
                            [ContentDelta("Sunny."), Finish("stop")])
    mode = ChatMode(engine, ReasoningMemory())
    [e async for e in mode.stream(ChatRequest(list(QUESTION), [WEATHER], owner="alice"))]
    for owner in ("alice", "bob", None):
        [e async for e in mode.stream(ChatRequest(list(CONTINUED), [WEATHER], owner=owner))]
    alice, bob, anonymous = (r.messages[1] for r in engine.requests[1:])
    assert alice["reasoning_content"] == "Oslo needs a lookup."
    assert "reasoning_content" not in bob and "reasoning_content" not in anonymous


async def test_a_stream_closed_early_remembers_nothing() -> None:
    memory = ReasoningMemory()
    mode = ChatMode(ScriptedEngine([ReasoningDelta("r"), CALL, Finish("tool_calls")]), memory)
    stream = mode.stream(ChatRequest(list(QUESTION), [WEATHER], owner="alice"))
    await anext(stream)
    await stream.aclose()
    restored = await memory.restore("alice", CONTINUED)
    assert "reasoning_content" not in restored[1]
