"""``kimi-modes verify tools --suite``: Kimi-Vendor-Verifier's suites run as a subprocess
against the simulated engine, healthy and scripted to misbehave (broken arguments, a wrong
prompt-token count), and what each check of the simulator's behaviour shows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_modes.bench.verify.suites import validate_arguments
from kimi_modes.simulator.conversation import chat_prompt_tokens

BROKEN = {"rules": [{"match": {"tool": "submit_arguments"},
                     "reply": {"tool_calls": [{"name": "submit_arguments",
                                               "arguments": '{"name": '}]}}]}


def suite(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "kvv.json"
    run = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "verify", "tools", "--summary", str(out), *args],
        capture_output=True, text=True, timeout=120)
    return run, (json.loads(out.read_text()) if out.exists() else {})


def checks(result: dict[str, Any], name: str) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in result["suites"][name]["checks"]}


def test_validate_arguments() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert validate_arguments(schema, '{"a": 1}') is None
    assert "not JSON" in str(validate_arguments(schema, '{"a": '))
    assert "required property" in str(validate_arguments(schema, "{}"))
    assert validate_arguments(schema, None) == "no tool call"


def test_schema_and_prompt_tokens_pass_then_fail(start_simulator: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    # Constants from the simulator's tokenizer (not Kimi's): the plumbing is what is tested.
    requests = [{"messages": [{"role": "user", "content": "Hello there, how are you?"}]},
                {"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Name three rivers."}]}]
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"id": f"c{i}", "request": r,
                                         "expected_prompt_tokens": chat_prompt_tokens(r)})
                             + "\n" for i, r in enumerate(requests)))
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "schema")
    assert run.returncode == 0, run.stdout + run.stderr
    assert result["suites"]["schema"]["passed_checks"] == 8  # 4 schemas × (stream, not)
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "prompt-tokens",
                        "--data", str(cases))
    assert run.returncode == 0, run.stdout + run.stderr
    assert checks(result, "prompt-tokens") == {"c0": True, "c1": True}

    cases.write_text(json.dumps({"id": "off", "request": requests[0],
                                 "expected_prompt_tokens": chat_prompt_tokens(requests[0]) - 4})
                     + "\n")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "prompt-tokens",
                        "--data", str(cases))
    assert run.returncode == 1 and "FAIL" in run.stdout
    assert checks(result, "prompt-tokens") == {"off": False}


def test_broken_arguments_fail_the_schema_suite(start_simulator: Callable[..., Any],
                                                tmp_path: Path) -> None:
    script = tmp_path / "broken.json"
    script.write_text(json.dumps(BROKEN))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "schema")
    assert run.returncode == 1
    s = result["suites"]["schema"]
    assert (s["passed_checks"], s["total"], s["passed"]) == (0, 8, False)
    assert "arguments are not JSON" in run.stdout


def test_params_and_k3_on_a_k3_simulator(start_simulator: Callable[..., Any],
                                         tmp_path: Path) -> None:
    sim = start_simulator("--family", "k3", "--ttft", "0", "--tpot", "0")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "all",
                        "--model-family", "k3")
    assert run.returncode == 1  # the simulator enforces neither sampling nor formats
    params = checks(result, "params")
    assert params["no params [thinking]"] and params["temperature=0.6 accepted [non-thinking]"]
    assert not params["n=2 refused [thinking]"]  # the simulator serves n, as vLLM does
    assert not params["temperature=1.1 refused [non-thinking]"]
    k3 = checks(result, "k3")
    assert k3["tool_choice=required forces a call"] and k3["tool_choice=none forbids a call"]
    assert not k3["required without tools refused"]
    assert not k3["response_format json_object"]
    assert result["suites"]["prompt-tokens"]["passed"] is None
    assert "no cases" in run.stdout

    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "k3")
    assert run.returncode == 0 and "not applicable" in run.stdout  # family k2.5
