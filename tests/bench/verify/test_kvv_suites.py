"""``kimi-modes verify tools --suite``: Kimi-Vendor-Verifier's suites run as a subprocess
against the simulated engine (with Moonshot's sampling policy, and without: open), healthy
and scripted to misbehave (broken arguments, a wrong prompt-token count), and through a real
gateway in front of it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_modes.bench.verify.kvv.probe import validate_arguments
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


def test_a_k3_simulator_with_official_sampling_passes_every_suite(
        start_simulator: Callable[..., Any], tmp_path: Path) -> None:
    sim = start_simulator("--family", "k3", "--sampling", "official", "--ttft", "0",
                          "--tpot", "0")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "all",
                        "--model-family", "k3")
    assert run.returncode == 0, run.stdout + run.stderr
    params, k3 = checks(result, "params"), checks(result, "k3")
    assert params["temperature=1.1 refused [non-thinking]"]
    assert params["top_p=0.8 refused [thinking]"]
    assert params["temperature=0.0 accepted [thinking]"]
    for name in ("response_format json_object [stream]",
                 "response_format json_schema strict [nostream]",
                 "json_schema without name refused [stream]",
                 "global and dynamic tools coexist [nostream]",
                 "dynamic tool name of 257 characters refused [stream]",
                 "tool message without tool_call_id refused [nostream]",
                 "effort: reasoning_effort ignored when effort is set [stream]",
                 "effort: stream sends reasoning and content chunks [stream]"):
        assert k3[name], name
    assert result["suites"]["k3"]["total"] == 99
    assert result["suites"]["prompt-tokens"]["passed"] is None
    assert "no cases" in run.stdout

    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "k3")
    assert run.returncode == 0 and "not applicable" in run.stdout  # family k2.5


def test_an_open_simulator_fails_params(start_simulator: Callable[..., Any],
                                        tmp_path: Path) -> None:
    sim = start_simulator("--family", "k3", "--ttft", "0", "--tpot", "0")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "params",
                        "--model-family", "k3")
    assert run.returncode == 1
    params = checks(result, "params")
    assert not params["n=2 refused [thinking]"]  # it serves n, as vLLM does
    assert not params["temperature=1.1 refused [non-thinking]"]


def test_params_per_family(start_simulator: Callable[..., Any], tmp_path: Path) -> None:
    sim = start_simulator("--sampling", "official", "--ttft", "0", "--tpot", "0")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "params")
    assert run.returncode == 0, run.stdout
    params = checks(result, "params")  # KVV's verify_params.py table: K2.5 pins temperature
    assert params["temperature=0.5 refused [thinking]"]
    assert params["temperature=1.0 accepted [thinking]"]
    assert params["temperature=0.6 accepted [non-thinking]"]
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "params",
                        "--model-family", "k2-instruct")
    assert run.returncode == 0 and "not applicable" in run.stdout
    assert result["suites"]["params"]["passed"] is None


def test_through_a_k3_gateway(start_simulator: Callable[..., Any],
                              start_gateway: Callable[..., Any], tmp_path: Path) -> None:
    sim = start_simulator("--family", "k3", "--sampling", "official", "--ttft", "0",
                          "--tpot", "0")
    gw = start_gateway(f'[[upstreams]]\nname = "sim"\nkind = "openai_chat"\n'
                       f'url = "{sim.v1}"\nfamily = "k3"\ndialect = "vllm"\n')
    run, result = suite(tmp_path, "--base-url", gw.v1, "--model", "kimi-k3-thinking",
                        "--suite", "all", "--model-family", "k3")
    assert run.returncode == 0, run.stdout + run.stderr
    assert result["suites"]["params"]["passed_checks"] == 30
    assert result["suites"]["k3"]["passed_checks"] == 99


def test_image_prompt_token_cases(start_simulator: Callable[..., Any], tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "prompt_token_cases"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (64, 48), "red").save(folder / "images" / "vision_fixture.png")
    lines = []
    for case_id, (width, height) in {"wide": (1536, 1024), "tall": (300, 700)}.items():
        parts = [{"type": "text", "text": "What is this?"},
                 {"type": "image_url", "image_url": {
                     "url": f"fixture://vision_fixture.png?width={width}&height={height}"}}]
        request = {"messages": [{"role": "user", "content": parts}]}
        # the simulator's count: the text (the image as "[image]") plus one per 28×28 pixels
        patches = -(-width // 28) * -(-height // 28)
        lines.append({"id": case_id, "request": request,
                      "expected_prompt_tokens": chat_prompt_tokens(request) + patches})
    lines.append({**lines[0], "id": "off", "expected_prompt_tokens": 10})
    (folder / "vision_cases.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    run, result = suite(tmp_path, "--base-url", sim.v1, "--suite", "prompt-tokens",
                        "--data", str(tmp_path))
    assert run.returncode == 1
    assert checks(result, "prompt-tokens") == {"wide": True, "tall": True, "off": False}
