"""engines/message.py: the one fold of an event stream into a message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kimi_modes.engines.base import Event, Finish, InvalidToolCall, Usage
from kimi_modes.engines.message import MessageBuilder, collect
from kimi_modes.protocol import StreamingParser, parse_output
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.output import ParsedOutput, ToolCall

EVENTS: list[Event] = [
    ReasoningDelta("Two "), ReasoningDelta("calls."),
    ContentDelta("Looking."),
    ToolCallDelta(0, "functions.a:0", "a"), ToolCallDelta(0, arguments='{"x":'),
    ToolCallDelta(0, arguments=" 1}"),
    ToolCallDelta(1, "functions.b:1", "b", "{}"),
    Usage(10, 5, 2),
    InvalidToolCall(1, "functions.b:1", "unknown function"),
    Finish("tool_calls"),
]


def test_the_fold_and_when_calls_complete() -> None:
    builder = MessageBuilder()
    completed = [(i, done) for i, event in enumerate(EVENTS)
                 if (done := builder.add(event)) is not None]
    # a call completes when the next begins, and the last one at Finish (with its error)
    assert completed == [
        (6, ToolCall("functions.a:0", "a", '{"x": 1}')),
        (9, ToolCall("functions.b:1", "b", "{}", "unknown function")),
    ]
    assert builder.close() is None
    completion = builder.completion()
    assert completion.usage == Usage(10, 5, 2)
    assert completion.finish_reason == "tool_calls"
    assert completion.message == ParsedOutput(
        "Two calls.", "Looking.",
        [ToolCall("functions.a:0", "a", '{"x": 1}'),
         ToolCall("functions.b:1", "b", "{}", "unknown function")])


def test_an_empty_stream_and_one_without_finish() -> None:
    builder = MessageBuilder()
    builder.add(InvalidToolCall(3, None, "a mark for no call"))
    assert builder.completion().message == ParsedOutput()
    assert builder.completion().finish_reason is None
    builder.add(ToolCallDelta(0, None, "f", "{}"))
    assert builder.close() == ToolCall("", "f", "{}")
    assert builder.close() is None


def test_it_agrees_with_the_protocol_parser() -> None:
    raw = ("Easy.</think>Calling it.<|tool_calls_section_begin|><|tool_call_begin|>"
           "functions.now:0<|tool_call_argument_begin|>{}<|tool_call_end|>"
           "<|tool_call_begin|>functions.later:1<|tool_call_argument_begin|>{\"a\": 1}"
           "<|tool_call_end|><|tool_calls_section_end|>")

    parser = StreamingParser("k2.5")
    builder = MessageBuilder()
    for chunk in (raw[:9], raw[9:60], raw[60:]):
        for delta in parser.feed(chunk):
            builder.add(delta)
    for delta in parser.close():
        builder.add(delta)
    assert builder.message() == parse_output(raw, "k2.5")


async def test_collect_runs_the_hooks_in_order() -> None:
    seen: list[str] = []

    async def stream() -> AsyncIterator[Event]:
        for event in EVENTS[:7]:  # no Finish: the last call completes at the end
            yield event

    async def on_event(event: Event) -> None:
        seen.append(type(event).__name__)

    async def on_tool_call(call: ToolCall) -> None:
        seen.append(f"call {call.name}")

    completion = await collect(stream(), on_event=on_event, on_tool_call=on_tool_call)
    assert seen[-3:] == ["ToolCallDelta", "call a", "call b"]
    assert seen.index("call a") == 7  # right after the delta that began call 1
    assert [c.name for c in completion.message.tool_calls] == ["a", "b"]
    assert completion.finish_reason is None


async def test_collect_propagates_a_failing_stream() -> None:
    async def stream() -> AsyncIterator[Event]:
        yield ContentDelta("x")
        raise RuntimeError("cut")

    with pytest.raises(RuntimeError, match="cut"):
        await collect(stream())
