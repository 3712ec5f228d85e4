"""The pure parts: tokenizer, generation limits, vLLM-like parsing, replies, script, prompt."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.families import Family
from kimi_modes.simulator.config import Settings, SimConfig
from kimi_modes.simulator.conversation import Tool, from_chat, from_prompt
from kimi_modes.simulator.faults import Fault, parse_fault
from kimi_modes.simulator.generation import Limits, Parsing, generate
from kimi_modes.simulator.replies import Reply, ToolCall, synthesize_arguments
from kimi_modes.simulator.script import Script, ScriptError
from kimi_modes.simulator.state import Slots
from kimi_modes.simulator.tokenize import count_tokens, tokenize

PARSED = Parsing(thinks=True, reasoning=True, tools=True)


@pytest.mark.parametrize("text", [
    "", "Hello, world!", "  spaced\n\nlines  ", "internationalization", "naïve café 東京",
    "a<|im_end|>b<think>c</think><|tool_call_begin|>functions.x:0",
])
def test_tokens_join_back_and_count(text: str) -> None:
    pieces = tokenize(text)
    assert "".join(pieces) == text
    assert count_tokens(text) == len(pieces)


def test_tokenizer_keeps_control_tokens_whole_and_splits_long_words() -> None:
    assert tokenize(" internationalization<|im_end|>.") == [
        " inte", "rnat", "iona", "liza", "tion", "<|im_end|>", "."]


def test_generation_counts_the_stop_token() -> None:
    gen = generate("Hi there", Limits(10))  # Hi, " ther", e, <|im_end|>
    steps = list(gen.steps())
    assert gen.completion_tokens == len(steps) == 4
    assert steps[-1] == () and gen.finish_reason == "stop"


def test_stop_string_across_tokens() -> None:
    gen = generate("abc defgh ij", Limits(50, stop=("c de",)))
    assert [d for s in gen.steps() for d in s] == [ContentDelta("ab")]
    assert (gen.finish_reason, gen.stop_reason) == ("stop", "c de")


def test_reasoning_content_and_tool_deltas() -> None:
    raw = Reply("Think.", "Ok.", [ToolCall("get_x", '{"a": 1}')]).raw_text("k2.5", True)
    gen = generate(raw, Limits(100), PARSED)
    deltas = [d for s in gen.steps() for d in s]
    assert deltas[:3] == [ReasoningDelta("Thin"), ReasoningDelta("k"), ReasoningDelta(".")]
    assert ContentDelta("Ok") in deltas
    assert ToolCallDelta(0, "functions.get_x:0", "get_x") in deltas
    assert gen.finish_reason == "tool_calls"
    assert [(c.id, c.arguments) for c in gen.tool_calls] == [("functions.get_x:0", '{"a": 1}')]
    assert (gen.reasoning, gen.content, gen.reasoning_tokens) == ("Think.", "Ok.", 3)


def test_k2_thinking_writes_its_own_think_tag() -> None:
    raw = Reply("Hm.", "Yes.").raw_text("k2-thinking", True)
    gen = generate(raw, Limits(100), PARSED).run()
    assert raw.startswith("<think>") and (gen.reasoning, gen.content) == ("Hm.", "Yes.")


def test_a_malformed_tool_id_stops_tool_output_as_in_vllm() -> None:
    raw = Reply(tool_calls=[ToolCall("x", "{}", id="x"), ToolCall("y", "{}")]).raw_text(
        "k2.5", False)
    gen = generate(raw, Limits(100), Parsing(tools=True)).run()
    assert gen.tool_calls == [] and gen.finish_reason == "stop"


def test_truncated_call_streams_but_is_not_complete() -> None:
    raw = Reply(tool_calls=[ToolCall("x", '{"long": "value"}')]).raw_text("k2.5", False)
    gen = generate(raw, Limits(16), Parsing(tools=True))
    args = "".join(d.arguments for s in gen.steps() for d in s if isinstance(d, ToolCallDelta))
    assert args and gen.tool_calls == [] and gen.finish_reason == "length"


K3_PARSED = Parsing(thinks=True, reasoning=True, tools=True, family="k3")


def test_k3_xtml_is_classified_by_channel() -> None:
    raw = Reply("Think.", "Ok.", [ToolCall("get_x", '{"a": 1}')]).raw_text("k3", True)
    gen = generate(raw, Limits(100), K3_PARSED)
    deltas = [d for s in gen.steps() for d in s]
    assert ToolCallDelta(0, "functions.get_x:0", "get_x") in deltas  # the header on its own
    assert gen.finish_reason == "tool_calls"
    assert [(c.id, c.arguments) for c in gen.tool_calls] == [("functions.get_x:0", '{"a": 1}')]
    assert (gen.reasoning, gen.content, gen.reasoning_tokens) == ("Think.", "Ok.", 3)
    assert not any("<|" in getattr(d, "text", "") for d in deltas)


def test_k3_truncated_call_streams_but_is_not_complete() -> None:
    raw = Reply(tool_calls=[ToolCall("x", '{"long": "value of it"}')]).raw_text("k3", False)
    gen = generate(raw, Limits(40), Parsing(tools=True, family="k3"))
    args = "".join(d.arguments for s in gen.steps() for d in s if isinstance(d, ToolCallDelta))
    assert args and gen.tool_calls == [] and gen.finish_reason == "length"


def test_k3_ignore_eos_writes_the_k3_stop_token() -> None:
    raw = Reply(content="Ok.").raw_text("k3", False)
    gen = generate(raw, Limits(30, ignore_eos=True, skip_special_tokens=False),
                   stop_token="<|end_of_msg|>").run()
    assert gen.content.startswith(raw + "<|end_of_msg|> The lighthouse")


def test_synthesized_arguments_fit_the_schema() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "mode": {"enum": ["fast", "slow"]}, "n": {"type": "integer", "minimum": 5},
            "ratio": {"type": "number", "maximum": 0.5}, "flag": {"type": ["null", "boolean"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "where": {"$ref": "#/$defs/place"}, "opt": {"type": "string"},
            "code": {"type": "string", "minLength": 20},
        },
        "required": ["mode", "n", "ratio", "flag", "tags", "where", "code"],
        "$defs": {"place": {"type": "object", "properties": {"city": {"default": "Oslo"}},
                            "required": ["city"]}},
    }
    args = synthesize_arguments(Tool("t", parameters=schema), {"n": "7", "mode": "slow"})
    assert args == {"mode": "slow", "n": 7, "ratio": 0.5, "flag": True,
                    "tags": ["value example"], "where": {"city": "Oslo"},
                    "code": "code examplexxxxxxxx"}
    assert synthesize_arguments(Tool("now")) == {}


def test_reading_a_rendered_prompt() -> None:
    prompt = (
        "<|im_system|>tool_declare<|im_middle|>[{\"type\": \"function\", \"function\": "
        "{\"name\": \"f\", \"parameters\": {}}}]<|im_end|>"
        "<|im_system|>system<|im_middle|>Be brief.<|im_end|>"
        "<|im_user|>user<|im_middle|>call f<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|><think>r</think>ok"
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0"
        "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|><|im_end|>"
        "<|im_system|>f<|im_middle|>## Return of functions.f:0\n42<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|><think>"
    )
    conv = from_prompt(prompt, "k2.5")
    assert [t.name for t in conv.tools] == ["f"]
    assert [(m.role, m.text, m.name) for m in conv.messages] == [
        ("system", "Be brief.", None), ("user", "call f", None), ("assistant", "ok", None),
        ("tool", "42", "f")]
    assert conv.thinking and conv.step == 1 and conv.turn == 1
    assert not from_prompt(prompt + "</think>", "k2.5").thinking


def test_chat_thinking_switch_per_family() -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}],
                            "chat_template_kwargs": {"thinking": False}}
    assert not from_chat(body, "k2.5").thinking
    assert from_chat(body, "k2-thinking").thinking
    assert not from_chat({"messages": body["messages"]}, "k2-instruct").thinking


def test_script_variables_and_order() -> None:
    script = Script.from_dict({"rules": [
        {"match": {"user": "^(\\w+) (?P<rest>.*)"}, "reply": {"content": "$1|${rest}|$$|$user"}},
        {"reply": {"content": "fallback"}},
    ]})
    conv = from_chat({"messages": [{"role": "user", "content": "hello big world"}]}, "k2.5")
    reply = script.reply_for(conv, "chat")
    assert reply is not None and reply.content == "hello|big world|$|hello big world"
    single = from_chat({"messages": [{"role": "user", "content": "x"}]}, "k2.5")
    assert (script.reply_for(single, "chat") or Reply()).content == "fallback"


def test_script_errors_name_the_rule() -> None:
    with pytest.raises(ScriptError, match=r"rule 1 \('b'\) reply: unknown key\(s\) text"):
        Script.from_dict({"rules": [{}, {"name": "b", "reply": {"text": "x"}}]})


def test_faults_and_settings() -> None:
    assert parse_fault("cut:5") == Fault("cut", cut_after=5)
    assert parse_fault(" 429 ") == Fault("status", status=429)
    with pytest.raises(ValueError, match="unknown fault"):
        parse_fault("404")
    assert Settings().updated({"ttft": 1}).ttft == 1.0
    with pytest.raises(ValueError, match="jitter"):
        Settings(jitter=1.5)
    with pytest.raises(ValueError, match=r"unknown Kimi model family 'k4'; known: .*'k3'"):
        SimConfig(family="k4")
    assert SimConfig(family="k2-instruct").max_model_len == 131072
    assert SimConfig(family="k3").max_model_len == 1048576
    assert SimConfig(family="k2.6").family is Family.K2_6


def test_slots_are_fifo_and_survive_cancellation() -> None:
    async def run() -> list[str]:
        slots, order = Slots(1), []
        await slots.acquire()

        async def user(name: str) -> None:
            await slots.acquire()
            order.append(name)
            slots.release()

        tasks = [asyncio.create_task(user(n)) for n in "abc"]
        await asyncio.sleep(0)
        assert slots.waiting == 3
        tasks[1].cancel()
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(tasks[0], tasks[2])
        assert (slots.running, slots.waiting) == (0, 0)
        return order

    assert asyncio.run(run()) == ["a", "c"]
