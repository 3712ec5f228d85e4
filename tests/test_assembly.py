"""kimi_modes.assembly: the whole app built from settings, and released by one close."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.assembly import assemble
from kimi_modes.config import Settings, load_settings
from kimi_modes.engines.base import (
    ChatRequest,
    Finish,
    Snapshotting,
    Startable,
    UpstreamUnavailable,
)
from kimi_modes.engines.openai_chat import OpenAIChatEngine
from kimi_modes.modes import ModeError
from kimi_modes.tools.mcp import McpConfigError

Start = Callable[..., Any]  # the start_simulator fixture


def _settings(tmp_path: Path, url: str, **agent: Any) -> Settings:
    return load_settings(None, upstreams=[{"name": "sim", "url": url}],
                         agent={"runs_db": str(tmp_path / "runs.sqlite3"),
                                "workspaces": str(tmp_path / "ws"), **agent})


def _threads(*prefixes: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


def _children() -> set[int]:
    """Live (non-zombie) child processes of this test process."""
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.add(int(entry))
    return out


async def test_builds_every_mode_on_the_simulated_engine_and_closes_it_all(
        tmp_path: Path, start_simulator: Start) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    before = _threads("runs-")
    app = await assemble(_settings(tmp_path, sim.v1))
    try:
        assert list(app.engines) == ["sim"]
        assert isinstance(app.engines["sim"], OpenAIChatEngine)
        assert app.store is not None and app.store.is_open
        assert app.agent is app.router.agent is not None
        assert app.swarm is app.router.swarm is not None
        assert set(app.pools) == {"orchestrator", "workers"}
        for pool in app.pools.values():
            assert isinstance(pool, Snapshotting)
            assert [m["name"] for m in pool.snapshot()] == ["sim"]
        assert set(app.swarm.status()["pools"]) == {"orchestrator", "workers"}
        names = {t.name for t in app.tools}
        assert {"python", "shell", "read_file", "write_file"} <= names
        assert names <= {t.name for t in app.agent.tools_factory()}
        engine, request = app.router.route(
            app.router.catalog.resolve("kimi-k2.5-instant"),
            ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=8))
        events = [event async for event in engine.stream(request)]
        assert isinstance(events[-1], Finish)
    finally:
        await app.aclose()
    assert not app.store.is_open
    assert _threads("runs-") == before
    await app.aclose()  # idempotent


async def test_without_runs_it_connects_to_nothing_and_writes_nothing(
        tmp_path: Path, unused_port: int) -> None:
    settings = _settings(tmp_path, f"http://127.0.0.1:{unused_port}/v1")
    async with await assemble(settings, runs=False) as app:  # nobody listens: still fine
        assert app.store is None and app.agent is None and app.swarm is None
        assert app.pools == {} and app.tools == [] and app.mcp is None
        with pytest.raises(ModeError):
            app.router.route(app.router.catalog.resolve("kimi-k2.5-agent"),
                             ChatRequest(messages=[{"role": "user", "content": "Hi"}]))
    assert not (tmp_path / "runs.sqlite3").exists()


def test_a_remote_upstream_never_imports_the_embedded_engine(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
from kimi_modes.assembly import assemble
from kimi_modes.config import load_settings

async def main():
    settings = load_settings(None, upstreams=[{{"name": "x", "url": "http://127.0.0.1:9/v1"}}],
                             agent={{"runs_db": {str(tmp_path / "r.sqlite3")!r},
                                    "workspaces": {str(tmp_path / "ws")!r}}})
    async with await assemble(settings):
        pass

asyncio.run(main())
print(sorted(m for m in sys.modules
             if m.startswith(("llama_cpp", "kimi_modes.engines.embedded"))))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIMI_MODES_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_closing_stops_the_mcp_servers(tmp_path: Path, start_simulator: Start) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    mcp = tmp_path / "mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}))
    before = _children()
    app = await assemble(_settings(tmp_path, sim.v1, mcp_config=str(mcp)))
    try:
        assert app.mcp is not None and app.mcp.problems() == {}
        assert app.agent is not None
        assert "time__get_current_time" in {t.name for t in app.agent.tools_factory()}
        assert _children() - before
    finally:
        await app.aclose()
    for _ in range(50):
        if not _children() - before:
            break
        await asyncio.sleep(0.1)
    assert _children() - before == set()


async def test_a_failure_half_way_releases_what_was_built(tmp_path: Path,
                                                          unused_port: int) -> None:
    before = _threads("runs-")
    settings = _settings(tmp_path, f"http://127.0.0.1:{unused_port}/v1",
                         mcp_config=str(tmp_path / "missing.json"))
    with pytest.raises(McpConfigError):
        await assemble(settings)  # after the run store was opened
    assert _threads("runs-") == before


async def test_an_engine_that_cannot_start_is_released(tmp_path: Path) -> None:
    settings = load_settings(None, upstreams=[
        {"name": "gguf", "kind": "embedded", "model_path": str(tmp_path / "missing.gguf")}])
    with pytest.raises(UpstreamUnavailable, match="cannot load the model"):
        await assemble(settings, runs=False)
    assert _threads("kimi-embedded-gguf") == []  # its worker thread was shut down


@pytest.mark.embedded
async def test_the_embedded_default_is_started_and_released(tmp_path: Path) -> None:
    settings = load_settings(None, agent={"runs_db": str(tmp_path / "runs.sqlite3")})
    app = await assemble(settings, runs=False)
    engine = app.engines["embedded"]
    try:
        assert isinstance(engine, Startable)
        assert engine.model_info is not None  # type: ignore[attr-defined]  # loaded already
    finally:
        await app.aclose()
    assert _threads("kimi-embedded-") == []
    with pytest.raises(UpstreamUnavailable, match="closed"):
        await engine.start()
