"""The simulated engine as its own process: the one way every test starts it.

:func:`launch` runs ``python -m kimi_modes simulate --port 0`` and waits for its
``listening on`` line; :class:`Sim` is the running engine, with helpers to drive and
inspect it (``/sim/control``, ``/sim/stats``, ``/metrics``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

READY = "Simulated Kimi engine listening on "


@dataclass
class Sim:
    """A running simulated engine: ``url`` has no ``/v1``; ``v1`` has."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.v1, api_key="none", max_retries=0)

    def sse(
        self,
        body: dict[str, Any],
        *,
        path: str = "/chat/completions",
        headers: dict[str, str] | None = None,
    ) -> list[Any]:
        """The decoded ``data:`` events of a streamed answer (``[DONE]`` as the string)."""
        events: list[Any] = []
        with httpx.stream(
            "POST", self.v1 + path, json={"stream": True, **body}, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    events.append(data if data == "[DONE]" else json.loads(data))
        return events

    def control(self, **changes: Any) -> dict[str, Any]:
        response = httpx.post(self.url + "/sim/control", json=changes, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/sim/stats", timeout=10).json())

    def metrics(self) -> dict[str, float]:
        """``/metrics`` samples by name (labels dropped; the finished_reason one kept)."""
        out: dict[str, float] = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                key = name.split("{")[0]
                if "finished_reason=" in name:
                    key += ":" + name.split('finished_reason="')[1].split('"')[0]
                out[key] = float(value)
        return out

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def launch(args: tuple[str, ...], log: Path, timeout: float = 30.0) -> Sim:
    """Start an engine as a user does (``python -m kimi_modes simulate``) with ``args``
    (``--port 0`` and a quiet log level are added); its address is read from the line it
    prints when it listens, so no port is guessed."""
    handle = log.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kimi_modes",
            "simulate",
            "--port",
            "0",
            "--log-level",
            "warning",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=handle,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    handle.close()
    if not lines or not lines[0].startswith(READY):
        process.kill()
        raise RuntimeError(f"simulated engine did not start: {lines!r}\n{log.read_text()}")
    return Sim(lines[0][len(READY) :].strip(), process, log)
