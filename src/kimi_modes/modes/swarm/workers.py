"""Sub-agents: each one a full, persisted agent run, started by an orchestrator.

:class:`SwarmWorkers` is shared by every swarm run of a gateway. It holds the global cap
(sub-agents running at once; the rest wait, first come first served, with status ``queued``),
the engine the sub-agents' model calls go to (an
:class:`~kimi_modes.engines.pool.EnginePool` over the worker upstreams), their tools and
budgets. A sub-agent run has mode ``subagent`` and its orchestrator's run as ``parent_id``;
it emits the agent loop's events plus a ``checkpoint`` after every step, so a sub-agent can be
continued, as kimi-code's AgentSwarm continues one (``resume_agent_ids``): one that failed, was
cancelled or interrupted, or ran out of budget, from its last finished step; one that answered,
with a follow-up prompt as its next user message. :meth:`prepare_resumes` starts each
continuation as a new run from the conversation the sub-agent's latest run had reached
(``params.resumed_from`` names that run, whose metrics get ``resumed_by``). A sub-agent keeps
one id over all its continuations, its **agent id** (its first run's id, ``params.agent_id``
on the later ones: :func:`agent_id`); any of its run ids names it, so it can be continued
again and again.

Every model call of a sub-agent carries its session id (its agent id) and the sub-agents'
objective, for a router upstream
(:mod:`kimi_modes.modes.session`). Its prompt opens with what all sub-agents share, byte for
byte: the tool declarations and the one system prompt (:data:`SUBAGENT_SYSTEM` and the agent
notes); what is its own (the task) comes after, in the user message, so an engine's prefix
cache serves the shared part to every sub-agent of every swarm.

:meth:`run` never raises for what went wrong inside the sub-agent: the outcome says
``failed`` with the error, or ``cancelled`` (``DELETE /v1/runs/{id}`` on the sub-agent). It
raises :class:`asyncio.CancelledError` only when its own caller is cancelled (the
orchestrator's run was), after recording the sub-agent as cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.engines.base import Engine
from kimi_modes.modes.agent.loop import (
    AgentLoop,
    Budgets,
    ContextPolicy,
    conversation_from_events,
)
from kimi_modes.modes.agent.run import AgentRun, usage_record
from kimi_modes.modes.session import SessionEngine
from kimi_modes.modes.swarm.metrics import SubagentOutcome, add_usage
from kimi_modes.runs import ACTIVE_STATUSES, COMPLETED, RunRecord, RunStore
from kimi_modes.runs.events import STEP, SUBAGENT_PROGRESS, SUBAGENT_STARTED, TOOL_CALL
from kimi_modes.tools.base import Tool
from kimi_modes.tools.toolset import Toolset

log = logging.getLogger("kimi_modes.swarm")

#: ``on_event(type, data)``: the orchestrator's view of its sub-agents (``subagent_*``).
OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]

SUBAGENT_SYSTEM = (
    "You are Kimi, an AI assistant created by Moonshot AI, working as a sub-agent of an agent "
    "swarm. An orchestrator gave you one sub-task. Do it with your tools, then answer with "
    "your result: complete, self-contained and concise, because the orchestrator sees only "
    "your final answer. You cannot create sub-agents."
)

#: Stop reasons of a completed run whose turn is unfinished (a budget ran out): it continues
#: with or without a prompt, on the steps its turn has left. Other completed runs answered.
UNFINISHED_STOPS = frozenset({"max_steps", "max_time", "max_tokens", "context"})


def agent_id(record: RunRecord) -> str:
    """The id a sub-agent keeps over its continuations: its first run's id."""
    return str(record.params.get("agent_id") or record.id)


