"""``kimi-modes verify tools``: endpoints and retries, the judging and the figures on known
responses, and the command run as a subprocess against the simulated engine (healthy,
scripted to write broken tool calls, failing), the gateway in front of it, a reference
simulator, and an interrupted run resumed with ``--incremental``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kimi_modes.bench.verify.cases import (
    LABEL_KEY,
    load_cases,
    request_hash,
)
from kimi_modes.bench.verify.client import Endpoint, RetryPolicy
from kimi_modes.bench.verify.metrics import F1_THRESHOLDS, Confusion, judge
from kimi_modes.protocol.families import Family

SIM_MODEL = "moonshotai/Kimi-K2.5"


def sample_lines() -> list[dict[str, Any]]:
    """The bundled sample set's lines, as the verifier reads them."""
    return [case.raw for case in load_cases()]


def test_endpoint_urls_and_backoff() -> None:
    assert Endpoint("http://h:8000").chat_url == "http://h:8000/v1/chat/completions"
    assert Endpoint("https://openrouter.ai/api/v1/").chat_url == (
        "https://openrouter.ai/api/v1/chat/completions")
    policy = RetryPolicy(backoff=2.0)
    for retry, full in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)):
        assert full / 2 <= policy.wait(retry, None) <= full
    assert policy.wait(1, 7.0) == 7.0
    assert policy.wait(1, 900.0) == 60.0


# ----------------------------------------------------------------------------- judging


WEATHER_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"},
                                     "unit": {"enum": ["c", "f"]}},
    "required": ["city"]}}}]
REQUEST = {"messages": [{"role": "user", "content": "x"}], "tools": WEATHER_TOOLS}


