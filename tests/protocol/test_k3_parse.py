"""The K3 (XTML) parser behind parse_output/StreamingParser, and K2.6's tool calls in thinking."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kimi_modes.protocol import ParsedOutput, ToolCallDelta, format_output, k3_parse, parse_output
from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.neutralize import ZERO_WIDTH_SPACE

from .helpers import assert_stream_matches, example_params, stream

CHUNK_SIZES: list[Any] = [1, 2, 3, 7, 64, 10**9, [1, 4, 2, 9]]
R_CLOSE, THINK_CLOSE = "<|close|>response<|sep|>", "<|close|>think<|sep|>"
R_OPEN, MSG_CLOSE = "<|open|>response<|sep|>", "<|close|>message<|sep|>"
TOOLS_OPEN, TOOLS_CLOSE = "<|open|>tools<|sep|>", "<|close|>tools<|sep|>"
ALL_MARKERS = (*T.XTML_CONTROL_TOKENS, *T.CONTROL_TOKENS)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
        },
    }
]


def parse(
    text: str, *, thinking: bool | None = None, tools: list[dict[str, Any]] | None = None
) -> ParsedOutput:
    """parse_output for K3, checked against the streaming parser at many chunk sizes."""
    one_shot = parse_output(text, "k3", thinking=thinking, tools=tools)
    for sizes in CHUNK_SIZES:
        result, deltas = stream(text, "k3", sizes, thinking=thinking, tools=tools)
        assert result == one_shot, sizes
        assert_stream_matches(one_shot, deltas)
    _no_marker_leaks(one_shot)
    return one_shot


def _no_marker_leaks(result: ParsedOutput) -> None:
    fields = [result.reasoning_content or "", result.content or ""]
    for call in result.tool_calls:
        fields += [call.id, call.name or "", call.arguments]
    for text in fields:
        assert not any(marker in text for marker in T.XTML_CONTROL_TOKENS), text


def _call(name: str, *args: tuple[str, str, str]) -> str:
    body = "".join(
        f'<|open|>argument key="{k}" type="{t}"<|sep|>{v}<|close|>argument<|sep|>'
        for k, t, v in args
    )
    return f'<|open|>call tool="{name}" index="1"<|sep|>{body}<|close|>call<|sep|>'


@pytest.mark.parametrize("example", example_params("parse_examples_k3.json"))
def test_worked_examples(example: dict[str, Any]) -> None:
    result = parse(example["raw"], thinking=example["thinking"], tools=example["tools"])
    expected = example["expected"]
    assert result.reasoning_content == expected["reasoning_content"]
    assert result.content == expected["content"]
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        (c["name"], c["arguments"]) for c in expected["tool_calls"]
    ]
    assert all(c.valid and c.id.startswith(f"functions.{c.name}:") for c in result.tool_calls)


def test_typed_values_raw_json_block_and_empty_call() -> None:
    raw = (
        f"{R_CLOSE}{TOOLS_OPEN}"
        + _call("f", ("s", "string", 'a "q"\n'), ("o", "object", '{"k": [1, 2.50]}'))
        + _call("g", ("n", "number", "not json"), ("b", "boolean", "true"))
        + '<|open|>call tool="h" index="3"<|sep|><|open|>json type="object"<|sep|>{"raw":1}'
        "<|close|>json<|sep|><|close|>call<|sep|>"
        + '<|open|>call tool="e&amp;&quot;" index="4"<|sep|><|close|>call<|sep|>'
        + f"{TOOLS_CLOSE}{MSG_CLOSE}"
    )
    calls = parse(raw, thinking=False).tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("functions.f:0", "f", '{"s": "a \\"q\\"\\n", "o": {"k": [1, 2.5]}}'),
        ("functions.g:1", "g", '{"n": "not json", "b": true}'),
        ("functions.h:2", "h", '{"raw":1}'),
        ('functions.e&":3', 'e&"', "{}"),
    ]


def test_arguments_validated_against_the_schema() -> None:
    raw = f"{R_CLOSE}{TOOLS_OPEN}" + _call("f", ("x", "string", "one")) + TOOLS_CLOSE
    (call,) = parse(raw, thinking=False, tools=TOOLS).tool_calls
    assert not call.valid and "schema violation at $.x" in (call.error or "")
    raw = f"{R_CLOSE}{TOOLS_OPEN}" + _call("nope") + TOOLS_CLOSE
    assert "unknown tool 'nope'" in (
        parse(raw, thinking=False, tools=TOOLS).tool_calls[0].error or ""
    )


@pytest.mark.parametrize("cut", range(1, 40))
def test_truncated_inside_a_call_never_leaks_and_marks_the_call(cut: int) -> None:
    full = (
        f"Hm.{THINK_CLOSE}{R_OPEN}Ok.{R_CLOSE}{TOOLS_OPEN}"
        + _call("f", ("x", "number", "12"), ("y", "string", "long value"))
        + TOOLS_CLOSE
        + MSG_CLOSE
    )
    start = full.index("<|open|>call")
    text = full[: start + cut * 6]
    result = parse(text)
    # A partial marker string at the very end is text (a real marker is one token).
    assert result.reasoning_content == "Hm." and (result.content or "").startswith("Ok.")
    if result.tool_calls:
        (call,) = result.tool_calls
        assert call.valid == ("<|close|>call<|sep|>" in text), call
        assert call.valid or call.error == "the output ended inside this tool call (truncated)"


def test_truncated_channels() -> None:
    assert parse("I am still thinking <|close|>").reasoning_content == "I am still thinking "
    result = parse(f"r{THINK_CLOSE}{R_OPEN}partial answer <|close|>resp")
    assert (result.reasoning_content, result.content) == ("r", "partial answer ")
    assert parse(f"r{THINK_CLOSE}<|open|>respo").content is None


def test_response_or_tools_before_think_close_end_the_reasoning() -> None:
    result = parse(f"plan{R_OPEN}answer{R_CLOSE}")
    assert (result.reasoning_content, result.content) == ("plan", "answer")
    result = parse(f"plan{TOOLS_OPEN}" + _call("f", ("x", "number", "1")) + TOOLS_CLOSE)
    assert result.reasoning_content == "plan" and result.tool_calls[0].arguments == '{"x": 1}'


def test_stops_and_text_between_channels() -> None:
    result = parse(f"r{THINK_CLOSE}  \n{R_OPEN}a{R_CLOSE} tail{MSG_CLOSE}ignored")
    assert (result.reasoning_content, result.content) == ("r", "a tail")
    assert parse("a<|end_of_msg|>b", thinking=False).content == "a"
    assert parse("a[EOS]b", thinking=False).content == "a"


def test_stray_markers_are_dropped_and_never_join_into_one() -> None:
    result = parse("a<|sep|>b[BOS]c <|open|>odd<|sep|>x<|close|>odd<|sep|>", thinking=False)
    assert result.content == "abc x"
    joined = parse("<|op[BOS]en|>", thinking=False).content
    assert joined == f"<|op{ZERO_WIDTH_SPACE}en|>"
    value = parse(f"{R_CLOSE}" + _call("f", ("v", "string", '"\\u003c|sep|>"')), thinking=False)
    assert value.tool_calls[0].arguments == '{"v": "\\"\\\\u003c|sep|>\\""}'
    decoded = parse(f"{R_CLOSE}" + _call("f", ("v", "array", '["\\u003c|sep|>"]')), thinking=False)
    assert decoded.tool_calls[0].arguments == f'{{"v": ["<{ZERO_WIDTH_SPACE}|sep|>"]}}'


def test_arguments_stream_as_they_come() -> None:
    from kimi_modes.protocol import StreamingParser

    parser = StreamingParser("k3", thinking=False)
    parser.feed(f"{R_CLOSE}{TOOLS_OPEN}")
    assert parser.feed('<|open|>call tool="f" index="1"<|sep|>') == [
        ToolCallDelta(index=0, id="functions.f:0", name="f")
    ]
    assert parser.feed('<|open|>argument key="s" type="string"<|sep|>he') == [
        ToolCallDelta(index=0, arguments='{"s": "he')
    ]
    assert parser.feed("llo<|clo") == [ToolCallDelta(index=0, arguments="llo")]
    assert parser.feed("se|>argument<|sep|><|close|>call<|sep|>") == [
        ToolCallDelta(index=0, arguments='"}')
    ]
    parser.close()
    assert parser.result().tool_calls[0].arguments == '{"s": "hello"}'


# -- properties ---------------------------------------------------------------------------------

PLAIN = st.text(alphabet='ab <|>[]/_"&=\n', max_size=20)
FRAGMENTS = st.sampled_from(
    [
        *T.XTML_CONTROL_TOKENS,
        "<|open|>think<|sep|>",
        THINK_CLOSE,
        R_OPEN,
        R_CLOSE,
        TOOLS_OPEN,
        TOOLS_CLOSE,
        MSG_CLOSE,
        '<|open|>call tool="f" index="1"<|sep|>',
        "<|close|>call<|sep|>",
        '<|open|>argument key="x" type="number"<|sep|>',
        '<|open|>argument key="y" type="string"<|sep|>',
        "<|close|>argument<|sep|>",
        '<|open|>json type="object"<|sep|>',
        "<|close|>json<|sep|>",
        "<|op",
        "en|>",
        "<|",
        "12",
        '"q"',
    ]
)
NOISE = st.lists(st.one_of(FRAGMENTS, PLAIN), max_size=25).map("".join)
CHUNKINGS = st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(NOISE, st.sampled_from([None, True, False]), CHUNKINGS, st.booleans())
def test_random_xtml_never_crashes_never_leaks_and_ignores_chunking(
    text: str, thinking: bool | None, sizes: list[int], with_tools: bool
) -> None:
    tools = TOOLS if with_tools else None
    one_shot = parse_output(text, "k3", thinking=thinking, tools=tools)
    _no_marker_leaks(one_shot)
    result, deltas = stream(text, "k3", sizes, thinking=thinking, tools=tools)
    assert result == one_shot
    assert_stream_matches(one_shot, deltas)
    for delta in deltas:
        piece = delta.arguments if isinstance(delta, ToolCallDelta) else delta.text
        assert not any(marker in piece for marker in T.XTML_CONTROL_TOKENS)


ARG_TEXT = st.text(alphabet='abé 🙂"\\\n{}<>|&', max_size=8)
ARGS = st.dictionaries(ARG_TEXT, st.integers() | ARG_TEXT | st.booleans() | st.none(), max_size=3)
WORDS = st.text(alphabet="abc xyz\n.,:<>[]|", min_size=1, max_size=40)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([None, True, False]),
    st.none() | WORDS,
    st.none() | WORDS,
    st.lists(st.tuples(st.sampled_from(["get_weather", "mcp__s__x-y"]), ARGS), max_size=3),
    CHUNKINGS,
)
def test_format_output_round_trips(
    thinking: bool | None,
    reasoning: str | None,
    content: str | None,
    calls: list[tuple[str, dict[str, object]]],
    sizes: list[int],
) -> None:
    wire = [
        (f"functions.{n}:{i}", json.dumps(a, ensure_ascii=False)) for i, (n, a) in enumerate(calls)
    ]
    text = format_output(
        "k3", reasoning=reasoning, content=content, tool_calls=wire, thinking=thinking
    )
    result, deltas = stream(text, "k3", sizes, thinking=thinking)
    assert result == parse_output(text, "k3", thinking=thinking)
    assert_stream_matches(result, deltas)
    assert result.reasoning_content == (reasoning if thinking is not False else None)
    assert result.content == content
    assert [(c.id, c.name, c.arguments, c.valid) for c in result.tool_calls] == [
        (call_id, call_id.split(".")[1].split(":")[0], args, True) for call_id, args in wire
    ]


# -- K2.6 / K2.7-Code: tool calls opened inside the thinking ------------------------------------


@pytest.mark.parametrize("family", ["k2.6", "k2.7-code"])
@pytest.mark.parametrize("opener", [T.TOOL_CALLS_SECTION_BEGIN, ""])
def test_k26_tool_section_before_think_end_ends_the_reasoning(family: str, opener: str) -> None:
    raw = (
        f"Let me run it.{opener}{T.TOOL_CALL_BEGIN}functions.Shell:0{T.TOOL_CALL_ARGUMENT_BEGIN}"
        f'{{"cmd": "ls"}}{T.TOOL_CALL_END}{T.TOOL_CALLS_SECTION_END}'
    )
    one_shot = parse_output(raw, family)
    for size in CHUNK_SIZES:
        result, deltas = stream(raw, family, size)
        assert result == one_shot
        assert_stream_matches(one_shot, deltas)
    assert one_shot.reasoning_content == "Let me run it."
    assert [(c.name, c.arguments) for c in one_shot.tool_calls] == [("Shell", '{"cmd": "ls"}')]
    assert not any(m in (one_shot.reasoning_content or "") for m in ALL_MARKERS)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(NOISE, CHUNKINGS, st.integers(0, 30))
def test_random_xtml_with_a_small_header_limit(text: str, sizes: list[int], limit: int) -> None:
    """The same, with headers turned into text all the time."""
    with mock.patch.object(k3_parse, "HEADER_LIMIT", limit):
        one_shot = parse_output(text, "k3", tools=TOOLS)
        result, deltas = stream(text, "k3", sizes, tools=TOOLS)
    _no_marker_leaks(one_shot)
    assert result == one_shot
    assert_stream_matches(one_shot, deltas)
