"""Swarm makespan: a task fanned out to N sub-agents of about T seconds each, on the simulated
engine, against the ideal and against the same sub-agents run one after another.

    python benchmarks/swarm_makespan.py            # N=100, T=1.0 s
    python benchmarks/swarm_makespan.py --n 100 --t 2 --capacity 8 --skip-sequential

It starts the simulated engine (its own process) with a script: the orchestrator's first step
fans out N tasks, each sub-agent answers after T seconds (its time to first token), the
orchestrator's steps take O seconds each. The swarm is built from settings exactly as the
gateway builds it (engine pool, global cap, run store). Printed, in one run:

- unlimited engine capacity: makespan vs the ideal (2·O + T: fan-out step, the slowest
  sub-agent, synthesis) — target ≥ 90 % of ideal;
- engine capacity C (``--max-num-seqs C`` on the engine): makespan vs 2·O + ceil(N/C)·T;
- sequential: the same N sub-agents, one at a time (global cap 1), vs N·T;
- the per-sub-agent scheduling overhead: its measured duration minus T, and the delay from the
  fan-out to its start when nothing limits it;
- per swarm, the prefix its sub-agents' prompts share (the tool declarations and the system
  prompt, which an engine's prefix cache computes once): its length in characters and in the
  simulator's token count, against a whole prompt, over the sub-agent prompts the simulated
  engine still holds (its last 64 requests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from os.path import commonprefix
from pathlib import Path
from typing import Any

from kimi_modes.assembly import assemble
from kimi_modes.config import load_settings
from kimi_modes.engines.base import ChatRequest
from kimi_modes.protocol import render_prompt
from kimi_modes.simulator.tokenize import count_tokens

SUBAGENT = "sub-agent of an agent swarm"


def start_simulator(script: Path, capacity: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "kimi_modes.simulator", "--port", "0", "--ttft", "0",
         "--tpot", "0", "--max-num-seqs", str(capacity), "--script", str(script),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the simulated engine did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1].strip()


async def one_swarm(url: str, tmp: Path, *, cap: int, label: str,
                    warmups: int = 0) -> dict[str, Any]:
    settings = load_settings(None, upstreams=[{"name": "sim", "url": url + "/v1"}],
                             agent={"runs_db": str(tmp / f"{label}.sqlite3"),
                                    "workspaces": str(tmp / "ws"), "max_time": 3600},
                             swarm={"max_concurrent_subagents": cap,
                                    "metrics_interval": 0.5})
    async with await assemble(settings) as app:
        swarm, store = app.swarm, app.store
        assert swarm is not None and store is not None
        for _ in range(1 + warmups):  # a gateway that has been up has warm connections
            started = time.monotonic()
            request = ChatRequest(
                messages=[{"role": "user", "content": "Research all topics."}], thinking=True)
            async for _ in swarm.stream(request):
                pass
            makespan = time.monotonic() - started
        run = (await store.list_runs(mode="swarm"))[0]
        events = await store.events(run.id)
        fanout_at = next(e.time for e in events if e.type == "fanout")
        finished = [e.data for e in events if e.type == "subagent_finished"]
        return {"makespan": makespan, "metrics": run.metrics, "fanout_at": fanout_at,
                "finished": finished}


def script_rules(n: int, t: float, o: float) -> dict[str, Any]:
    tasks = [f"Topic {i}" for i in range(n)]
    return {"rules": [
        {"match": {"tool": "spawn_subagents", "after_tool": True},
         "reply": {"content": "Merged."}, "ttft": o},
        {"match": {"tool": "spawn_subagents", "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": tasks}}]},
         "ttft": o},
        {"match": {"system": "sub-agent of an agent swarm"},
         "reply": {"content": "Result."}, "ttft": t},
    ]}


def subagent_prompts(url: str) -> list[str]:
    """The Kimi prompts of the sub-agents' first steps among the requests the simulated
    engine still holds, rendered as the engine renders them (tools first, then the chat)."""
    with urllib.request.urlopen(url + "/sim/stats") as response:
        held = json.load(response)["last_requests"]
    prompts = []
    for request in held:
        body = request["body"]
        messages = body.get("messages") if isinstance(body, dict) else None
        if (messages and SUBAGENT in str(messages[0].get("content"))
                and messages[-1]["role"] == "user"):
            prompts.append(render_prompt({"messages": messages, "tools": body.get("tools")},
                                         "k2.5", thinking=False))
    return prompts


def report_prefix(label: str, url: str) -> None:
    prompts = subagent_prompts(url)
    if len(prompts) < 2:
        print(f"{label:<34} shared prefix: fewer than two sub-agent prompts held")
        return
    shared = commonprefix(prompts)  # noqa: RUF071 (character-wise is meant)
    whole = min(prompts, key=len)
    print(f"{label:<34} shared prefix of {len(prompts)} sub-agent prompts: {len(shared)} of "
          f"{len(whole)} chars ({len(shared) / len(whole):.1%}), ~{count_tokens(shared)} of "
          f"~{count_tokens(whole)} tokens")


def report(label: str, result: dict[str, Any], ideal: float) -> None:
    m = result["metrics"]
    print(f"{label:<34} makespan {result['makespan']:7.2f} s   ideal {ideal:7.2f} s   "
          f"ideal/makespan {ideal / result['makespan']:6.3f}   parallelism "
          f"{m['parallelism']:6.2f}   critical steps {m['critical_steps']}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="sub-agents")
    parser.add_argument("--t", type=float, default=1.0, help="seconds per sub-agent")
    parser.add_argument("--o", type=float, default=0.2, help="seconds per orchestrator step")
    parser.add_argument("--capacity", type=int, default=8, help="engine capacity to test")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--warmups", type=int, default=1,
                        help="swarm runs before the measured one (warm connections)")
    args = parser.parse_args()
    n, t, o = args.n, args.t, args.o
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "script.json"
        script.write_text(json.dumps(script_rules(n, t, o)))
        print(f"N={n} sub-agents of T={t:g} s, orchestrator steps O={o:g} s; simulated engine")

        process, url = start_simulator(script, capacity=1024)
        try:
            free = await one_swarm(url, tmp, cap=n, label="unlimited", warmups=args.warmups)
            report("unlimited capacity", free, 2 * o + t)
            report_prefix("", url)
            overhead = [f["duration"] - t for f in free["finished"]]
            start_delay = [f["started_at"] - free["fanout_at"] for f in free["finished"]]
            print(f"{'':<34} per sub-agent: duration − T mean {statistics.mean(overhead)*1e3:6.1f}"
                  f" ms (max {max(overhead)*1e3:6.1f}); fan-out → start mean "
                  f"{statistics.mean(start_delay)*1e3:6.1f} ms (max {max(start_delay)*1e3:6.1f})")
            if not args.skip_sequential:
                seq = await one_swarm(url, tmp, cap=1, label="sequential")
                report("sequential (one at a time)", seq, 2 * o + n * t)
                print(f"{'':<34} swarm speed-up over sequential: "
                      f"{seq['makespan'] / free['makespan']:.1f}×")
        finally:
            process.terminate()
            process.wait(10)

        process, url = start_simulator(script, capacity=args.capacity)
        try:
            limited = await one_swarm(url, tmp, cap=n, label="limited", warmups=args.warmups)
            ideal = 2 * o + math.ceil(n / args.capacity) * t
            report(f"engine capacity {args.capacity}", limited, ideal)
            report_prefix("", url)
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
