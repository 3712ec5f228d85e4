"""The one persisted-run lifecycle (modes/agent/run.py): a real run store, the simulated
engine in its own process, a real agent loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.engines.base import EngineError
from kimi_modes.engines.openai_chat import OpenAIChatEngine
from kimi_modes.modes.agent.loop import AgentLoop, Budgets
from kimi_modes.modes.agent.run import AgentRun, usage_record
from kimi_modes.runs import RunStore
from kimi_modes.tools import RunContext, ToolResult, Toolset

RULES = [
    {"name": "hello", "match": {"user": "(?i)hello"},
     "reply": {"reasoning": "Greet back.", "content": "Hello there."}},
    {"name": "wait", "match": {"user": "(?i)wait", "step": 0},
     "reply": {"tool_calls": [{"name": "wait", "arguments": {}}]}},
]


class WaitTool:
    """Waits until cancelled; registers a cleanup on the run's context, as sandboxed tools
    do, so the test sees the context closed."""

    name = "wait"
    description = "Wait."
    timeout: float | None = None

    def __init__(self) -> None:
        self.parameters: dict[str, Any] = {"type": "object", "properties": {}}
        self.started = asyncio.Event()
        self.closed = False

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        async def close() -> None:
            self.closed = True

        ctx.on_close(close)
        self.started.set()
        await asyncio.sleep(3600)
        return ToolResult("never")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with RunStore(tmp_path / "runs.sqlite3") as opened:
        yield opened


@pytest.fixture
def sim_url(tmp_path: Path, start_simulator: Callable[..., Any]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"rules": RULES}))
    return str(start_simulator("--ttft", "0", "--tpot", "0", "--script", str(path)).v1)


async def start_run(store: RunStore, tmp_path: Path, text: str,
                    seen: list[str]) -> AgentRun:
    async def observe(kind: str, data: dict[str, Any]) -> None:
        seen.append(kind)

    record = await store.create_run("agent", "kimi-k2.5-agent",
                                    [{"role": "user", "content": text}])
    run = AgentRun(store, record, tmp_path / "workspaces", observer=observe)
    await run.start()
    return run


def loop_for(run: AgentRun, url: str, tools: list[Any] | None = None) -> AgentLoop:
    engine = OpenAIChatEngine("sim", url, model="moonshotai/Kimi-K2.5")
    return AgentLoop(engine, Toolset(tools or []), ctx=run.ctx, emit=run.emit,
                     budgets=Budgets(max_steps=5))


async def test_a_completed_run_is_recorded_once(store: RunStore, tmp_path: Path,
                                                 sim_url: str) -> None:
    seen: list[str] = []
    run = await start_run(store, tmp_path, "hello", seen)
    loop = loop_for(run, sim_url)
    try:
        result = await run.execute(loop)
    finally:
        await run.finish({"answered": True})
        await loop.engine.aclose()
    await run.finish()  # idempotent
    record = await store.get(run.id)
    assert record is not None and record.status == "completed"
    assert record.stop_reason == "answer" and record.final_answer == "Hello there."
    assert record.usage == usage_record(result.usage) and record.usage is not None
    assert record.metrics == {"answered": True}
    assert run.steps == record.step_count == 1
    assert (tmp_path / "workspaces" / run.id).is_dir()
    stored = [e.type for e in await store.events(run.id)]
    assert stored[0] == "run_started" and stored[-1] == "finished"
    # the observer saw the rest, each delta (the store joins consecutive ones)
    assert [k for k, _ in groupby(seen)] == [k for k, _ in groupby(stored[:-1])]


async def test_a_failed_run_records_the_error_and_raises_it(
        store: RunStore, tmp_path: Path, unused_port: int) -> None:
    run = await start_run(store, tmp_path, "hello", [])
    loop = loop_for(run, f"http://127.0.0.1:{unused_port}/v1")
    with pytest.raises(EngineError):
        try:
            await run.execute(loop)
        finally:
            await run.finish()
            await loop.engine.aclose()
    record = await store.get(run.id)
    assert record is not None and record.status == "failed"
    assert record.stop_reason == "error" and record.error and "127.0.0.1" in record.error
    assert record.usage is None


async def test_a_cancelled_run_closes_its_tools(store: RunStore, tmp_path: Path,
                                                 sim_url: str) -> None:
    tool = WaitTool()
    run = await start_run(store, tmp_path, "wait", [])
    loop = loop_for(run, sim_url, [tool])
    task = asyncio.create_task(run.execute(loop))
    store.register_cancel(run.id, task.cancel)
    await asyncio.wait_for(tool.started.wait(), 10)
    assert await store.cancel(run.id)
    with pytest.raises(asyncio.CancelledError):
        await task
    await run.finish()
    await loop.engine.aclose()
    record = await store.get(run.id)
    assert record is not None and (record.status, record.stop_reason) == (
        "cancelled", "cancelled")
    assert tool.closed and run.tool_calls == 1


async def test_only_the_vocabulary_can_be_emitted(store: RunStore, tmp_path: Path) -> None:
    run = await start_run(store, tmp_path, "hello", [])
    with pytest.raises(ValueError, match="not an event a run emits"):
        await run.emit("progress", {})
    await run.finish()
