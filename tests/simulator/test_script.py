"""Scripted replies (``--script``): matching, variables, invalid arguments, faults, ``times``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from helpers.simulator import Sim

MODEL = "moonshotai/Kimi-K2.5"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SCRIPT = {
    "rules": [
        {
            "name": "weather",
            "match": {
                "user": "(?i)weather in (?P<city>\\w+)",
                "tool": "get_weather",
                "after_tool": False,
            },
            "reply": {
                "reasoning": "I need the weather for ${city}.",
                "tool_calls": [{"name": "get_weather", "arguments": {"city": "${city}"}}],
            },
        },
        {
            "name": "answer",
            "match": {"after_tool": True, "tool_result": "(\\d+) degrees"},
            "reply": {"content": "It is $1 degrees, costing $$0."},
        },
        {
            "name": "broken",
            "match": {"user": "broken"},
            "reply": {"tool_calls": [{"name": "get_weather", "arguments": '{"city": '}]},
        },
        {"name": "flaky", "match": {"user": "flaky"}, "fault": "503", "times": 1},
        {"name": "slow", "match": {"user": "slow"}, "ttft": 0.4, "reply": {"content": "late"}},
        {
            "name": "second",
            "match": {"turn": 2, "thinking": False},
            "reply": {"content": "Second turn, no thinking."},
        },
        {
            "name": "raw",
            "match": {"endpoint": "completions", "user": "raw"},
            "reply": {"raw": "free text<|im_end|>after"},
        },
    ]
}


@pytest.fixture(scope="module")
def scripted_engine(start_module_sim: Callable[..., Sim],
                    tmp_path_factory: pytest.TempPathFactory) -> Sim:
    path = tmp_path_factory.mktemp("script") / "script.json"
    path.write_text(json.dumps(SCRIPT))
    return start_module_sim("--ttft", "0", "--tpot", "0", "--script", str(path))


@pytest.fixture
def scripted(scripted_engine: Sim) -> Sim:
    """The scripted engine with its rules' use counts reset."""
    scripted_engine.control(reset=True)
    return scripted_engine


def test_rules_drive_a_tool_loop(scripted: Sim) -> None:
    client = scripted.openai()
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Lyon?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    message = first.choices[0].message
    assert (message.model_extra or {})["reasoning"] == "I need the weather for Lyon."
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.arguments == '{"city": "Lyon"}'
    messages += [
        message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": message.tool_calls[0].id,
            "content": "21 degrees and sunny",
        },
    ]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "It is 21 degrees, costing $0."


def test_a_rule_needs_its_tool_declared(scripted: Sim) -> None:
    reply = scripted.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "weather in Lyon"}]
    )
    assert reply.choices[0].message.content == "You said: weather in Lyon"  # the default


def test_invalid_arguments_are_sent_as_written(scripted: Sim) -> None:
    reply = scripted.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "broken"}], tools=[WEATHER]
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.arguments == '{"city": '


def test_a_rule_fault_fires_times_then_the_rule_is_spent(scripted: Sim) -> None:
    client = scripted.openai()
    ask: list[Any] = [{"role": "user", "content": "flaky"}]
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model=MODEL, messages=ask)
    assert failure.value.status_code == 503
    assert client.chat.completions.create(model=MODEL, messages=ask).choices[0].message.content
    scripted.control(reset=True)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=MODEL, messages=ask)


def test_a_rule_sets_its_latency(scripted: Sim) -> None:
    start = time.monotonic()
    scripted.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "slow"}]
    )
    assert time.monotonic() - start >= 0.35


def test_turn_and_thinking_conditions(scripted: Sim) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "You said: one"},
        {"role": "user", "content": "two"},
    ]
    client = scripted.openai()
    thinking = client.chat.completions.create(model=MODEL, messages=messages)
    assert thinking.choices[0].message.content == "You said: two"
    instant = client.chat.completions.create(
        model=MODEL, messages=messages, extra_body={"chat_template_kwargs": {"thinking": False}}
    )
    assert instant.choices[0].message.content == "Second turn, no thinking."


def test_raw_reply_on_completions(scripted: Sim) -> None:
    prompt = (
        "<|im_user|>user<|im_middle|>raw please<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|><think></think>"
    )
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 50}
    hidden = httpx.post(scripted.v1 + "/completions", json=body).json()
    shown = httpx.post(
        scripted.v1 + "/completions", json={**body, "skip_special_tokens": False}
    ).json()
    assert hidden["choices"][0]["text"] == "free textafter"
    assert shown["choices"][0]["text"] == "free text<|im_end|>after"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"rules": [{"match": {"user": "("}}]}, "bad regex"),
        ({"rules": [{"macth": {}}]}, "unknown key(s) macth"),
        ({"rules": [{"fault": "boom"}]}, "unknown fault"),
        ({"rules": [{"match": {"turn": "2"}}]}, "match.turn"),
        ({"rule": []}, '"rules" list'),
    ],
)
def test_a_bad_script_stops_the_start(tmp_path: Path, script: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(script))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kimi_modes.simulator",
            "--port",
            "0",
            "--script",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
