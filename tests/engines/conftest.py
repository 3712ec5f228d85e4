"""A real llama.cpp ``llama-server`` on the bundled SmolLM2 GGUF, for the engine tests.

The binary comes from ``scripts/build_llama_server.sh`` (built from the llama.cpp source in the
llama-cpp-python sdist, cached under ``.cache/llama-server/``). The fixture runs the script
every session: it only prints the cached path when the binary exists, and builds it on a fresh
machine, so the README's plain ``pytest`` works there too. A failed build (no compiler, no
cmake) fails the tests; it is never a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kimi_modes.engines.embedded.model import default_model_path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_llama_server.sh"
#: The context of llama-server's one slot, in tokens.
CONTEXT = 4096
_LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")


@dataclass
class LlamaServer:
    """A running llama-server: its base URL (no ``/v1``), process, log file and the context
    of its one slot (tokens)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    context: int

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def llama_server_binary() -> Path:
    """The built llama-server, built first when it is missing (minutes: two cores)."""
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{BUILD_SCRIPT.name} failed ({done.returncode}); llama-server needs cmake and a C++ "
            f"compiler (apt-get install -y cmake g++):\n{done.stderr[-4000:]}",
            pytrace=False,
        )
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-server ``--jinja`` on the bundled SmolLM2 on a loopback port it picks itself,
    with one slot of :data:`CONTEXT` tokens, ``/metrics`` and ``/slots`` on; stopped at the end
    of the session."""
    binary = llama_server_binary()
    log = tmp_path_factory.mktemp("llama-server") / "llama-server.log"
    args = [
        str(binary), "--jinja", "-m", str(default_model_path()),
        "--host", "127.0.0.1", "--port", "0",
        "-c", str(CONTEXT), "--parallel", "1", "--threads", "1", "--threads-http", "4",
        "--metrics", "--slots", "--seed", "0", "--no-warmup",
    ]  # fmt: skip
    with log.open("wb") as handle:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
    server = LlamaServer("", process, log, CONTEXT)
    try:
        server.url = _wait_ready(server, timeout=120.0)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_ready(server: LlamaServer, *, timeout: float) -> str:
    """The server's URL once it listens and its /health says the model is loaded."""
    deadline = time.monotonic() + timeout
    url = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"llama-server exited with {server.process.returncode}:\n{server.output()}"
            )
        if not url:
            found = _LISTENING.search(server.log.read_bytes())
            url = found.group(1).decode() if found else ""
        if url:
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"llama-server was not ready in {timeout}s:\n{server.output()}")
