from __future__ import annotations

from typing import Any

import pytest

from kimi_modes.protocol import (
    ParsedOutput,
    ReasoningDelta,
    StreamingParser,
    ToolCall,
    ToolCallDelta,
    format_output,
    parse_output,
)
from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.parse import SECTION_LIMIT

from .helpers import assert_stream_matches, call_fields, example_params, stream

S, SE = T.TOOL_CALLS_SECTION_BEGIN, T.TOOL_CALLS_SECTION_END
B, A, E = T.TOOL_CALL_BEGIN, T.TOOL_CALL_ARGUMENT_BEGIN, T.TOOL_CALL_END
CHUNK_SIZES: list[Any] = [1, 2, 3, 5, 7, 13, 64, 10**9, [1, 4, 2, 9]]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


def parse(
    text: str,
    family: str = "k2-instruct",
    *,
    thinking: bool | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> ParsedOutput:
    """parse_output, checked against the streaming parser at many chunk sizes."""
    one_shot = parse_output(text, family, thinking=thinking, tools=tools)
    for sizes in CHUNK_SIZES:
        result, deltas = stream(text, family, sizes, thinking=thinking, tools=tools)
        assert result == one_shot, sizes
        assert_stream_matches(one_shot, deltas)
    return one_shot


def call(call_id: str, name: str | None, arguments: str, error: str | None = None) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments, error=error)


@pytest.mark.parametrize("example", example_params("parse_examples.json"))
def test_worked_examples(example: dict[str, Any]) -> None:
    result = parse(
        example["raw"], example["family"], thinking=example["thinking"], tools=example["tools"]
    )
    expected = example["expected"]
    assert result.reasoning_content == expected["reasoning_content"]
    assert result.content == expected["content"]
    assert call_fields(result) == expected["tool_calls"]


def test_worked_examples_calls_are_valid_except_the_truncated_one() -> None:
    raw = f'ok {S}{B}functions.get_weather:0{A}{{"city": "Paris"}}{E}'
    assert parse(raw).tool_calls[0].valid
    truncated = parse(f'{S}{B}functions.get_weather:0{A}{{"city": "Bei').tool_calls[0]
    assert not truncated.valid and truncated.arguments == '{"city": "Bei'


def test_missing_section_begin() -> None:
    result = parse(f"Hi{B}functions.f:0{A}{{}}{E}{SE}")
    assert (result.content, result.tool_calls) == ("Hi", [call("functions.f:0", "f", "{}")])


def test_missing_both_section_markers() -> None:
    result = parse(f"{B}functions.f:0{A}{{}}{E}")
    assert (result.content, result.tool_calls) == (None, [call("functions.f:0", "f", "{}")])


def test_singular_section_spelling() -> None:
    result = parse(f"x{T.TOOL_CALL_SECTION_BEGIN_SINGULAR}{B}functions.f:0{A}{{}}{E}{SE}")
    assert (result.content, result.tool_calls) == ("x", [call("functions.f:0", "f", "{}")])


def test_missing_call_end_runs_to_the_next_call_or_the_section_end() -> None:
    result = parse(f'{S}{B}functions.a:0{A}{{"x": 1}} {B}functions.b:1{A}{{}}{SE}after')
    assert result.tool_calls == [
        call("functions.a:0", "a", '{"x": 1}'),
        call("functions.b:1", "b", "{}"),
    ]
    assert result.content == "after"


def test_whitespace_around_id_and_arguments_is_stripped_inside_kept() -> None:
    result = parse(f'{S} \n{B} \n functions.f:0 \t{A}\n  {{"a" :  1,\n "b": 2}}  \n{E} {SE}')
    assert result.tool_calls == [call("functions.f:0", "f", '{"a" :  1,\n "b": 2}')]


def test_names_with_dashes_underscores_and_digits() -> None:
    text = f"{B}functions.mcp__server__search-docs:12{A}{{}}{E}{B}functions.tool_2:13{A}{{}}{E}"
    assert [c.name for c in parse(text).tool_calls] == ["mcp__server__search-docs", "tool_2"]


