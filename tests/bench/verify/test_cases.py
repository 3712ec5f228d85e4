"""The tool-call verifier's input: the bundled sample set (valid, labelled, what its generator
writes), the checks of a case, the body sent for a line, and line-numbered input errors."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.bench.verify.cases import (
    LABEL_KEY,
    InputError,
    check_case,
    load_cases,
    prepare_body,
    request_hash,
    sample_path,
)

REPO = Path(__file__).resolve().parents[3]

# ----------------------------------------------------------------------------- the sample set


def sample_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in sample_path().read_text().splitlines() if line]


def test_the_sample_set_is_bundled_and_every_line_is_a_valid_labelled_request() -> None:
    lines = sample_lines()
    assert len(lines) >= 36
    for number, line in enumerate(lines, 1):
        assert check_case(line) == [], f"line {number}"
    labels = [line[LABEL_KEY] for line in lines]
    assert labels.count("tool_calls") >= 12 and labels.count("stop") >= 12


def test_the_sample_set_covers_the_shapes_it_promises() -> None:
    lines = sample_lines()
    choices = {json.dumps(line.get("tool_choice")) for line in lines}
    assert {"null", '"auto"', '"none"', '"required"'} <= choices
    assert any(c.startswith('{"type": "function"') for c in choices)
    schemas = json.dumps([line.get("tools") for line in lines])
    for keyword in ('"enum"', '"items"', '"pattern"', '"$ref"', '"anyOf"', '"minItems"',
                    '"additionalProperties"', '"exclusiveMinimum"', '"const"'):
        assert keyword in schemas, keyword
    nested = [p for line in lines for t in line.get("tools") or ()
              for p in t["function"]["parameters"].get("properties", {}).values()
              if p.get("type") == "object"]
    assert nested  # an object inside the arguments
    optional = [t for line in lines for t in line.get("tools") or ()
                if set(t["function"]["parameters"].get("properties", {}))
                - set(t["function"]["parameters"].get("required", []))]
    assert optional
    assert any(len(line.get("tools") or ()) >= 10 for line in lines)
    assert any("tools" not in line for line in lines)
    history = [line for line in lines if any(m["role"] == "tool" for m in line["messages"])]
    assert any(line["messages"][-1]["role"] == "tool" for line in history)
    assert any(line["messages"][-1]["role"] == "user" for line in history)
    assert any(len(m.get("tool_calls") or ()) >= 2 for line in history
               for m in line["messages"])  # a parallel call in the history
    assert any(m["role"] == "_input" for line in lines for m in line["messages"])


def test_the_checked_in_file_is_what_the_generator_writes() -> None:
    generator = runpy.run_path(str(REPO / "scripts" / "make_tool_calls_sample.py"))
    expected = [json.dumps(c, ensure_ascii=False) for c in generator["cases"]()]
    assert sample_path().read_text(encoding="utf-8") == "\n".join(expected) + "\n"


def test_check_case_finds_what_is_wrong() -> None:
    good = sample_lines()[0]
    assert check_case(good) == []
    bad_schema = json.loads(json.dumps(good))
    bad_schema["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] = "text"
    assert any("invalid JSON schema" in p for p in check_case(bad_schema))
    unlabeled = {k: v for k, v in good.items() if k != LABEL_KEY}
    assert any(LABEL_KEY in p for p in check_case(unlabeled))
    forced = {**good, "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    assert any("not declared" in p for p in check_case(forced))
    orphan = {**good, "messages": [*good["messages"],
                                   {"role": "tool", "tool_call_id": "x", "content": "1"}]}
    assert any("answers no earlier tool call" in p for p in check_case(orphan))


# ------------------------------------------------------------------------ input and bodies


def test_prepare_body_follows_k2vv() -> None:
    raw = {"model": "old", "stream": True, "stream_options": {"include_usage": True},
           "messages": [{"role": "_input", "content": "sys"}, {"role": "user", "content": "hi"}],
           "temperature": 0.2, LABEL_KEY: "stop"}
    body = prepare_body(raw, model="m", max_tokens=64,
                        extra_body={"temperature": 0.6, "stream": True})
    assert body == {"model": "m", "stream": False, "temperature": 0.6, "max_tokens": 64,
                    "messages": [{"role": "system", "content": "sys"},
                                 {"role": "user", "content": "hi"}]}
    assert raw["messages"][0]["role"] == "_input"  # the line itself is left alone
    k2vv = hashlib.md5(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert request_hash(body) == k2vv


@pytest.mark.parametrize(("text", "message"), [
    ('{"messages": [{"role": "user", "content": "x"}]}\n{oops\n', "in.jsonl:2: not valid JSON"),
    ('\n["a list"]\n', "in.jsonl:2: each line must be a JSON object"),
    ('{"messages": []}\n', "in.jsonl:1: the request has no 'messages' list"),
    ('{"messages": [{"role": "user", "content": "x"}], "expected_finish_reason": "length"}\n',
     "in.jsonl:1: expected_finish_reason must be one of tool_calls, stop"),
    ("\n\n", "holds no request"),
])
def test_bad_input_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_cases(path)


def test_limit_and_line_numbers() -> None:
    cases = load_cases(limit=3)
    assert [c.data_index for c in cases] == [1, 2, 3]
    assert all(c.label in ("tool_calls", "stop") for c in cases)