class ResumeError(ValueError):
    """A run cannot be resumed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class LaunchRamp:
    """How a fan-out's sub-agents are started, as kimi-code's AgentSwarm does: the first
    ``burst`` at once, then one more every ``interval`` seconds (the gateway-wide cap still
    applies on top)."""

    burst: int = 5
    interval: float = 0.7

    def delay(self, index: int) -> float:
        """Seconds after the fan-out began at which its ``index``-th sub-agent (from 0)
        starts."""
        return max(0, index - self.burst + 1) * self.interval


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How sub-agents run: budgets (``max_time`` is the per-sub-agent timeout, counted from
    when it gets a slot), the thinking switch, sampling, retries of broken steps and the
    launch ramp; ``objective``: the priority class their requests name to a router upstream."""

    budgets: Budgets = field(default_factory=lambda: Budgets(max_steps=100, max_time=900.0))
    context: ContextPolicy = field(default_factory=ContextPolicy)
    thinking: bool = False
    sampling: Mapping[str, Any] | None = None
    step_retries: int = 3
    tool_timeout: float = 120.0
    tool_output_limit: int = 16_000
    max_concurrent: int = 64
    #: The id of the sub-agents' model and mode, recorded on their runs.
    model_id: str = "kimi-k2.5-instant"
    #: Start each fan-out's sub-agents in a ramp (None: all at once).
    ramp: LaunchRamp | None = None
    objective: str | None = None


