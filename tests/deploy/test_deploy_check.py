"""``kimi-modes deploy check URL`` against the simulated engine as a real process, and
``deploy render`` through the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kimi_modes.deploy.check import run_check


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kimi_modes", "deploy", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_healthy_engine_passes_every_check(start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    report = run_check(sim.url, family="k2.5", dialect="vllm")
    assert report.passed, report.lines()
    assert report.model == "moonshotai/Kimi-K2.5"
    names = [c.name for c in report.checks]
    assert names == ["models", "version", "thinking", "tool_call"]
    assert all(c.ok for c in report.checks)


def test_a_wrong_switch_or_family_fails_the_thinking_check(
        start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    # LMDeploy's switch (top-level enable_thinking) is not what this engine reads.
    report = run_check(sim.url, family="k2.5", dialect="lmdeploy")
    thinking = next(c for c in report.checks if c.name == "thinking")
    assert thinking.ok is False and "thinking=False" in thinking.detail
    assert not report.passed
    report = run_check(sim.url, family="k2-instruct")
    assert next(c for c in report.checks if c.name == "thinking").ok is False


def test_an_engine_without_tool_parsers_fails_the_tool_call(
        start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--raw-markers")
    report = run_check(sim.url, family="k2.5")
    tool = next(c for c in report.checks if c.name == "tool_call")
    assert tool.ok is False


def test_an_unknown_model_or_an_unreachable_url_fails(
        start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    report = run_check(sim.url, model="other/model")
    assert not report.passed and "not among" in report.checks[0].detail
    result = _cli("check", "http://127.0.0.1:9", "--timeout", "2")
    assert result.returncode == 1 and "cannot reach" in result.stdout


def test_check_command_exit_status(start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    result = _cli("check", sim.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tool_call" in result.stdout
    assert _cli("check", sim.url, "--dialect", "nope").returncode == 2


def test_render_commands_print_what_the_modules_build(tmp_path: Path) -> None:
    launch = _cli("render", "launch", "-m", "k2.5", "-g", "h200")
    assert launch.returncode == 0, launch.stderr
    assert "--tensor-parallel-size 8" in launch.stdout
    assert "--reasoning-parser kimi_k2" in launch.stdout
    compose = _cli("render", "compose", "-m", "k2.5", "-g", "b300", "--workers", "1")
    assert compose.returncode == 0, compose.stderr
    document = yaml.safe_load(compose.stdout)
    assert list(document["services"]) == ["orchestrator", "worker-1", "gateway"]
    k8s = _cli("render", "k8s", "-m", "k2-instruct", "-g", "h200", "--stack", "llm-d",
               "--workers", "1")
    assert k8s.returncode == 0, k8s.stderr
    kinds = [o["kind"] for o in yaml.safe_load_all(k8s.stdout)]
    assert "InferencePool" in kinds and "LeaderWorkerSet" in kinds
    refused = _cli("render", "compose", "-m", "k2.5", "-g", "h200", "--workers", "1")
    assert refused.returncode == 2 and "GPUs, but the node has 8" in refused.stderr
