"""``/v1/completions`` (raw Kimi text) and the ``--raw-markers`` chat mode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from helpers.simulator import Sim

MODEL = "moonshotai/Kimi-K2.5"
SYSTEM = "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI."
TOOLS = (
    "<|im_system|>tool_declare<|im_middle|># Tools\n\n## functions\nnamespace functions {\n"
    "// Get the current weather for a city.\ntype get_weather = (_: {\n  // City name\n"
    '  city: string,\n  days: number,\n  // Temperature unit\n  unit?: "celsius" | '
    '"fahrenheit"\n}) => any;\n}\n<|im_end|>'
)


def prompt(user: str, *, thinking: bool = True, tools: bool = False) -> str:
    return (
        (TOOLS if tools else "")
        + SYSTEM
        + "<|im_end|><|im_user|>user<|im_middle|>"
        + user
        + "<|im_end|><|im_assistant|>assistant<|im_middle|>"
        + ("<think>" if thinking else "<think></think>")
    )


def complete(sim: Sim, **body: Any) -> dict[str, Any]:
    response = httpx.post(sim.v1 + "/completions", json={"model": MODEL, **body}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_thinking_prompt_gets_reasoning_then_answer(sim: Sim) -> None:
    reply = complete(sim, prompt=prompt("Hello"), max_tokens=200)
    choice = reply["choices"][0]
    assert reply["object"] == "text_completion"
    assert choice["text"].startswith("The user wrote 1 words.")
    assert choice["text"].endswith("</think>You said: Hello")
    assert choice["finish_reason"] == "stop"
    assert reply["usage"]["prompt_tokens"] > 10


def test_instant_prompt_gets_the_answer_only(sim: Sim) -> None:
    reply = complete(sim, prompt=prompt("Hello", thinking=False), max_tokens=200)
    assert reply["choices"][0]["text"] == "You said: Hello"


def test_default_max_tokens_is_16(sim: Sim) -> None:
    reply = complete(sim, prompt=prompt("Hello"))
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 16


def test_tool_call_written_with_markers_from_a_typescript_declaration(sim: Sim) -> None:
    text = complete(
        sim, prompt=prompt("Please get_weather days=2", thinking=False, tools=True), max_tokens=200
    )["choices"][0]["text"]
    assert text == (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
        '<|tool_call_argument_begin|>{"city": "city example", "days": 2}<|tool_call_end|>'
        "<|tool_calls_section_end|>"
    )


@pytest.mark.parametrize("skip", [True, False])
def test_skip_special_tokens_hides_only_the_hidden_ones(sim: Sim, skip: bool) -> None:
    text = complete(
        sim,
        prompt=prompt("Hi get_weather", thinking=False, tools=True),
        max_tokens=60,
        ignore_eos=True,
        skip_special_tokens=skip,
    )["choices"][0]["text"]
    assert "<|tool_call_begin|>" in text  # never hidden
    assert ("<|im_end|>" in text) is not skip  # the stop token, generated past by ignore_eos


def test_stop_strings_cut_the_text(sim: Sim) -> None:
    choice = complete(sim, prompt=prompt("Hello", thinking=False), stop=["said"], max_tokens=50)[
        "choices"
    ][0]
    assert choice["text"] == "You "
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == "said"
    kept = complete(
        sim,
        prompt=prompt("Hello", thinking=False),
        stop="said",
        max_tokens=50,
        include_stop_str_in_output=True,
    )["choices"][0]
    assert kept["text"] == "You said"


def test_streamed_completion_equals_the_whole_one(sim: Sim) -> None:
    body = {
        "model": MODEL,
        "prompt": prompt("Stream me"),
        "max_tokens": 100,
        "stream_options": {"include_usage": True},
    }
    events = sim.sse(body, path="/completions")
    whole = complete(sim, **body)
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == whole["choices"][0]["text"]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"] == whole["usage"] and events[-1] == "[DONE]"
    sdk = sim.openai().completions.create(model=MODEL, prompt=prompt("Stream me"), max_tokens=100)
    assert sdk.choices[0].text == whole["choices"][0]["text"]


def test_what_the_gateway_sent_is_visible_in_stats(sim: Sim) -> None:
    complete(sim, prompt=prompt("Hi"), skip_special_tokens=False, stop=["<|im_end|>"])
    last = sim.stats()["last_requests"][-1]
    assert last["path"] == "/v1/completions"
    assert last["body"]["skip_special_tokens"] is False
    assert last["body"]["stop"] == ["<|im_end|>"]


def test_raw_markers_mode_puts_everything_in_content(start_simulator: Callable[..., Sim]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--raw-markers")
    tools = [{"type": "function", "function": {"name": "now", "parameters": {}}}]
    body = {"messages": [{"role": "user", "content": "What time is it? Use now"}], "tools": tools}
    message = sim.openai().chat.completions.create(model=MODEL, **body).choices[0].message
    assert message.tool_calls is None
    assert (message.model_extra or {}).get("reasoning") is None
    content = message.content or ""
    assert content.startswith("The user asks for a tool.")
    assert content.endswith(
        "</think><|tool_calls_section_begin|><|tool_call_begin|>functions.now:0"
        "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>"
    )
    events = sim.sse(body)
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == content