class SwarmWorkers:
    """Runs sub-agents for every swarm of the gateway; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        store: RunStore,
        *,
        workspaces: Path,
        tools_factory: Callable[[], Sequence[Tool]],
        settings: WorkerSettings | None = None,
        system_notes: Sequence[str] = (),
    ) -> None:
        self.engine = engine
        self.store = store
        self.workspaces = workspaces
        self.tools_factory = tools_factory
        self.settings = settings = settings or WorkerSettings()
        self.system_notes = list(system_notes)
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._running = 0
        self._waiting = 0
        self._background: set[asyncio.Task[SubagentOutcome]] = set()
        self._parent_cancelled: set[str] = set()
        #: Checking and creating continuations is one step here (two callers never continue
        #: the same sub-agent twice at once).
        self._resuming = asyncio.Lock()

    # -- creating and running ----------------------------------------------------------------

    async def create(self, parent_id: str, task: str, *, index: int,
                     messages: Sequence[Mapping[str, Any]] | None = None,
                     params: Mapping[str, Any] | None = None,
                     owner: str | None = None) -> RunRecord:
        """Store a queued sub-agent run for ``task`` (or for ``messages``, when resuming); it
        belongs to ``owner``, by default to its parent's. The shared system prompt comes
        first and the task only in the user message after it (see the module docstring)."""
        conversation = list(messages) if messages is not None else [
            {"role": "system", "content": SUBAGENT_SYSTEM},
            {"role": "user", "content": task},
        ]
        return await self.store.create_run(
            mode="subagent", model=self.settings.model_id, messages=conversation,
            params={"index": index, "task": task, "thinking": self.settings.thinking,
                    "budgets": {"max_steps": self.settings.budgets.max_steps,
                                "max_time": self.settings.budgets.max_time},
                    **dict(params or {})},
            parent_id=parent_id, owner=owner,
        )

    async def run(self, record: RunRecord, outcome: SubagentOutcome,
                  on_event: OnEvent, *, budgets: Budgets | None = None,
                  max_tokens: int | None = None) -> SubagentOutcome:
        """Wait for a slot, run the sub-agent of ``record`` to its end, record it, and fill
        in ``outcome``. ``budgets`` replace the settings' (the caller tightened them);
        ``max_tokens`` bounds each of its model calls. See the module docstring for what it
        raises."""
        this = asyncio.current_task()
        if this is not None:
            self.store.register_cancel(record.id, this.cancel)
        budgets = budgets or self.settings.budgets

        async def report(kind: str, data: dict[str, Any]) -> None:
            if kind not in (STEP, TOOL_CALL):
                return
            outcome.steps, outcome.tool_calls = run.steps, run.tool_calls
            await on_event(SUBAGENT_PROGRESS, {
                "id": record.id, "index": outcome.index, "steps": outcome.steps,
                "tool_calls": outcome.tool_calls,
                "last_tool": data.get("name") if kind == TOOL_CALL else None,
            })

        run = AgentRun(self.store, record, self.workspaces, observer=report)
        try:
            async with self._slot():
                outcome.started_at = time.time()
                outcome.status = "running"
                await on_event(SUBAGENT_STARTED, {"id": record.id, "index": outcome.index,
                                                  "started_at": outcome.started_at})
                await run.start()
                result = await run.execute(self._loop(run, budgets, max_tokens),
                                           time_limit=budgets.max_time)
            content = result.final.get("content")
            outcome.answer = content if isinstance(content, str) else ""
            outcome.usage = add_usage({}, usage_record(result.usage))
        except asyncio.CancelledError as exc:
            run.ended_by(exc)
            await self._record(run, outcome)
            if record.id in self._parent_cancelled:
                self._parent_cancelled.discard(record.id)
                raise
            return outcome  # this sub-agent alone was cancelled: an outcome like any other
        except Exception as exc:  # reported to the orchestrator, not raised
            run.ended_by(exc, time_limit=budgets.max_time)
            log.info("sub-agent %s failed: %s", record.id, run.error)
        return await self._record(run, outcome)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the gateway-wide sub-agent slots (waiting, first come first served)."""
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._slots.release()

    def _loop(self, run: AgentRun, budgets: Budgets, max_tokens: int | None) -> AgentLoop:
        s = self.settings
        sampling = dict(s.sampling or {})
        if max_tokens is not None:
            sampling["max_tokens"] = max_tokens
        return AgentLoop(
            SessionEngine(self.engine, session_id=agent_id(run.record), objective=s.objective),
            Toolset(self.tools_factory(), default_timeout=s.tool_timeout,
                    output_limit=s.tool_output_limit),
            ctx=run.ctx, emit=run.emit, budgets=budgets, context=s.context,
            thinking=s.thinking, sampling=sampling, system_notes=self.system_notes,
            step_retries=s.step_retries, checkpoints=True,
        )

    async def _record(self, run: AgentRun, outcome: SubagentOutcome) -> SubagentOutcome:
        """Finish the sub-agent's run (its tools closed, its end stored) and its outcome."""
        outcome.finished_at = time.time()
        outcome.status, outcome.stop_reason = run.status, run.stop_reason
        outcome.error = run.error
        outcome.steps, outcome.tool_calls = run.steps, run.tool_calls
        await run.finish({"duration": round(outcome.duration, 4)})
        return outcome

    # -- resuming ------------------------------------------------------------------------------

    async def prepare_resumes(self, resumes: Sequence[tuple[str, str | None]], *,
                              parent_id: str | None = None
                              ) -> list[tuple[RunRecord, Budgets]]:
        """Create the continuation of each sub-agent of ``resumes`` ((run id, prompt) pairs;
        any of a sub-agent's run ids names it; of ``parent_id`` when given): a queued run that
        starts from the conversation its latest run reached, with the prompt, when given, as
        the next user message. A sub-agent that answered is continued only with a prompt (a
        follow-up: a new turn, with the full budgets); one that failed, was cancelled or
        interrupted, or ran out of budget, with or without one (with the steps its turn has
        left). Returns each new run with its budgets, in order. Every sub-agent is checked
        before any run is created: :class:`ResumeError` (404 unknown; 409 not a sub-agent of
        this swarm, still queued or running, answered and no prompt, named twice)."""
        async with self._resuming:
            plans = [await self._plan_resume(run_id, prompt, parent_id)
                     for run_id, prompt in resumes]
            seen: dict[str, str] = {}
            for (run_id, _), (old, _, _) in zip(resumes, plans, strict=True):
                if old.id in seen:
                    raise ResumeError(f"{run_id!r} and {seen[old.id]!r} name the same "
                                      f"sub-agent ({agent_id(old)}); continue it once per call")
                seen[old.id] = run_id
            created = []
            for old, messages, done in plans:
                params: dict[str, Any] = {"resumed_from": old.id, "agent_id": agent_id(old),
                                          "steps_before": done}
                if "item" in old.params:
                    params["item"] = old.params["item"]
                new = await self.create(
                    old.parent_id or "", str(old.params.get("task", old.task)),
                    index=int(old.params.get("index", 0)), messages=messages,
                    params=params, owner=old.owner)
                await self.store.update_metrics(old.id, {"resumed_by": new.id})
                b = self.settings.budgets
                created.append((new, Budgets(max(1, b.max_steps - done), b.max_tokens,
                                             b.max_time)))
        return created

    async def _plan_resume(self, run_id: str, prompt: str | None, parent_id: str | None
                           ) -> tuple[RunRecord, list[dict[str, Any]], int]:
        """(the sub-agent's latest run, the conversation to continue, the steps of its turn
        done) for :meth:`prepare_resumes`; creates nothing."""
        first = await self.store.get(run_id)
        if first is None:
            raise ResumeError(f"no run {run_id!r}", status=404)
        if first.mode != "subagent":
            raise ResumeError(f"run {run_id!r} is a {first.mode} run; only sub-agents resume")
        if parent_id is not None and first.parent_id != parent_id:
            raise ResumeError(f"run {run_id!r} is not a sub-agent of this swarm")
        old = await self._latest(first)
        if old.status in ACTIVE_STATUSES:
            raise ResumeError(f"sub-agent {agent_id(old)} is still {old.status} (run "
                              f"{old.id}); wait for its result")
        prompt = (prompt or "").strip()
        answered = old.status == COMPLETED and old.stop_reason not in UNFINISHED_STOPS
        if answered and not prompt:
            raise ResumeError(f"sub-agent {agent_id(old)} completed ({old.stop_reason}) in run "
                              f"{old.id}; continue it with a prompt (a follow-up)")
        events = await self.store.events(old.id)
        messages = conversation_from_events(old.messages, events)
        if prompt:
            messages.append({"role": "user", "content": prompt})
        done = 0 if answered else int(old.params.get("steps_before", 0)) + sum(
            e.type == "checkpoint" for e in events)
        return old, messages, done

    async def _latest(self, record: RunRecord) -> RunRecord:
        """The latest run of ``record``'s sub-agent (following ``resumed_by``)."""
        seen = {record.id}
        while (later := record.metrics.get("resumed_by")) and str(later) not in seen:
            following = await self.store.get(str(later))
            if following is None:
                break
            seen.add(following.id)
            record = following
        return record

    def outcome(self, record: RunRecord, stage: int) -> SubagentOutcome:
        """The outcome to fill in for sub-agent run ``record``, started in orchestrator step
        ``stage``."""
        item = record.params.get("item")
        resumed_from = record.params.get("resumed_from")
        return SubagentOutcome(record.id, int(record.params.get("index", 0)),
                               str(record.params.get("task", record.task)), stage,
                               agent_id=agent_id(record),
                               item=str(item) if item is not None else None,
                               resumed_from=str(resumed_from) if resumed_from else None)

    async def resume_detached(self, run_id: str) -> RunRecord:
        """Continue a sub-agent's unfinished work in the background (``POST
        /v1/runs/{id}/resume``, which takes no prompt, so one that answered is refused);
        returns the new run, which goes on after the call returns."""
        [(new, budgets)] = await self.prepare_resumes([(run_id, None)])
        outcome = self.outcome(new, stage=0)

        async def no_parent(kind: str, data: dict[str, Any]) -> None:
            return None

        task = asyncio.create_task(self.run(new, outcome, no_parent, budgets=budgets))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return new

    def cancel_from_parent(self, run_id: str, task: asyncio.Task[Any]) -> None:
        """Cancel the task running sub-agent ``run_id`` because its orchestrator is being
        cancelled: the task then re-raises the cancellation (a sub-agent cancelled on its own,
        by ``DELETE``, reports a ``cancelled`` outcome instead)."""
        self._parent_cancelled.add(run_id)
        task.cancel()

    # -- state ----------------------------------------------------------------------------------

    def load(self) -> dict[str, int]:
        """Sub-agents running and waiting for a slot, gateway-wide."""
        return {"running": self._running, "waiting": self._waiting,
                "max_concurrent": self.settings.max_concurrent}

    async def aclose(self) -> None:
        """Cancel background resumptions and wait for them to record their end."""
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._background, return_exceptions=True)

