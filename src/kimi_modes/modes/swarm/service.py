"""Swarm mode as an engine: each request becomes an orchestrator run that fans out.

:class:`SwarmService` is :class:`~kimi_modes.modes.agent.service.AgentService` with the
orchestrator's tools (``AgentSwarm``, and our ``spawn_subagents`` and ``resume_subagents``)
instead of the agent's, the
orchestrator's budgets (15 steps by default), and the swarm's metrics recorded at the end
(the ``swarm_metrics`` event and the run's ``metrics``). The server streams it like Agent mode:
reasoning, progress lines (fan-outs, each sub-agent's end) and the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kimi_modes.engines.base import ChatRequest, Engine, Snapshotting
from kimi_modes.modes.agent.loop import Budgets, ContextPolicy
from kimi_modes.modes.agent.run import AgentRun, usage_record
from kimi_modes.modes.agent.service import AgentService
from kimi_modes.modes.options import ModeOptions
from kimi_modes.modes.swarm.agent_swarm import ORCHESTRATOR_NOTE, AgentSwarmTool
from kimi_modes.modes.swarm.fanout import SPAWN, ResumeTool, SpawnTool, SwarmRun, make_repairer
from kimi_modes.modes.swarm.workers import SwarmWorkers
from kimi_modes.runs import RunStore
from kimi_modes.tools.toolset import Toolset


class SwarmService(AgentService):
    """Runs swarm requests: the orchestrator on ``engine``, sub-agents on ``workers``."""

    name = "swarm"
    mode = "swarm"

    def __init__(
        self,
        engine: Engine,
        store: RunStore,
        workers: SwarmWorkers,
        *,
        workspaces: Path,
        budgets: Budgets,
        context: ContextPolicy,
        max_per_fanout: int = 100,
        max_per_run: int = 100,
        output_limit: int = 64_000,
        step_retries: int = 3,
        model_id: str = "kimi-k2.5-swarm",
    ) -> None:
        super().__init__(
            engine, store, workspaces=workspaces, tools_factory=list, budgets=budgets,
            context=context, tool_timeout=budgets.max_time or 3600.0,
            tool_output_limit=output_limit, system_notes=[ORCHESTRATOR_NOTE],
            model_id=model_id,
        )
        self.workers = workers
        self.max_per_fanout = max_per_fanout
        self.max_per_run = max_per_run
        self.step_retries = step_retries
        self._runs: dict[str, SwarmRun] = {}
        self._repair = make_repairer(engine)

    def _toolset(self, run: AgentRun, request: ChatRequest, options: ModeOptions) -> Toolset:
        budgets = self.workers.settings.budgets.merged({
            "max_steps": options.swarm.subagent_max_steps,
            "max_time": options.swarm.subagent_max_time})
        swarm = SwarmRun(run.id, run.emit, self.workers, max_per_fanout=self.max_per_fanout,
                         max_per_run=self.max_per_run, output_limit=self.tool_output_limit,
                         budgets=budgets, max_tokens=request.max_tokens)
        self._runs[run.id] = swarm
        # A fan-out waits at most as long as the orchestrator may run (a request may have
        # tightened that with "agent": {"max_time": ...}).
        limit = options.agent.max_time
        timeout = min(self.tool_timeout, limit) if limit is not None else self.tool_timeout
        return Toolset([AgentSwarmTool(swarm, timeout=timeout), SpawnTool(swarm, timeout=timeout),
                        ResumeTool(swarm, timeout=timeout)],
                       default_timeout=timeout, output_limit=self.tool_output_limit,
                       repairer=self._repair)

    def _loop_options(self, options: ModeOptions) -> dict[str, Any]:
        loop: dict[str, Any] = {"step_retries": self.step_retries}
        if options.swarm.fan_out == "required":
            # The first step must fan out (grammar-constrained where the engine can); our
            # spawn_subagents, which also takes a single task (AgentSwarm needs two).
            loop["first_tool_choice"] = {"type": "function", "function": {"name": SPAWN}}
        return loop

    async def _finished(self, run: AgentRun) -> dict[str, Any] | None:
        swarm = self._runs.pop(run.id, None)
        if swarm is None:
            return None
        metrics = swarm.metrics(run.steps, run.tool_calls, usage_record(run.usage))
        await run.emit("swarm_metrics", metrics)
        return metrics

    def status(self) -> dict[str, Any]:
        """Sub-agents running and queued gateway-wide, and each engine pool's members (for
        ``/health``)."""
        pools = {}
        for engine in (self.engine, self.workers.engine):
            if isinstance(engine, Snapshotting):
                pools[engine.name] = engine.snapshot()
        return {"subagents": self.workers.load(), "pools": pools}

    async def aclose(self) -> None:
        await self.workers.aclose()
        await super().aclose()
