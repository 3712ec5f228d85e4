"""Two gateway processes on one PostgreSQL run store (``[store] url``), both on the simulated
engine: a run started on one is listed, watched live (SSE, re-attachable with
Last-Event-ID) and cancelled from the other; when one is killed (SIGKILL) mid-swarm, the other
marks its runs interrupted within the lease, keeps what it had finished, and resumes an
interrupted sub-agent itself."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from helpers.postgres import PostgresCluster

pytestmark = pytest.mark.slow

LEASE = 2.0
ORCH = {"tool": "spawn_subagents"}
SUB = {"system": "sub-agent of an agent swarm"}
RULES = [
    {"match": {"user": "(?i)take your time", "step": 0},
     "reply": {"content": "Finally."}, "ttft": 60},
    {"match": {**ORCH, "after_tool": True, "tool_result": r"(?P<k>\d+) completed"},
     "reply": {"content": "Synthesis of ${k} results."}},
    {"match": {**ORCH, "after_tool": False},
     "reply": {"tool_calls": [{"name": "spawn_subagents",
                               "arguments": {"tasks": ["Topic 1", "Topic 2"]}}]}},
    # The first two sub-agents hang (the gateway running them is killed); later ones answer.
    {"match": {**SUB, "user": r"Topic (?P<n>\d+)"}, "times": 2, "ttft": 60,
     "reply": {"content": "never"}},
    {"match": {**SUB, "user": r"Topic (?P<n>\d+)"}, "reply": {"content": "Result ${n}."}},
    {"match": {"user": "(?i)say"}, "reply": {"content": "Said."}},
]


@pytest.fixture
def replicas(tmp_path: Path, postgres: PostgresCluster, start_simulator: Callable[..., Any],
             start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    config = (upstream_toml(sim.v1) + "[agent]\nmax_time = 120\n"
              f'[store]\nurl = "{postgres.new_database()}"\nlease_seconds = {LEASE}\n'
              # One process per replica (PostgreSQL's default would be one per core): the
              # SIGKILL below is then a replica crashing, not a supervisor stopping workers.
              "[server]\nworkers = 1\n")
    return start_gateway(config), start_gateway(config)


def _ask_in_background(gw: Any, model: str, text: str) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["answer"] = openai.OpenAI(
                base_url=gw.v1, api_key="none", max_retries=0, timeout=120,
            ).chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        except Exception as exc:
            outcome["error"] = exc

    threading.Thread(target=ask, daemon=True).start()
    return outcome


def _runs(gw: Any, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(gw.v1 + "/runs", params={"limit": 100, **params}, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


class _Watch:
    """An SSE watcher of a run on a gateway, in a thread: ``seen`` is (seq, type) in order."""

    def __init__(self, gw: Any, run_id: str, last_event_id: int | None = None) -> None:
        self.seen: list[tuple[int, str]] = []
        self.done = threading.Event()
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self._thread = threading.Thread(target=self._read, args=(gw, run_id, headers),
                                        daemon=True)
        self._thread.start()

    def _read(self, gw: Any, run_id: str, headers: dict[str, str]) -> None:
        seq = 0
        with httpx.stream("GET", f"{gw.v1}/runs/{run_id}/events", headers=headers,
                          timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("id:"):
                    seq = int(line[3:].strip())
                elif line.startswith("event:"):
                    self.seen.append((seq, line[6:].strip()))
        self.done.set()


def test_a_run_is_listed_watched_and_cancelled_from_the_other_gateway(replicas: Any) -> None:
    one, other = replicas
    outcome = _ask_in_background(one, "kimi-k2.5-agent", "Take your time")
    (run,) = _until(lambda: _runs(other, status="running"))
    assert run["mode"] == "agent"
    assert [r["id"] for r in _runs(one)] == [run["id"]]
    watch = _Watch(other, run["id"])
    _until(lambda: ("step" in [t for _, t in watch.seen]))  # live, while the run goes on
    assert watch.seen[0] == (1, "run_started") and not watch.done.is_set()
    record = httpx.get(f"{other.v1}/runs/{run['id']}", timeout=30).json()
    assert record["status"] == "running" and record["live"] is False  # it runs on `one`

    cancelled = httpx.delete(f"{other.v1}/runs/{run['id']}", timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert watch.done.wait(30)
    assert watch.seen[-1][1] == "finished"
    assert [s for s, _ in watch.seen] == list(range(1, len(watch.seen) + 1))
    _until(lambda: outcome)
    assert "answer" not in outcome  # the client on `one` learns the run ended unanswered
    # Re-attaching on the other gateway after seq 1 (Last-Event-ID) replays exactly the rest.
    again = _Watch(other, run["id"], last_event_id=1)
    assert again.done.wait(30)
    assert again.seen == watch.seen[1:]


def test_a_killed_gateway_s_runs_are_interrupted_by_the_other(replicas: Any) -> None:
    one, other = replicas
    quick = openai.OpenAI(base_url=one.v1, api_key="none", max_retries=0, timeout=60)
    said = quick.chat.completions.create(model="kimi-k2.5-agent",
                                         messages=[{"role": "user", "content": "Say it"}])
    assert said.choices[0].message.content == "Said."
    _ask_in_background(one, "kimi-k2.5-swarm", "Two topics.")

    def swarm_with_running_children() -> list[dict[str, Any]]:
        swarms = _runs(other, mode="swarm")
        if swarms and len(_runs(other, parent_id=swarms[0]["id"], status="running")) == 2:
            return swarms
        return []

    (swarm,) = _until(swarm_with_running_children)
    one.process.send_signal(signal.SIGKILL)
    one.process.wait(10)
    killed = time.monotonic()

    _until(lambda: _runs(other, status="running") == [] and _runs(other, status="queued") == [])
    # Within the lease and a beat of the survivor, with room for a loaded machine.
    assert time.monotonic() - killed < LEASE + 10
    record = httpx.get(f"{other.v1}/runs/{swarm['id']}", timeout=30).json()
    assert record["status"] == "interrupted"
    children = _runs(other, parent_id=swarm["id"])
    assert len(children) == 2 and {c["status"] for c in children} == {"interrupted"}
    # What was finished before the kill is all there.
    (done,) = _runs(other, status="completed")
    assert done["mode"] == "agent" and done["task"] == "Say it"
    assert httpx.get(f"{other.v1}/runs/{done['id']}", timeout=30).json()["final_answer"] \
        == "Said."

    # The survivor resumes an interrupted sub-agent of the dead gateway's swarm.
    child = children[0]
    resumed = httpx.post(f"{other.v1}/runs/{child['id']}/resume", timeout=30)
    assert resumed.status_code == 202, resumed.text
    new_id = resumed.json()["id"]

    def finished() -> dict[str, Any] | None:
        new = httpx.get(f"{other.v1}/runs/{new_id}", timeout=30).json()
        return new if new["status"] not in ("queued", "running") else None

    new = _until(finished)
    assert new["status"] == "completed" and new["final_answer"].startswith("Result")
    assert new["parent_id"] == swarm["id"]