def response(finish: str | None, *calls: tuple[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if calls:
        message["tool_calls"] = [{"id": f"functions.{n}:{i}", "type": "function",
                                  "function": {"name": n, "arguments": a}}
                                 for i, (n, a) in enumerate(calls)]
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}


def test_judge_validates_every_call() -> None:
    ok = judge(REQUEST, response("tool_calls", ("get_weather", '{"city": "Paris"}'),
                                 ("get_weather", {"city": "Rome", "unit": "c"})))
    assert (ok.finish_reason, ok.triggered, ok.valid, ok.errors) == (
        "tool_calls", True, True, ())
    bad = judge(REQUEST, response("tool_calls", ("get_weather", '{"city": "Paris"}'),
                                  ("get_weather", '{"city": '), ("get_wether", "{}"),
                                  ("get_weather", '{"unit": "k"}'), ("get_weather", "[1]")))
    assert bad.valid is False
    assert bad.kinds == ("invalid_json", "unknown_tool", "schema_violation", "not_an_object")
    assert bad.errors[0].startswith("call 1 (get_weather): arguments are not valid JSON")
    empty = judge(REQUEST, response("tool_calls"))
    assert (empty.triggered, empty.valid, empty.kinds) == (True, False, ("no_tool_calls",))
    undeclared = judge({"messages": []}, response("tool_calls", ("get_weather", "{}")))
    assert undeclared.valid is False


def test_what_counts_as_a_triggered_call() -> None:
    assert not judge(REQUEST, response("stop")).triggered
    assert not judge(REQUEST, response("length")).triggered
    assert not judge(REQUEST, None).triggered
    # calls that finish with "stop" count only when a named tool_choice forced them (vLLM)
    plain = response("stop", ("get_weather", '{"city": "Oslo"}'))
    assert not judge(REQUEST, plain).triggered
    forced = {**REQUEST, "tool_choice": {"type": "function",
                                         "function": {"name": "get_weather"}}}
    j = judge(forced, plain)
    assert (j.triggered, j.valid) == (True, True)


def test_confusion_figures() -> None:
    c = Confusion()
    for predicted, truth, n in ((True, True, 6), (True, False, 2), (False, True, 3),
                                (False, False, 9)):
        for _ in range(n):
            c.add(predicted, truth)
    assert (c.tp, c.fp, c.fn, c.tn, c.compared) == (6, 2, 3, 9, 20)
    assert c.precision == pytest.approx(6 / 8)
    assert c.recall == pytest.approx(6 / 9)
    assert c.f1 == pytest.approx(2 * (6 / 8) * (6 / 9) / (6 / 8 + 6 / 9))
    never = Confusion(tn=5)
    assert (never.precision, never.recall, never.f1) == (1.0, 1.0, 1.0)
    silent = Confusion(fn=4, tn=1)
    assert (silent.precision, silent.recall, silent.f1) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------- the command, for real


def verify(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kimi_modes", "verify", "tools", "--no-progress", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def outputs(tmp_path: Path, name: str = "run") -> list[str]:
    return ["--output", str(tmp_path / f"{name}.jsonl"),
            "--summary", str(tmp_path / f"{name}.json")]


def read_run(tmp_path: Path, name: str = "run") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = json.loads((tmp_path / f"{name}.json").read_text())
    records = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    return summary, records


def chat_requests(sim: Any) -> int:
    stats = httpx.get(sim.url + "/sim/stats").json()
    return int(stats["by_path"].get("/v1/chat/completions", 0))


K2VV_SUMMARY_KEYS = {
    "model", "success_count", "failure_count", "finish_stop", "finish_tool_calls",
    "finish_others", "finish_others_detail", "schema_validation_error_count",
    "successful_tool_call_count", "usage", "eval_started_at", "eval_finished_at",
    "eval_duration_ms", "count_finish_reason_tool_calls", "count_successful_tool_call",
    "schema_accuracy", "tool_call_precision", "tool_call_recall", "tool_call_f1",
}
K2VV_RECORD_KEYS = {"data_index", "request", "response", "status", "finish_reason",
                    "tool_calls_valid", "last_run_at", "duration_ms", "hash"}


def test_the_sample_set_passes_on_a_healthy_simulator(start_simulator: Callable[..., Any],
                                                      tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    run = verify("--base-url", sim.v1, *outputs(tmp_path), "--concurrency", "8")
    assert run.returncode == 0, run.stderr
    assert "Tool-Call Verification" in run.stdout and "PASS" in run.stdout
    summary, records = read_run(tmp_path)
    assert set(summary) >= K2VV_SUMMARY_KEYS
    n = len(sample_lines())
    labels = [line[LABEL_KEY] for line in sample_lines()]
    assert summary["model"] == SIM_MODEL  # the first of /v1/models
    assert (summary["total"], summary["success_count"], summary["failure_count"]) == (n, n, 0)
    assert summary["tool_call_f1"] == summary["schema_accuracy"] == 1.0
    assert summary["tp"] == labels.count("tool_calls")
    assert summary["tn"] == labels.count("stop")
    assert summary["reference"] == {"kind": "labels"}
    assert summary["thresholds"] == {"tool_call_f1": 0.73, "schema_accuracy": None,
                                     "model_family": "k2.5"}
    assert summary["usage"]["total_tokens"] > 0
    assert [r["data_index"] for r in records] == list(range(1, n + 1))
    assert all(set(r) >= K2VV_RECORD_KEYS for r in records)
    assert all(r["request"]["model"] == SIM_MODEL and r["request"]["stream"] is False
               and LABEL_KEY not in r["request"] for r in records)
    assert all(r["hash"] == request_hash(r["request"]) for r in records)
    # the simulator saw every request once, without our label
    assert chat_requests(sim) == n


BROKEN_SCRIPT = {"rules": [
    {"match": {"user": "get_weather"},
     "reply": {"tool_calls": [{"name": "get_weather", "arguments": '{"city": '}]}},
    {"match": {"user": "search_flights"},
     "reply": {"tool_calls": [{"name": "search_flights",
                               "arguments": {"origin": "sfo", "destination": "JFK",
                                             "date": "2025-12-01"}}]}},
    {"match": {"user": "send_email"},
     "reply": {"tool_calls": [{"name": "send_email", "arguments": {"subject": "x"}}]}},
    {"match": {"user": "get_time"},
     "reply": {"tool_calls": [{"name": "get_clock", "arguments": {"timezone": "UTC"}}]}},
    {"match": {"user": "list_files"},
     "reply": {"tool_calls": [{"name": "list_files", "arguments": "[1, 2]"}]}},
    {"match": {"user": "run_python"},  # a section the model never closes
     "reply": {"raw": "<|tool_calls_section_begin|><|tool_call_begin|>functions.run_python:0"
                      '<|tool_call_argument_begin|>{"code": "print(1)"}'}},
]}


def small_set(tmp_path: Path, names: list[str], *, labels: bool = True) -> Path:
    """One request per tool name (the user asks for it), plus one plain question; the tools
    are taken from the sample set."""
    tools = {t["function"]["name"]: t for line in sample_lines() for t in line.get("tools") or ()}
    lines = []
    for name in names:
        line: dict[str, Any] = {"messages": [{"role": "user", "content": f"Please use {name}."}],
                                "tools": [tools[name], tools["translate_text"]]}
        if labels:
            line[LABEL_KEY] = "tool_calls"
        lines.append(line)
    plain: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello there"}],
                             "tools": [tools["get_weather"]]}
    if labels:
        plain[LABEL_KEY] = "stop"
    lines.append(plain)
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_broken_tool_calls_lower_schema_accuracy(start_simulator: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    script = tmp_path / "broken.json"
    script.write_text(json.dumps(BROKEN_SCRIPT))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    names = ["get_weather", "search_flights", "send_email", "get_time", "list_files",
             "run_python", "translate_text"]
    path = small_set(tmp_path, names)
    run = verify(str(path), "--base-url", sim.v1, *outputs(tmp_path))
    assert run.returncode == 0, run.stderr  # K2VV gates on F1 only
    summary, records = read_run(tmp_path)
    assert summary["tool_call_f1"] == 1.0
    assert (summary["count_finish_reason_tool_calls"], summary["count_successful_tool_call"],
            summary["schema_validation_error_count"]) == (7, 1, 6)
    assert summary["schema_accuracy"] == pytest.approx(1 / 7)
    assert summary["schema_error_kinds"] == {"invalid_json": 1, "schema_violation": 2,
                                             "unknown_tool": 1, "not_an_object": 1,
                                             "no_tool_calls": 1}
    by_name = {names[r["data_index"] - 1]: r for r in records[:-1]}
    assert by_name["translate_text"]["tool_calls_valid"] is True
    assert "does not match '^[A-Z]{3}$'" in by_name["search_flights"]["tool_call_errors"][0]
    assert "'to' is a required property" in by_name["send_email"]["tool_call_errors"][0]
    assert "unknown tool 'get_clock'" in by_name["get_time"]["tool_call_errors"][0]

    gated = verify(str(path), "--base-url", sim.v1, *outputs(tmp_path, "gated"),
                   "--schema-threshold", "0.95")
    assert gated.returncode == 1
    assert "schema_accuracy 14.29% < 95.00%" in gated.stdout and "FAIL" in gated.stdout


def test_the_sample_set_passes_on_a_k3_simulator(start_simulator: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    sim = start_simulator("--family", "k3", "--ttft", "0", "--tpot", "0")
    run = verify("--base-url", sim.v1, "--model-family", "k3", *outputs(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    summary, _ = read_run(tmp_path)
    assert summary["tool_call_f1"] == summary["schema_accuracy"] == 1.0
    assert summary["thresholds"] == {"tool_call_f1": 0.73, "schema_accuracy": None,
                                     "model_family": "k3"}


def test_the_sample_set_through_the_gateway(start_simulator: Callable[..., Any],
                                            start_gateway: Callable[..., Any],
                                            upstream_toml: Callable[..., str],
                                            tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gateway = start_gateway(upstream_toml(sim.v1))
    run = verify("--base-url", gateway.url, "--model", "kimi-k2.5-instant",
                 "--model-family", "k2-instruct", *outputs(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    summary, _ = read_run(tmp_path)
    assert summary["model"] == "kimi-k2.5-instant"
    assert summary["base_url"] == gateway.url + "/v1"
    assert summary["tool_call_f1"] == summary["schema_accuracy"] == 1.0
    assert summary["thresholds"]["tool_call_f1"] == 0.80
    # the gateway reports forced calls as tool_calls, where the engine said stop
    assert summary["finish_tool_calls"] == summary["count_finish_reason_tool_calls"]
    upstream = httpx.get(sim.url + "/sim/stats").json()["last_requests"]
    assert all(r["body"]["chat_template_kwargs"]["thinking"] is False for r in upstream
               if r["path"] == "/v1/chat/completions")


def test_reference_endpoint_and_reference_results(start_simulator: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    reference = start_simulator("--ttft", "0", "--tpot", "0")
    script = tmp_path / "drift.json"
    script.write_text(json.dumps({"rules": [
        {"match": {"user": "get_weather|send_email"}, "reply": {"content": "I will not."}},
        {"match": {"user": "Hello"},
         "reply": {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Nice"}}]}},
    ]}))
    target = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script),
                             "--model", "vendor/kimi")
    names = ["get_weather", "search_flights", "send_email", "get_time", "translate_text"]
    path = small_set(tmp_path, names, labels=False)  # no labels: the reference is the truth
    run = verify(str(path), "--base-url", target.v1, "--reference-url", reference.v1,
                 "--threshold", "0.7", *outputs(tmp_path))
    summary, records = read_run(tmp_path)
    # reference: 5 calls, 1 stop; target: misses get_weather and send_email, calls on Hello
    assert (summary["tp"], summary["fp"], summary["fn"], summary["tn"]) == (3, 1, 2, 0)
    assert summary["tool_call_precision"] == pytest.approx(3 / 4)
    assert summary["tool_call_recall"] == pytest.approx(3 / 5)
    assert summary["tool_call_f1"] == pytest.approx(2 / 3)
    assert summary["reference"] == {"kind": "endpoint", "model": SIM_MODEL,
                                    "base_url": reference.v1}
    assert summary["model"] == "vendor/kimi"
    assert run.returncode == 1 and "tool_call_f1 66.67% < 70.00%" in run.stdout
    assert all(r["reference"]["status"] == "success" for r in records)
    assert chat_requests(reference) == chat_requests(target) == len(names) + 1

    # the reference run's own results file serves as the truth for another run
    ref_run = verify(str(path), "--base-url", reference.v1, "--reference-url", reference.v1,
                     *outputs(tmp_path, "ref"))
    assert ref_run.returncode == 0, ref_run.stdout
    again = verify(str(path), "--base-url", target.v1, "--reference-results",
                   str(tmp_path / "ref.jsonl"), *outputs(tmp_path, "again"))
    assert again.returncode == 1
    summary2, _ = read_run(tmp_path, "again")
    assert (summary2["tp"], summary2["fp"], summary2["fn"], summary2["tn"]) == (3, 1, 2, 0)
    assert summary2["reference"]["kind"] == "results"


def test_retries_then_incremental_rerun_of_the_failed(start_simulator: Callable[..., Any],
                                                      tmp_path: Path) -> None:
    script = tmp_path / "flaky.json"
    script.write_text(json.dumps({"rules": [
        {"match": {"user": "get_time"}, "fault": "503", "times": 1},
        {"match": {"user": "send_email"}, "fault": "500", "times": 2},
    ]}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    path = small_set(tmp_path, ["get_weather", "get_time", "send_email"])
    # one retry: get_time recovers, send_email fails twice
    run = verify(str(path), "--base-url", sim.v1, "--max-retries", "1", "--backoff", "0.01",
                 *outputs(tmp_path))
    assert run.returncode == 1
    assert "1 request(s) failed (re-run with --incremental" in run.stdout
    summary, records = read_run(tmp_path)
    assert (summary["success_count"], summary["failure_count"]) == (3, 1)
    attempts = {r["data_index"]: (r["status"], r["attempts"], r["http_status"]) for r in records}
    assert attempts == {1: ("success", 1, 200), 2: ("success", 2, 200),
                        3: ("failed", 2, 500), 4: ("success", 1, 200)}
    assert "HTTP 500" in records[2]["error"]
    sent = chat_requests(sim)
    assert sent == 6

    rerun = verify(str(path), "--base-url", sim.v1, "--incremental", *outputs(tmp_path))
    assert rerun.returncode == 0, rerun.stdout
    assert chat_requests(sim) == sent + 1  # only the failed one went again
    summary, records = read_run(tmp_path)
    assert (summary["success_count"], summary["failure_count"]) == (4, 0)
    assert len(records) == 4 and summary["tool_call_f1"] == 1.0


def test_incremental_resumes_a_killed_run(start_simulator: Callable[..., Any],
                                          tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0.2", "--tpot", "0")
    out = tmp_path / "run.jsonl"
    args = [sys.executable, "-m", "kimi_modes", "verify", "tools", "--no-progress",
            "--base-url", sim.v1, "--concurrency", "1", *outputs(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
            not out.exists() or len(out.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # as if the kill had come in the middle of a write
    with out.open("a") as f:
        f.write('{"data_index": 99, "hash": "')
    kept = [json.loads(line) for line in out.read_text().splitlines()[:-1]]
    assert 5 <= len(kept) < len(sample_lines())
    sent = chat_requests(sim)

    run = verify("--base-url", sim.v1, "--incremental", *outputs(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    total = len(sample_lines())
    assert chat_requests(sim) - sent == total - len(kept)
    summary, records = read_run(tmp_path)
    assert [r["data_index"] for r in records] == list(range(1, total + 1))
    assert summary["success_count"] == total and summary["tool_call_f1"] == 1.0
    by_index = {r["data_index"]: r for r in records}
    assert all(by_index[k["data_index"]]["last_run_at"] == k["last_run_at"] for k in kept)

    # done: a third run sends nothing
    before = chat_requests(sim)
    assert verify("--base-url", sim.v1, "--incremental", *outputs(tmp_path)).returncode == 0
    assert chat_requests(sim) == before


def test_identical_lines_keep_their_own_records(start_simulator: Callable[..., Any],
                                                tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    line = json.dumps(sample_lines()[0])
    path = tmp_path / "twice.jsonl"
    path.write_text(f"{line}\n\n{line}\n")
    for _ in range(2):
        assert verify(str(path), "--base-url", sim.v1, "--incremental",
                      *outputs(tmp_path)).returncode == 0
    summary, records = read_run(tmp_path)
    assert [r["data_index"] for r in records] == [1, 3]  # blank lines count, as in K2VV
    assert records[0]["hash"] == records[1]["hash"]
    assert summary["total"] == summary["tp"] == 2
    assert chat_requests(sim) == 2  # the second run kept both


@pytest.mark.parametrize(("args", "message"), [
    (["--extra-body", "{nope"], "--extra-body is not valid JSON"),
    (["--model-family", "k4"],
     "--model-family must be one of k2-instruct, k2-thinking, k2.5, k2.6, k2.7-code, k3"),
    (["--threshold", "80"], "--threshold must be between 0 and 1"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--reference-url", "http://x/v1", "--reference-results", "r.jsonl"], "not both"),
    (["--reference-results", "/nonexistent/r.jsonl"], "cannot read '/nonexistent/r.jsonl'"),
    (["/nonexistent/in.jsonl"], "cannot read '/nonexistent/in.jsonl'"),
    (["--base-url", "localhost:8000"], "--base-url must be an http(s) URL"),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str,
                                              tmp_path: Path) -> None:
    run = verify(*args, "--model", "m", *outputs(tmp_path))
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ") and message in run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_unlabeled_input_without_a_reference_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    run = verify(str(path), "--model", "m", *outputs(tmp_path))
    assert run.returncode == 2
    assert "nothing to compare with" in run.stderr


def test_an_unreachable_endpoint_fails_in_one_line(unused_port: int, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{unused_port}/v1"
    no_model = verify("--base-url", base, *outputs(tmp_path))
    assert no_model.returncode == 1
    assert no_model.stderr.startswith(f"error: cannot reach {base}/models: ")
    run = verify("--base-url", base, "--model", "m", "--limit", "3", "--max-retries", "1",
                 "--backoff", "0", *outputs(tmp_path))
    assert run.returncode == 1
    assert "error: all 3 requests failed: ClientConnectorError" in run.stderr
    assert "Traceback" not in run.stderr


def test_every_family_has_moonshots_f1_bar() -> None:
    assert set(F1_THRESHOLDS) == set(Family)
    assert F1_THRESHOLDS[Family.K2_INSTRUCT] == 0.80
    assert {F1_THRESHOLDS[f] for f in Family if f is not Family.K2_INSTRUCT} == {0.73}
