"""Agent and Swarm mode overhead: the sample agent tasks through the gateway on the simulated
engine, and what the gateway adds per step beyond the engine's set latency and the tools.

    python benchmarks/bench_agents_overhead.py                 # T = 50 ms a model call
    python benchmarks/bench_agents_overhead.py --ttft 0.2 --repeat 5 --concurrency 4

It starts the simulated engine (its own process, ``--ttft T --tpot 0``: every model call
takes exactly T, all tokens at once) with the script of :mod:`kimi_modes.bench.agents.sim`,
and a gateway (its own process, ``python -m kimi_modes serve``) with its runs database and
workspaces in a temporary directory; after one warm-up task per mode, runs ``kimi-modes
bench agents``'s library on the sample tasks (bench/data/agent_tasks.jsonl) in Agent and
Swarm mode; prints the table; then splits each run's client wall time along its critical
path:

- engine: T per model call on the critical path (an agent's steps; a swarm's orchestrator
  steps plus, per fan-out, the steps of its slowest sub-agent);
- tools: the tool time on that path (per step, the longest of its calls, which run at once;
  a fan-out's time is the slowest sub-agent's engine and tool time);
- overhead: the rest — HTTP, the run store, the agent loop, prompt handling, sub-agent
  scheduling — reported per critical step.

Without bubblewrap the gateway runs the python tool unsandboxed (the code is the script's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kimi_modes.bench.agents.report import print_table
from kimi_modes.bench.agents.results import TaskRun
from kimi_modes.bench.agents.run import AgentsConfig, run_agents, targets_for
from kimi_modes.bench.agents.sim import write_sample_sim_script
from kimi_modes.bench.agents.tasks import load_tasks, sample_tasks_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not become healthy")


def start(args: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "kimi_modes", *args, "--port", str(port)],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, args[0])
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def fanouts(base: str, run_id: str) -> dict[int, list[str]]:
    """Orchestrator step → the sub-agent ids it started (from the run's events)."""
    with urllib.request.urlopen(f"{base}/runs/{run_id}/events", timeout=30) as resp:
        text = resp.read().decode()
    out: dict[int, list[str]] = {}
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if "event: fanout" in lines:
            data = json.loads(next(line[6:] for line in lines if line.startswith("data: ")))
            out.setdefault(data["step"], []).extend(s["id"] for s in data["subagents"])
    return out


def critical_path(base: str, run_id: str, ttft: float) -> tuple[float, float]:
    """(engine seconds, tool seconds) along the run's critical path."""
    record = get_json(f"{base}/runs/{run_id}")
    started = fanouts(base, run_id) if record["mode"] == "swarm" else {}
    engine = tools = 0.0
    for step in record["steps"]:
        engine += ttft
        best = (0.0, 0.0)  # the step's longest call, as (engine, tools)
        for call in step["tool_calls"]:
            if call["name"] == "spawn_subagents":
                continue
            duration = (call.get("result") or {}).get("duration") or 0.0
            best = max(best, (0.0, duration), key=sum)
        for sub in started.get(step["step"], []):
            best = max(best, critical_path(base, sub, ttft), key=sum)
        engine += best[0]
        tools += best[1]
    return engine, tools


def overhead_rows(base: str, runs: list[TaskRun], ttft: float) -> dict[str, list[dict[str, float]]]:
    rows: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        if run.run_id is None or not run.critical_steps:
            continue
        engine, tools = critical_path(base, run.run_id, ttft)
        rest = run.wall_time - engine - tools
        rows.setdefault(run.mode, []).append({
            "wall": run.wall_time, "engine": engine, "tools": tools, "overhead": rest,
            "steps": run.critical_steps, "per_step": rest / run.critical_steps})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttft", type=float, default=0.05,
                        help="seconds each model call takes on the simulated engine")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--output", type=Path, help="save the bench agents JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = write_sample_sim_script(tmp / "script.json")
        sim, sim_url = start(["simulate", "--ttft", str(args.ttft), "--tpot", "0",
                              "--script", str(script), "--log-level", "warning"],
                             tmp / "sim.log", {})
        unsandboxed = shutil.which("bwrap") is None
        config = tmp / "gateway.toml"
        config.write_text(
            f'[[upstreams]]\nname = "sim"\nurl = "{sim_url}/v1"\nfamily = "k2.5"\n'
            f'dialect = "vllm"\n[agent]\nmax_time = 600\n'
            + ("allow_unsandboxed = true\n" if unsandboxed else ""))
        try:
            gateway, gw_url = start(
                ["serve", "--config", str(config), "--no-access-log"], tmp / "gateway.log",
                {"KIMI_MODES_AGENT__RUNS_DB": str(tmp / "runs.sqlite3"),
                 "KIMI_MODES_AGENT__WORKSPACES": str(tmp / "workspaces")})
        except BaseException:
            stop(sim)
            raise
        try:
            tasks = load_tasks(sample_tasks_path())
            bench = AgentsConfig(base_url=gw_url + "/v1", targets=targets_for(),
                                 concurrency=args.concurrency, repeat=args.repeat,
                                 timeout=300)
            print(f"simulated engine: every model call {args.ttft * 1e3:g} ms (tpot 0); "
                  f"{len(tasks)} sample tasks × {args.repeat}, concurrency {args.concurrency}"
                  + ("; python tool unsandboxed (no bubblewrap)" if unsandboxed else "")
                  + f"; {os.cpu_count()} CPUs")
            # One warm-up task per mode (connections, the first interpreter, lazy imports).
            run_agents(AgentsConfig(base_url=bench.base_url, targets=bench.targets,
                                    timeout=300), tasks[:1])
            result = run_agents(bench, tasks)
            print_table(result.totals, result.per_task,
                        title=f"bench agents · simulated engine, T = {args.ttft * 1e3:g} ms")
            if args.output:
                args.output.write_text(json.dumps(result.to_dict(), indent=2,
                                                  ensure_ascii=False))
            for mode, rows in overhead_rows(gw_url + "/v1", result.runs, args.ttft).items():
                def mean(key: str, rows: list[dict[str, float]] = rows) -> float:
                    return statistics.fmean(r[key] for r in rows)
                per_step = sorted(r["per_step"] for r in rows)
                print(f"{mode:<6} {len(rows):>3} runs: wall {mean('wall') * 1e3:7.1f} ms = "
                      f"engine {mean('engine') * 1e3:7.1f} + tools {mean('tools') * 1e3:6.1f} "
                      f"+ overhead {mean('overhead') * 1e3:6.1f} ms over "
                      f"{mean('steps'):.2f} critical steps → overhead per step "
                      f"mean {statistics.fmean(per_step) * 1e3:5.1f} ms, median "
                      f"{statistics.median(per_step) * 1e3:5.1f}, max "
                      f"{per_step[-1] * 1e3:5.1f}")
        finally:
            stop(gateway)
            stop(sim)


if __name__ == "__main__":
    main()
