"""``kimi-modes chat`` and ``run`` (kimi_modes.terminal) as a user runs them: a real
subprocess, against a running gateway or assembled in-process on the simulated engine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kimi_modes", *args], capture_output=True, text=True,
        timeout=120, env={**os.environ, **(env or {})},
    )


def test_chat_against_a_running_gateway(start_simulator: Callable[..., Any],
                                        start_gateway: Callable[..., Any],
                                        upstream_toml: Callable[..., str]) -> None:
    sim = start_simulator("--ttft", "0.01", "--tpot", "0.001")
    gw = start_gateway(upstream_toml(sim.v1))
    done = run("chat", "Is 97 prime?", "--mode", "thinking", "--url", gw.v1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    done = run("chat", "hello", "--mode", "instant", "--url", gw.v1)
    assert done.returncode == 0 and done.stdout.strip()


def test_chat_reports_an_unreachable_gateway(unused_port: int) -> None:
    done = run("chat", "hi", "--mode", "instant", "--url", f"http://127.0.0.1:{unused_port}/v1")
    assert done.returncode == 1
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr


def test_chat_in_process_opens_no_run_store(tmp_path: Path, start_simulator: Callable[..., Any],
                                            upstream_toml: Callable[..., str]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    config = tmp_path / "chat.toml"
    config.write_text(upstream_toml(sim.v1))
    db = tmp_path / "runs.sqlite3"
    done = run("chat", "hello", "--mode", "instant", "--config", str(config),
               env={"KIMI_MODES_AGENT__RUNS_DB": str(db)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert not db.exists()  # Instant and Thinking need no runs


def test_chat_points_agent_and_swarm_at_the_run_command() -> None:
    for mode in ("agent", "swarm"):
        done = run("chat", "hi", "--mode", mode)
        assert done.returncode == 2
        assert "kimi-modes run --mode agent (or swarm)" in done.stderr
    done = run("chat", "hi", "--mode", "fast")
    assert done.returncode == 2 and "must be instant or thinking" in done.stderr
