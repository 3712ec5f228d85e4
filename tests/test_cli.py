"""The ``kimi-modes`` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "protocol" / "data"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kimi_modes", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def _render_cases() -> list[dict[str, Any]]:
    return json.loads((DATA / "render_examples.json").read_text())


@pytest.mark.parametrize("case", _render_cases(), ids=lambda c: c["name"])
def test_render_matches_the_worked_examples(case: dict[str, Any], tmp_path: Path) -> None:
    args = ["render", "--family", case["family"]]
    if case["thinking"] is not None:
        args.append("--thinking" if case["thinking"] else "--no-thinking")
    if not case["add_generation_prompt"]:
        args.append("--no-generation-prompt")
    done = run(*args, stdin=json.dumps(case["request"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout == case["expected"]
    path = tmp_path / "req.json"
    path.write_text(json.dumps(case["request"]))
    assert run(*args, str(path)).stdout == case["expected"]


def test_render_reads_the_switch_from_the_request() -> None:
    request = {"messages": [{"role": "user", "content": "Hi"}],
               "chat_template_kwargs": {"thinking": False}}
    done = run("render", "--family", "k2.5", stdin=json.dumps(request))
    assert done.stdout.endswith("<think></think>")


def test_render_rejects_bad_input_clearly() -> None:
    done = run("render", stdin="{not json")
    assert done.returncode == 2
    assert "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("render", "--family", "k4", stdin='{"messages": []}')
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_parse_prints_openai_shape_and_marks_invalid_calls(tmp_path: Path) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]))
    raw = ("Let me check.</think>On it.<|tool_calls_section_begin|><|tool_call_begin|>"
           "functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}"
           "<|tool_call_end|><|tool_call_begin|>functions.get_weather:1"
           "<|tool_call_argument_begin|>{\"town\": 3}<|tool_call_end|>"
           "<|tool_calls_section_end|>")
    done = run("parse", "--family", "k2.5", "--tools", str(tools), stdin=raw)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["reasoning_content"] == "Let me check."
    assert out["content"] == "On it."
    assert [c["function"]["name"] for c in out["tool_calls"]] == ["get_weather", "get_weather"]
    assert out["tool_calls"][0] == {"id": "functions.get_weather:0", "type": "function",
                                    "function": {"name": "get_weather",
                                                 "arguments": "{\"city\": \"Paris\"}"}}
    assert [bad["index"] for bad in out["invalid_tool_calls"]] == [1]


def test_parse_instant() -> None:
    out = json.loads(run("parse", "--family", "k2.5", "--no-thinking", stdin="plain").stdout)
    assert out == {"reasoning_content": None, "content": "plain", "tool_calls": []}


def test_serve_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[upstreams]]\nname = "x"\n')
    done = run("serve", "--config", str(bad))
    assert done.returncode == 2
    assert "needs a url" in done.stderr and "Traceback" not in done.stderr


def test_render_and_parse_k3_with_an_effort() -> None:
    request = {"messages": [{"role": "user", "content": "Hi"}],
               "chat_template_kwargs": {"thinking_effort": "low"}}
    done = run("render", "--family", "k3", stdin=json.dumps(request))
    assert done.returncode == 0, done.stderr
    assert "`thinking_effort=low`" in done.stdout
    assert done.stdout.endswith('<|open|>message role="assistant"<|sep|><|open|>think<|sep|>')
    done = run("render", "--family", "k3", "--thinking-effort", "medium", stdin=json.dumps(request))
    assert done.returncode == 2 and "'medium' is not supported by k3" in done.stderr
    raw = ("Sum.<|close|>think<|sep|><|open|>response<|sep|>3<|close|>response<|sep|>"
           "<|close|>message<|sep|>")
    done = run("parse", "--family", "k3", "--thinking-effort", "high", stdin=raw)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reasoning_content"] == "Sum."
    done = run("parse", "--family", "k2.6", "--thinking-effort", "high", stdin=raw)
    assert done.returncode == 2 and "takes no thinking_effort" in done.stderr


def test_render_k26_preserve_thinking() -> None:
    request = {"messages": [{"role": "user", "content": "1"},
                            {"role": "assistant", "content": "a", "reasoning_content": "old"},
                            {"role": "user", "content": "2"}]}
    done = run("render", "--family", "k2.6", "--preserve-thinking", stdin=json.dumps(request))
    assert done.returncode == 0, done.stderr
    assert "<think>old</think>a" in done.stdout
