"""``kimi-modes serve --workers 2`` on the simulated engine, as a user starts it: both workers
answer on the one port, an Agent run started through either is listed by every list request
(one SQLite run store), each worker holds half of each gateway-wide cap, every worker's
/metrics counts the requests of both, and SIGINT to the parent stops every process it
started."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

RULES = [{"match": {"user": "(?i)say"}, "reply": {"content": "Said."}}]


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (Linux ``/proc``)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answering_pids(gw: Any, want: int, within: float = 60.0) -> set[int]:
    """The pids named by /health answers (each on a new connection) until ``want`` differ."""
    pids: set[int] = set()
    deadline = time.monotonic() + within
    while len(pids) < want and time.monotonic() < deadline:
        response = httpx.get(gw.url + "/health", timeout=10)
        assert response.status_code == 200, response.text
        pids.add(response.json()["pid"])
    return pids


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name`` with ``labels`` in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    raise AssertionError(f"no {name} {labels} in /metrics")


def test_two_workers_share_the_port_the_run_store_and_stop_together(
        tmp_path: Path, start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
        upstream_toml: Callable[..., str]) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    toml = upstream_toml(sim.v1, extra="max_concurrency = 9\n")
    gw = start_gateway(toml + "[swarm]\nmax_concurrent_subagents = 10\n", "--workers", "2")
    workers = _answering_pids(gw, 2)
    assert len(workers) == 2, f"only {workers} answered"
    assert workers <= _children(gw.process.pid)

    client = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0, timeout=60)
    for _ in range(4):
        answer = client.chat.completions.create(
            model="kimi-k2.5-instant", messages=[{"role": "user", "content": "Say it."}])
        assert answer.choices[0].message.content == "Said."
    run_ids = set()
    for _ in range(4):  # on new connections: several land on each worker
        answer = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0,
                               timeout=60).chat.completions.create(
            model="kimi-k2.5-agent", messages=[{"role": "user", "content": "Say it."}])
        assert answer.choices[0].message.content == "Said."
        run_ids.add("run_" + answer.id.removeprefix("chatcmpl-"))
    # A kept-alive connection stays with the worker that accepted it: /health on it names
    # that worker, and the list request on it is answered by the same one.
    listed_by: set[int] = set()
    deadline = time.monotonic() + 60
    while listed_by != workers and time.monotonic() < deadline:
        with httpx.Client(base_url=gw.url, timeout=10) as conn:
            pid = conn.get("/health").json()["pid"]
            listed = conn.get("/v1/runs", params={"limit": 100})
            assert listed.status_code == 200, listed.text
            assert run_ids <= {r["id"] for r in listed.json()["data"]}, f"worker {pid}"
            listed_by.add(pid)
    assert listed_by == workers

    # The caps are the gateway's: each of the two workers holds half (rounded down).
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while set(seen) != workers and time.monotonic() < deadline:
        health = httpx.get(gw.url + "/health", timeout=10).json()
        seen[health["pid"]] = health
    for health in seen.values():
        swarm = health["swarm"]
        assert swarm["subagents"]["max_concurrent"] == 5
        assert {m["max_concurrency"] for pool in swarm["pools"].values() for m in pool} == {4}

    # Whichever worker answers a scrape counts the requests every worker answered.
    scraped: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while set(scraped) != workers and time.monotonic() < deadline:
        with httpx.Client(base_url=gw.url, timeout=10) as conn:
            pid = conn.get("/health").json()["pid"]
            scraped[pid] = conn.get("/metrics").text
    for pid, text in scraped.items():
        assert _sample(text, "kimi_modes_requests_total", model="kimi-k2.5-instant",
                       status="200") == 4, f"worker {pid}"
        assert _sample(text, "kimi_modes_requests_total", model="kimi-k2.5-agent",
                       status="200") == 4, f"worker {pid}"

    started = _children(gw.process.pid)
    gw.process.send_signal(signal.SIGINT)
    assert gw.process.wait(30) == 0, gw.output()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if _alive(pid)], "orphan processes left"
    assert "2 workers" in gw.output()
