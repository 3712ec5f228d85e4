"""Starting the real processes the tests talk to, the way a user starts them:
``python -m kimi_modes simulate|serve`` on a free loopback port, waited for on ``/health``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


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


def start_process(args: list[str], log: Path, *, timeout: float = 120.0,
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


def upstream_toml(url: str, *, kind: str = "openai_chat", name: str = "sim",
                   extra: str = "") -> str:
    return (
        f'[[upstreams]]\nname = "{name}"\nkind = "{kind}"\nurl = "{url}"\n'
        f'family = "k2.5"\ndialect = "vllm"\n{extra}'
    )