def test_ids_are_returned_as_written() -> None:
    text = f"{B}get_weather:3{A}{{}}{E}{B}functions.get_weather{A}{{}}{E}"
    assert [(c.id, c.name) for c in parse(text).tool_calls] == [
        ("get_weather:3", "get_weather"),
        ("functions.get_weather", "get_weather"),
    ]


def test_bare_number_id_with_one_tool() -> None:
    result = parse(f'{B} 0 {A}{{"city": "Paris"}}{E}', tools=[WEATHER])
    assert result.tool_calls == [call("0", "get_weather", '{"city": "Paris"}')]


def test_bare_number_id_with_matching_keys() -> None:
    text = f'{B}0{A}{{"query": "kimi"}}{E}{B}1{A}{{"city": "Paris"}}{E}'
    result = parse(text, tools=[WEATHER, SEARCH])
    assert [(c.id, c.name, c.valid) for c in result.tool_calls] == [
        ("0", "search", True),
        ("1", "get_weather", True),
    ]


def test_bare_number_id_name_comes_with_the_last_delta() -> None:
    parser = StreamingParser("k2-instruct", tools=[WEATHER, SEARCH])
    first = parser.feed(f'{B}0{A}{{"query": ')
    assert first == [ToolCallDelta(index=0, id="0", name=None, arguments='{"query":')]
    rest = parser.feed(f'"kimi"}}{E}')
    assert rest == [ToolCallDelta(index=0, name="search", arguments=' "kimi"}')]


