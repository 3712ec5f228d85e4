"""``kimi-modes bench agents``: the checkers (each kind, and user code that raises or hangs),
the task file's errors, the targets, and the command run as a subprocess against the real
gateway in front of the simulated engine (Agent and Swarm mode, the gateway's metrics in the
JSON, a failing task, a timed-out task cancelled on the gateway) and against the simulated
engine alone (a bare endpoint: no run metrics)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kimi_modes.bench.agents.check import (
    CheckerError,
    parse_checkers,
    run_checkers,
)
from kimi_modes.bench.agents.client import run_id_of
from kimi_modes.bench.agents.results import Target
from kimi_modes.bench.agents.run import AgentsConfig, BenchmarkError, targets_for
from kimi_modes.bench.agents.sim import write_sample_sim_script
from kimi_modes.bench.agents.tasks import TaskFileError, load_tasks, sample_tasks_path


async def judge(spec: Any, answer: str) -> tuple[bool, str]:
    result = await run_checkers(parse_checkers(spec), answer)
    return result.passed, result.reason


# --------------------------------------------------------------------------- checkers


async def test_contains_regex_and_equals() -> None:
    assert (await judge({"contains": ["south", "340"]}, "south: 340"))[0]
    passed, reason = await judge({"contains": ["south", "west"]}, "South: 340")
    assert not passed and reason == "missing 'south', 'west'"
    assert (await judge({"contains": "SOUTH", "ignore_case": True}, "south"))[0]
    assert (await judge({"regex": r"(?i)\btuesday\b"}, "It was a Tuesday."))[0]
    passed, reason = await judge({"regex": r"\btuesday\b"}, "Tuesdays")
    assert not passed and "no match" in reason
    assert (await judge({"equals": "e4f9c522e1c8"}, "  e4f9c522e1c8\n"))[0]
    passed, reason = await judge({"equals": "e4f9c522e1c8"}, "`e4f9c522e1c8`")
    assert not passed and "is not 'e4f9c522e1c8'" in reason
    assert (await judge({"equals": "ABC", "ignore_case": True}, "abc"))[0]


async def test_number_takes_the_last_number_within_the_tolerance() -> None:
    assert (await judge({"number": 5736396}, "Below 10,000 the sum is 5,736,396."))[0]
    assert (await judge({"number": -2.5}, "from 3 down to -2.5"))[0]
    assert (await judge({"number": 0.00002}, "about 2e-5"))[0]
    assert (await judge({"number": 3.1416, "tolerance": 0.001}, "pi is 3.14159"))[0]
    passed, reason = await judge({"number": 3.1416, "tolerance": 0.00001}, "pi is 3.14159")
    assert not passed and reason == "last number 3.14159 is not 3.1416 ± 1e-05"
    passed, reason = await judge({"number": 42}, "42 or maybe 41")
    assert not passed and reason == "last number 41 is not 42"
    assert (await judge({"number": 42}, "no digits here")) == (False, "no number in the answer")
    assert (await judge({"number": 2026}, "on 2025-12-24 ... 2026"))[0]


async def test_python_checker_runs_in_its_own_process() -> None:
    code = ("import os\n"
            "def check(answer):\n"
            "    print('noise on stdout is fine')\n"
            "    return answer.strip() == str(os.getpid() > 0)\n")
    assert (await judge({"python": code}, "True")) == (True, "")
    reasoned = "def check(answer):\n    return False, 'needs ' + answer[::-1]\n"
    assert await judge({"python": reasoned}, "abc") == (False, "needs cba")
    # The answer arrives whole (unicode, newlines) on stdin.
    exact = "def check(answer):\n    return answer == 'π\\n× 2'\n"
    assert (await judge({"python": exact}, "π\n× 2"))[0]


async def test_python_checker_that_raises_or_hangs_is_a_failed_check() -> None:
    raises = "def check(answer):\n    return 1 / 0\n"
    passed, reason = await judge({"python": raises}, "x")
    assert not passed and reason.startswith("python checker failed: ZeroDivisionError")
    hangs = "def check(answer):\n    while True:\n        pass\n"
    passed, reason = await judge({"python": hangs, "timeout": 1}, "x")
    assert not passed and reason == "python checker timed out after 1 s"
    nothing = "def verify(answer):\n    return True\n"
    passed, reason = await judge({"python": nothing}, "x")
    assert not passed and "defines no function check" in reason
    dies = "import os\ndef check(answer):\n    os._exit(3)\n"
    passed, reason = await judge({"python": dies}, "x")
    assert not passed and reason == "python checker failed: exit status 3"


async def test_a_list_of_checkers_must_all_pass() -> None:
    spec = [{"contains": ["gamma"]}, {"regex": r"\b3\b"}]
    assert (await judge(spec, "3 lines, last gamma"))[0]
    assert (await judge(spec, "two lines, last gamma")) == (False, r"no match for /\b3\b/")


@pytest.mark.parametrize(("spec", "message"), [
    ({"contains": []}, "non-empty string or list"),
    ({"regex": "("}, "bad regex"),
    ({"number": "42"}, "number takes a number"),
    ({"number": 1, "tolerance": -1}, "tolerance must be"),
    ({"python": "def check(:"}, "does not compile"),
    ({"python": "x", "timeout": 0}, "timeout must be"),
    ({"contains": ["a"], "regex": "a"}, "exactly one of"),
    ({"contain": ["a"]}, "exactly one of"),
    ({"regex": "a", "tolerance": 1}, "regex takes no tolerance"),
    ([], "an empty list"),
])
def test_bad_checker_specs(spec: Any, message: str) -> None:
    with pytest.raises(CheckerError, match=message):
        parse_checkers(spec)


# --------------------------------------------------------------------------- task file


def test_the_sample_task_file() -> None:
    tasks = load_tasks(sample_tasks_path())
    assert len(tasks) == 8
    assert len({t.id for t in tasks}) == 8
    kinds = {c.kind for t in tasks for c in t.checkers}
    assert kinds == {"contains", "regex", "equals", "number", "python"}
    assert any(t.modes == ("agent",) for t in tasks)
    assert any(t.messages[0]["role"] == "system" for t in tasks)
    assert [t.id for t in load_tasks(sample_tasks_path(), limit=2)] == [t.id for t in tasks[:2]]


@pytest.mark.parametrize(("lines", "message"), [
    (['{"id": "a", "prompt": "x"'], r":1: not valid JSON"),
    (['{"id": "a", "prompt": "x"}'], r":1: task 'a': check is missing"),
    (['{"id": "a", "prompt": "x", "check": {"equals": "y"}, "chek": 1}'], "unknown key chek"),
    (['{"id": "a", "prompt": "x", "check": {"regex": "("}}'], r":1: task 'a': check: bad regex"),
    (['{"id": "a", "prompt": "x", "messages": [], "check": {"equals": "y"}}'],
     "prompt or messages"),
    (['{"id": "a", "messages": [{"role": "user"}, {"role": "bot"}], '
      '"check": {"equals": "y"}}'], "each message is an object with a role"),
    (['{"id": "a", "prompt": "x", "check": {"equals": "y"}, "modes": ["instant"]}'],
     "modes must be a list of agent, swarm"),
    (['{"id": "a", "prompt": "x", "check": {"equals": "y"}}', "",
      '{"id": "a", "prompt": "z", "check": {"equals": "y"}}'], r":3: duplicate task id 'a'"),
    (["# only a comment"], "no tasks in the file"),
    (['[1, 2]'], r":1: each line must be a JSON object"),
])
def test_task_file_errors_name_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskFileError, match=message) as info:
        load_tasks(path)
    assert "\n" not in str(info.value)


def test_missing_task_file(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="cannot read"):
        load_tasks(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- options


def test_targets_from_modes_and_models() -> None:
    assert targets_for() == [Target("agent", "kimi-k2.5-agent"),
                             Target("swarm", "kimi-k2.5-swarm")]
    assert targets_for("swarm") == [Target("swarm", "kimi-k2.5-swarm")]
    assert targets_for(None, ["my-swarm", "agent=moonshotai/Kimi-K2.5", "x"]) == [
        Target("swarm", "my-swarm"), Target("agent", "moonshotai/Kimi-K2.5"),
        Target("agent", "x")]
    assert targets_for("agent", ["kimi-k2.5-agent"]) == [Target("agent", "kimi-k2.5-agent")]
    assert Target("agent", "x").label == "agent (x)"
    with pytest.raises(BenchmarkError, match="--modes takes"):
        targets_for("agent,instant")
    with pytest.raises(BenchmarkError, match="--model takes"):
        targets_for(None, ["thinking=kimi"])


def test_base_url_and_run_ids() -> None:
    assert AgentsConfig(base_url="http://h:8000").base_url == "http://h:8000/v1"
    assert AgentsConfig(base_url="http://h:8000/v1/").base_url == "http://h:8000/v1"
    with pytest.raises(BenchmarkError, match="--base-url must be an http"):
        AgentsConfig(base_url="h:8000")
    assert run_id_of("chatcmpl-4f0cab") == "run_4f0cab"
    assert run_id_of("msg_4f0c") is None and run_id_of(None) is None


# --------------------------------------------------------------------------- the command


def bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kimi_modes", "bench", "agents", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def gateway_toml(sim_v1: str) -> str:
    # Without bubblewrap (a developer machine) the python tool would refuse; the code it runs
    # here is the test script's own.
    unsandboxed = "allow_unsandboxed = true\n" if shutil.which("bwrap") is None else ""
    return (f'[[upstreams]]\nname = "sim"\nurl = "{sim_v1}"\nfamily = "k2.5"\n'
            f'dialect = "vllm"\nread_timeout = 60\n[agent]\nmax_time = 120\n{unsandboxed}')


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return path


def by_task(result: dict[str, Any], mode: str) -> dict[str, dict[str, Any]]:
    return {r["task"]: r for r in result["results"] if r["mode"] == mode}


@pytest.mark.slow
def test_sample_tasks_in_agent_and_swarm_mode(tmp_path: Path,
                                              start_simulator: Callable[..., Any],
                                              start_gateway: Callable[..., Any]) -> None:
    script = write_sample_sim_script(tmp_path / "script.json")
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    gw = start_gateway(gateway_toml(sim.v1))
    out = tmp_path / "result.json"
    done = bench("--base-url", gw.v1, "--concurrency", "3", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "total (8 tasks)" in done.stdout and "total (7 tasks)" in done.stdout
    result = json.loads(out.read_text())
    assert result["runs_api"] is True
    agent, swarm = by_task(result, "agent"), by_task(result, "swarm")
    assert len(agent) == 8 and len(swarm) == 7 and "notes-file" not in swarm  # modes: agent
    failed = {(r["task"], r["mode"]): r["check"] or r["error"]
              for r in result["results"] if not r["success"]}
    assert failed == {}
    # An agent: its steps are the critical path; it works alone.
    notes = agent["notes-file"]
    assert notes["metrics_source"] == "runs_api" and notes["status"] == "completed"
    assert notes["critical_steps"] == notes["total_steps"] == notes["steps"] == 4
    assert notes["tool_calls"] == 3 and notes["parallelism"] == 1.0
    assert notes["tokens"]["total_tokens"] == (notes["tokens"]["prompt_tokens"]
                                               + notes["tokens"]["completion_tokens"]) > 0
    assert notes["answer"] == 'notes/todo.txt has 3 lines; the last one is "gamma".'
    # A swarm of five sub-agents: the figures are the gateway's own.
    five = swarm["factorize-five"]
    record = httpx.get(f"{gw.v1}/runs/{five['run_id']}").json()
    assert five["run_id"] == "run_" + five["response_id"].removeprefix("chatcmpl-")
    metrics = record["metrics"]
    assert five["critical_steps"] == metrics["critical_steps"] == 1 + 2 + 1
    assert five["total_steps"] == metrics["total_steps"] == 2 + 5 * 2
    assert five["subagents"] == 5 and five["subagents_failed"] == 0
    assert five["tool_calls"] == 1 + 5
    assert five["parallelism"] == metrics["parallelism"] > 0
    assert five["tokens"]["total_tokens"] == (metrics["tokens"]["total"]["prompt_tokens"]
                                              + metrics["tokens"]["total"]["completion_tokens"])
    assert len(five["subagent_runs"]) == 5
    assert {s["status"] for s in five["subagent_runs"]} == {"completed"}
    assert "1001 = 7 × 11 × 13" in five["answer"]
    # A whole task handed to one sub-agent.
    assert swarm["sha256-prefix"]["answer"] == "e4f9c522e1c8"
    assert swarm["sha256-prefix"]["subagents"] == 1
    totals = {t["mode"]: t for t in result["totals"]}
    assert totals["agent"]["succeeded"] == 8 and totals["swarm"]["succeeded"] == 7
    assert totals["swarm"]["critical_steps"] < totals["swarm"]["total_steps"]


CHECK_RULES = [
    {"match": {"user": "(?i)slow"}, "ttft": 30, "reply": {"content": "too late"}},
    {"match": {"user": "^say (?P<x>.*)$"}, "reply": {"content": "${x}"}},
]
CHECK_TASKS = [
    {"id": "contains", "prompt": "say alpha and beta", "check": {"contains": ["alpha", "beta"]}},
    {"id": "regex", "prompt": "say It was a Tuesday.", "check": {"regex": r"(?i)\btuesday\b"}},
    {"id": "equals", "prompt": "say e4f9c522e1c8", "check": {"equals": "e4f9c522e1c8"}},
    {"id": "number", "prompt": "say pi is about 3.14159",
     "check": {"number": 3.1416, "tolerance": 0.001}},
    {"id": "python", "messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "say 6 x 7 = 42"}],
     "check": {"python": "def check(answer):\n    return answer.endswith('42')\n"}},
    {"id": "python-raises", "prompt": "say 1",
     "check": {"python": "def check(answer):\n    raise ValueError('bad checker')\n"}},
    {"id": "python-hangs", "prompt": "say 1",
     "check": {"python": "import time\ndef check(answer):\n    time.sleep(60)\n",
               "timeout": 1}},
    {"id": "wrong", "prompt": "say 41", "check": {"number": 42}},
    {"id": "slow", "prompt": "be slow", "check": {"contains": "late"}, "modes": ["agent"]},
]


@pytest.mark.slow
def test_checkers_a_failing_task_and_a_timeout_through_the_gateway(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": CHECK_RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    gw = start_gateway(gateway_toml(sim.v1))
    tasks = write_tasks(tmp_path / "tasks.jsonl", CHECK_TASKS)
    out = tmp_path / "result.json"
    done = bench(str(tasks), "--base-url", gw.v1, "--modes", "agent", "--concurrency", "4",
                 "--timeout", "3", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    runs = by_task(result, "agent")
    assert {t for t, r in runs.items() if r["success"]} == {
        "contains", "regex", "equals", "number", "python"}
    assert runs["python-raises"]["check"] == "python checker failed: ValueError: bad checker"
    assert runs["python-hangs"]["check"] == "python checker timed out after 1 s"
    assert runs["wrong"]["check"] == "last number 41 is not 42"
    assert runs["wrong"]["error"] is None
    slow = runs["slow"]
    assert slow["error"] == "timed out after 3 s" and not slow["success"]
    assert 3 <= slow["wall_time"] < 10
    # The timed-out run does not go on: the gateway cancelled it.
    assert slow["status"] == "cancelled"
    assert httpx.get(f"{gw.v1}/runs/{slow['run_id']}").json()["status"] == "cancelled"
    total = result["totals"][0]
    assert (total["runs"], total["succeeded"], total["errors"]) == (9, 5, 1)
    assert "FAIL" in done.stderr and "python checker timed out" in done.stderr
    assert "5/9" in done.stdout


@pytest.mark.slow
def test_a_bare_endpoint_is_reported_without_run_metrics(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": CHECK_RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    tasks = write_tasks(tmp_path / "tasks.jsonl", CHECK_TASKS[:5])
    out = tmp_path / "result.json"
    # The engine serves only its own model: asking for the gateway's is refused up front.
    refused = bench(str(tasks), "--base-url", sim.v1)
    assert refused.returncode == 1
    assert "does not serve kimi-k2.5-agent, kimi-k2.5-swarm" in refused.stderr
    done = bench(str(tasks), "--base-url", sim.url, "--model", "moonshotai/Kimi-K2.5",
                 "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["runs_api"] is False and result["base_url"] == sim.v1
    runs = result["results"]
    assert len(runs) == 5 and all(r["success"] for r in runs)
    for r in runs:
        assert r["metrics_source"] == "response" and r["run_id"] is None
        assert r["critical_steps"] is None and r["parallelism"] is None
        assert r["tokens"]["completion_tokens"] > 0 and r["wall_time"] > 0
    assert "no runs API" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--modes", "instant"], "--modes takes agent and/or swarm"),
    (["--extra-body", "{nope"], "--extra-body is not valid JSON"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--model", "x", "--timeout", "-1"], "--timeout must be positive"),
])
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    done = bench(*args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_bad_task_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": "a", "prompt": "x", "check": {"equals": "y"}}\n'
                    '{"id": "b", "prompt": "x", "check": {"python": "def check(:"}}\n')
    done = bench(str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}:2: task 'b': check: the python checker does "
                               "not compile")


def test_an_unreachable_endpoint_is_a_one_line_error(unused_port: int) -> None:
    done = bench("--base-url", f"http://127.0.0.1:{unused_port}/v1", "--limit", "1")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith(f"error: cannot reach http://127.0.0.1:{unused_port}")
    assert len(done.stderr.strip().splitlines()) == 1
