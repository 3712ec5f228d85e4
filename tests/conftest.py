"""Fixtures that start the real processes: the simulated engine and the gateway.

Each is started the way a user starts it (``python -m kimi_modes simulate|serve``) on a free
loopback port, waited for on its ``/health``, and stopped at the end of the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A started server: its base URL (no ``/v1``), process and log file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _start(args: list[str], log: Path, *, timeout: float = 120.0,
           env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> Proc:
    port = free_port()
    # Runs and workspaces of this server stay in the test's own directory.
    state = {"KIMI_MODES_AGENT__RUNS_DB": str(log.with_suffix(".runs.sqlite3")),
             "KIMI_MODES_AGENT__WORKSPACES": str(log.with_suffix(".workspaces"))}
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **state, **(env or {})}
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kimi_modes", *args, "--port", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=REPO,
        pass_fds=pass_fds,
    )
    proc = Proc(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{proc.output()}")
        try:
            if httpx.get(proc.url + "/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{args[0]} did not become healthy in {timeout}s:\n{proc.output()}")


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``start_simulator("--ttft", "0.01", ...)`` → a running simulated engine."""
    procs: list[Proc] = []

    def start(*args: str) -> Proc:
        proc = _start(["simulate", *args], tmp_path / f"simulate-{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``start_gateway(toml_text, *extra_args)`` → a running gateway with that config."""
    procs: list[Proc] = []

    def start(config: str | None = None, *args: str, env: dict[str, str] | None = None,
              pass_fds: tuple[int, ...] = ()) -> Proc:
        cli = ["serve", "--no-access-log"]
        if config is not None:
            path = tmp_path / f"gateway-{len(procs)}.toml"
            path.write_text(config)
            cli += ["--config", str(path)]
        proc = _start([*cli, *args], tmp_path / f"gateway-{len(procs)}.log", env=env,
                      pass_fds=pass_fds)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def _upstream_toml(url: str, *, kind: str = "openai_chat", name: str = "sim",
                   extra: str = "") -> str:
    return (
        f'[[upstreams]]\nname = "{name}"\nkind = "{kind}"\nurl = "{url}"\n'
        f'family = "k2.5"\ndialect = "vllm"\n{extra}'
    )


@pytest.fixture
def upstream_toml() -> Callable[..., str]:
    """``upstream_toml(url, kind=..., name=..., extra=...)``: a gateway config with one
    upstream at ``url`` (a base URL ending in ``/v1``)."""
    return _upstream_toml


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (for "upstream is down" tests)."""
    return free_port()


@pytest.fixture(scope="module")
def embedded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A gateway with no configuration, i.e. on the embedded default model; one per module,
    since loading the model is the slow part."""
    log = tmp_path_factory.mktemp("embedded") / "gateway.log"
    proc = _start(["serve", "--no-access-log"], log, timeout=180,
                  env={"KIMI_MODES_CONFIG": ""})
    yield proc
    proc.stop()