def test_bare_number_id_ambiguous_or_without_tools_is_unparseable() -> None:
    unmatched = parse(f'{B}0{A}{{"zzz": 1}}{E}', tools=[WEATHER, SEARCH]).tool_calls[0]
    assert (unmatched.id, unmatched.name, unmatched.arguments) == ("0", None, '{"zzz": 1}')
    assert unmatched.error is not None and "match 0 of the declared tools" in unmatched.error
    city_search = {
        "type": "function",
        "function": {
            "name": "city_search",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    ambiguous = parse(f'{B}0{A}{{"city": "Paris"}}{E}', tools=[WEATHER, city_search])
    assert ambiguous.tool_calls[0].name is None
    assert "match 2 of the declared tools" in (ambiguous.tool_calls[0].error or "")
    untold = parse(f'{B}0{A}{{"a": 1}}{E}').tool_calls[0]
    assert untold.name is None and untold.error is not None and "no tools" in untold.error


@pytest.mark.parametrize(
    ("before", "content"),
    [
        ("(no content)", None),
        ("  (no content)\n\n", None),
        ("\n", None),
        ("(no content) but then more", "(no content) but then more"),
        ("(no con", "(no con"),
        ("(no  content)", "(no  content)"),
        ("x (no content)", "x (no content)"),
    ],
)
def test_no_content_placeholder_and_blank_content_are_dropped(
    before: str, content: str | None
) -> None:
    result = parse(f"{before}{S}{B}functions.f:0{A}{{}}{E}{SE}")
    assert result.content == content
    assert len(result.tool_calls) == 1


def test_placeholder_alone_is_dropped_too() -> None:
    assert parse("(no content)").content is None
    assert parse("k2.5 thought</think>(no content)", "k2.5").content is None


def test_text_after_section_end_is_content() -> None:
    result = parse(f"Before. {S}{B}functions.f:0{A}{{}}{E}{SE} After.")
    assert result.content == "Before.  After."
    assert parse(f"{S}{B}functions.f:0{A}{{}}{E}{SE}\n").content is None


def test_k2_thinking_with_and_without_leading_think() -> None:
    for text in (
        "<think>Hmm.</think>Answer.",
        "Hmm.</think>Answer.",
        " \n<think>Hmm.</think>Answer.",
    ):
        result = parse(text, "k2-thinking")
        assert (result.reasoning_content, result.content) == ("Hmm.", "Answer."), text


def test_k2_thinking_ignores_the_switch() -> None:
    assert parse("r</think>c", "k2-thinking", thinking=False).reasoning_content == "r"


def test_k25_instant_and_k2_instruct_have_no_reasoning() -> None:
    for family, thinking in (("k2.5", False), ("k2-instruct", None), ("k2-instruct", True)):
        result = parse("Sure.</think> Done.", family, thinking=thinking)
        assert (result.reasoning_content, result.content) == (None, "Sure. Done.")


@pytest.mark.parametrize("family", ["k2-thinking", "k2.5", "k2.7-code", "k3"])
def test_reasoning_false_reads_content_an_engine_already_split(family: str) -> None:
    tools = [{"type": "function", "function": {"name": "now", "parameters": {}}}]
    text = format_output(family, content="Checking.", tool_calls=[("functions.now:0", "{}")],
                         thinking=False)
    parser = StreamingParser(family, thinking=True, tools=tools, reasoning=False)
    deltas = [d for ch in text for d in parser.feed(ch)] + parser.close()
    result = parser.result()
    assert (result.reasoning_content, result.content) == (None, "Checking.")
    assert [(c.name, c.arguments, c.error) for c in result.tool_calls] == [("now", "{}", None)]
    assert not any(isinstance(d, ReasoningDelta) for d in deltas)


def test_truncated_reasoning_is_all_reasoning() -> None:
    result = parse("Let me think about", "k2.5")
    assert (result.reasoning_content, result.content, result.tool_calls) == (
        "Let me think about",
        None,
        [],
    )


def test_reasoning_ends_at_a_bare_call_marker() -> None:
    result = parse(f"I will look.{B}functions.f:0{A}{{}}{E}", "k2.5")
    assert result.reasoning_content == "I will look."
    assert result.content is None and len(result.tool_calls) == 1


def test_empty_or_blank_reasoning_is_none() -> None:
    assert parse("</think>Hi", "k2.5").reasoning_content is None
    assert parse(" \n </think>Hi", "k2.5").reasoning_content is None
    assert parse("\nstep one\n</think>Hi", "k2.5").reasoning_content == "\nstep one\n"


def test_section_without_call_marker_is_abandoned_past_the_limit() -> None:
    filler = "x" * (SECTION_LIMIT + 1)
    result = parse(f"ok {S}{filler}{B}functions.f:0{A}{{}}{E}")
    assert result.content == "ok " + filler
    # after abandoning, a call marker still starts a call
    assert result.tool_calls == [call("functions.f:0", "f", "{}")]


def test_section_text_within_the_limit_is_dropped_before_a_call() -> None:
    filler = "y" * SECTION_LIMIT
    result = parse(f"ok {S}{filler}{B}functions.f:0{A}{{}}{E}{SE}")
    assert result.content == "ok "
    assert len(result.tool_calls) == 1


def test_text_between_calls_past_the_limit_is_content() -> None:
    filler = "z" * (SECTION_LIMIT + 1)
    result = parse(f"{B}functions.f:0{A}{{}}{E}{filler}")
    assert result.content == filler


def test_section_without_any_call_is_content() -> None:
    assert parse(f"a{S} b {SE}c").content == "a b c"
    assert parse(f"a{S} b").content == "a b"


def test_text_after_the_last_call_without_section_end_is_content() -> None:
    result = parse(f"{B}functions.f:0{A}{{}}{E}\n\nHere you go.")
    assert result.content == "\n\nHere you go."


def test_invalid_json_arguments_are_kept_and_marked() -> None:
    result = parse(f"{B}functions.get_weather:0{A}{{city: Paris}}{E}", tools=[WEATHER])
    (only,) = result.tool_calls
    assert only.arguments == "{city: Paris}" and not only.valid
    assert only.error is not None and only.error.startswith("arguments are not valid JSON")


def test_schema_invalid_arguments_are_kept_and_marked() -> None:
    text = f'{B}functions.get_weather:0{A}{{"city": 3}}{E}{B}functions.nope:1{A}{{}}{E}'
    first, second = parse(text, tools=[WEATHER]).tool_calls
    assert first.error == "schema violation at $.city: 3 is not of type 'string'"
    assert second.error == "unknown tool 'nope' (declared: get_weather)"


def test_call_without_argument_marker_is_kept_with_empty_arguments() -> None:
    (only,) = parse(f"{B}functions.now:0{E}").tool_calls
    assert (only.id, only.name, only.arguments) == ("functions.now:0", "now", "")
    assert only.error == "arguments are empty (expected a JSON object)"


def test_call_markers_without_anything_between_are_no_call() -> None:
    result = parse(f"{B}{B} {E}{B}functions.f:0{A}{{}}{E}")
    assert result.tool_calls == [call("functions.f:0", "f", "{}")]


def test_truncated_mid_id_keeps_the_partial_call() -> None:
    (only,) = parse(f"{S}{B}functions.get_wea").tool_calls
    assert (only.id, only.name, only.arguments) == ("functions.get_wea", "get_wea", "")


def test_overlong_call_id_is_abandoned_as_content() -> None:
    filler = "q" * (SECTION_LIMIT + 1)
    result = parse(f"{B}{filler}")
    assert (result.content, result.tool_calls) == (filler, [])


def test_stop_tokens_end_the_output() -> None:
    assert parse("Hi<|im_end|><|im_user|>user<|im_middle|>more").content == "Hi"
    assert parse("r</think>c[EOS]junk", "k2.5").content == "c"
    result = parse(f"{B}functions.f:0{A}{{}}<|im_end|>{E}")
    assert result.tool_calls == [call("functions.f:0", "f", "{}")]


def test_stray_markers_are_removed() -> None:
    text = f"a<think>b</think>c{SE}d{E}e{A}f<|im_user|>g<|media_pad|>h"
    assert parse(text).content == "abcdefgh"
    args = parse(f"{B}functions.f:0{A}{{<think>}}{T.IM_SYSTEM}{E}").tool_calls[0].arguments
    assert args == "{}"


def test_removing_a_marker_never_joins_text_into_a_marker() -> None:
    result = parse("x<|im_<think>end|>y")
    assert result.content == "x<|im_\u200bend|>y"
    reasoning = parse("[EO</think>", "k2.5")
    assert reasoning.reasoning_content == "[EO"
    joined = parse(f"a <|tool_{S}{B}functions.f:0{A}{{}}{E}{SE}call_end|> b")
    assert joined.content == "a <|tool_\u200bcall_end|> b"


def test_empty_output() -> None:
    for family in ("k2-instruct", "k2-thinking", "k2.5"):
        assert parse("", family) == ParsedOutput(None, None, [])


def test_to_openai_message() -> None:
    result = parse(f"r</think>c{B}functions.f:0{A}{{}}{E}{B}0{A}{{}}{E}", "k2.5")
    assert result.to_openai_message() == {
        "role": "assistant",
        "content": "c",
        "reasoning_content": "r",
        "tool_calls": [
            {
                "id": "functions.f:0",
                "type": "function",
                "function": {"name": "f", "arguments": "{}"},
            },
            {"id": "0", "type": "function", "function": {"name": "", "arguments": "{}"}},
        ],
    }
    assert parse("hi").to_openai_message() == {
        "role": "assistant",
        "content": "hi",
        "reasoning_content": None,
    }


def test_parser_lifecycle_errors() -> None:
    parser = StreamingParser("k2.5")
    with pytest.raises(RuntimeError, match="before close"):
        parser.result()
    parser.close()
    with pytest.raises(RuntimeError, match="after close"):
        parser.feed("x")
    with pytest.raises(RuntimeError, match="twice"):
        parser.close()


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown Kimi model family"):
        parse_output("x", "kimi-3")
    with pytest.raises(ValueError, match="unknown Kimi model family"):
        StreamingParser("gpt")
