"""Swarm mode against the simulated engine, without the gateway: a :class:`SwarmService` on a
run store in ``tmp_path``, its sub-agents' only tool :class:`EchoTool` (tests/modes/)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.engines.base import ChatRequest
from kimi_modes.engines.openai_chat import OpenAIChatEngine
from kimi_modes.modes.agent.loop import Budgets, ContextPolicy
from kimi_modes.modes.swarm import SwarmService, SwarmWorkers, WorkerSettings
from kimi_modes.protocol.deltas import ContentDelta
from kimi_modes.runs import RunStore
from kimi_modes.tools import RunContext, ToolResult

#: Simulator rule matches: the orchestrator (it declares spawn_subagents), a sub-agent.
ORCH = {"tool": "spawn_subagents"}
SUB = {"system": "sub-agent of an agent swarm"}


@dataclass
class EchoTool:
    """Counts its calls (to prove a resumed sub-agent does not redo finished steps)."""

    calls: list[str] = field(default_factory=list)
    name: str = "echo"
    description: str = "Echo the text."
    parameters: dict[str, Any] = field(default_factory=lambda: {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    timeout: float | None = None

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        self.calls.append(arguments["text"])
        return ToolResult(f"echo: {arguments['text']}")


def write_script(tmp_path: Path, rules: list[dict[str, Any]]) -> str:
    path = tmp_path / "swarm-script.json"
    path.write_text(json.dumps({"rules": rules}))
    return str(path)


@dataclass
class Swarm:
    service: SwarmService
    store: RunStore
    echo: EchoTool


async def make_swarm(sim: Any, tmp_path: Path, *, max_concurrent: int = 64,
                     max_per_fanout: int = 100, max_per_run: int = 100,
                     sub_budgets: Budgets | None = None, step_retries: int = 0,
                     router: bool = False) -> Swarm:
    """A swarm on the simulator ``sim`` (``router``: the simulator taken for a router
    upstream, so every model call carries its session id)."""
    store = RunStore(tmp_path / "runs.sqlite3")
    await store.open()
    engine = OpenAIChatEngine("sim", sim.v1, model="moonshotai/Kimi-K2.5", router=router)
    echo = EchoTool()
    workers = SwarmWorkers(
        engine, store, workspaces=tmp_path / "ws", tools_factory=lambda: [echo],
        settings=WorkerSettings(budgets=sub_budgets or Budgets(100, None, 60.0),
                                max_concurrent=max_concurrent, step_retries=step_retries,
                                context=ContextPolicy(window=100_000)),
    )
    service = SwarmService(engine, store, workers, workspaces=tmp_path / "ws",
                           budgets=Budgets(15, None, 120.0),
                           context=ContextPolicy(window=100_000),
                           max_per_fanout=max_per_fanout, max_per_run=max_per_run,
                           step_retries=step_retries)
    return Swarm(service, store, echo)


async def run_swarm(swarm: Swarm, task: str = "Do the research.") -> tuple[str, str]:
    """Run one swarm request to its end; returns (the run id, the answer text)."""
    content: list[str] = []
    request = ChatRequest(messages=[{"role": "user", "content": task}], thinking=True)
    async for event in swarm.service.stream(request):
        if isinstance(event, ContentDelta):
            content.append(event.text)
    runs = await swarm.store.list_runs(mode="swarm")
    return runs[0].id, "".join(content)


async def close(swarm: Swarm) -> None:
    await swarm.service.aclose()
    await swarm.service.engine.aclose()
    await swarm.store.close()


async def events_of(store: RunStore, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in await store.events(run_id) if e.type == kind]
