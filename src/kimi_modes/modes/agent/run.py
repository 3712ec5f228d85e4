"""The one lifecycle of a persisted agent run: Agent mode's runs, a swarm's orchestrator run
and each of its sub-agents go through it alike.

The owner creates the run in the store (:meth:`~kimi_modes.runs.RunStore.create_run`; a
sub-agent is created queued, before it gets a slot), then::

    run = AgentRun(store, record, workspaces, observer=...)
    await run.start()                         # its workspace; ``run_started``
    loop = AgentLoop(..., ctx=run.ctx, emit=run.emit)
    try:
        result = await run.execute(loop)      # records how the loop ended, raises what it raised
    finally:
        await run.finish(metrics)             # closes its tools; stores the end, always

:meth:`AgentRun.emit` is the run's one way to report: it checks the type against the
vocabulary (:data:`~kimi_modes.runs.events.EVENT_TYPES`), stores the event, counts steps and
tool calls, and hands the event to the ``observer`` (the chat stream, a swarm's orchestrator).
Progress reports (``run_started``, ``step``, ``subagent_started``, ``subagent_progress``) are
stored without waiting for their commit, so a hundred sub-agents never wait on them; every
other event is committed before ``emit`` returns.

How a run ends: the loop returned → ``completed`` with the loop's stop reason (an answer, a
budget, client tool calls); cancelled (``DELETE /v1/runs/{id}``, a client that went away, an
orchestrator cancelled) → ``cancelled``; the hard time limit passed → ``failed`` with stop
reason ``max_time``; anything else raised → ``failed`` with the error. A run the process
never finished (it stopped) is marked ``interrupted`` by the store when it next opens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from kimi_modes.engines.base import Usage
from kimi_modes.modes.agent.loop import AgentLoop, AgentResult
from kimi_modes.modes.catalog import ModeError
from kimi_modes.runs import CANCELLED, COMPLETED, FAILED, RunRecord, RunStore
from kimi_modes.runs.events import (
    RUN_STARTED,
    STEP,
    SUBAGENT_PROGRESS,
    SUBAGENT_STARTED,
    TOOL_CALL,
    check_emitted,
)
from kimi_modes.tools.base import RunContext

#: ``observer(type, data)``: awaited for every event the run emits, after it is stored.
Observer = Callable[[str, dict[str, Any]], Awaitable[None]]

#: Event types stored without waiting for their commit (progress reports).
PROGRESS_EVENTS: Final = frozenset({RUN_STARTED, STEP, SUBAGENT_STARTED, SUBAGENT_PROGRESS})

#: Seconds past its time limit a run is stopped wherever it is (the loop's own time budget
#: ends it between steps; this ends a tool that ignores its timeout, a stream that hangs).
HARD_LIMIT_GRACE: Final = 5.0


def usage_record(usage: Usage | None) -> dict[str, Any] | None:
    """Token counts as runs store them (the run's ``usage``, swarm metrics, sub-agent
    outcomes): ``prompt_tokens``, ``completion_tokens``, ``reasoning_tokens``."""
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens}


class RunCancelled(ModeError):
    """The run a client was waiting for was cancelled by someone else (``DELETE
    /v1/runs/{id}``): the client is told so in its API's shape (409 ``run_cancelled``)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was cancelled before it finished (DELETE "
                         f"/v1/runs/{run_id})", status=409, code="run_cancelled")
        self.run_id = run_id


class AgentRun:
    """One persisted run of an agent loop; see the module docstring."""

    def __init__(self, store: RunStore, record: RunRecord, workspaces: Path, *,
                 observer: Observer | None = None) -> None:
        self.store = store
        self.record = record
        self.workspace = workspaces / record.id
        #: The context the run's tools share (its workspace, resources closed at the end).
        self.ctx = RunContext(record.id, self.workspace)
        self._observer = observer
        #: Steps begun and tool calls made so far (counted from the emitted events).
        self.steps = 0
        self.tool_calls = 0
        #: What the loop returned; ``None`` until it did (and if it never did).
        self.result: AgentResult | None = None
        #: How the run ended, once it did (see the module docstring).
        self.status: str = FAILED
        self.stop_reason: str | None = "error"
        self.error: str | None = None
        self._finished = False

    @property
    def id(self) -> str:
        return self.record.id

    async def start(self) -> None:
        """Make the run's workspace and report ``run_started`` (the run is now running)."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        await self.emit(RUN_STARTED, {"workspace": str(self.workspace)})

    async def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Report one event of the run (see the module docstring); raises
        :class:`ValueError` for a type outside the vocabulary."""
        check_emitted(kind)
        await self.store.emit(self.id, kind, data, wait=kind not in PROGRESS_EVENTS)
        if kind == STEP:
            self.steps += 1
        elif kind == TOOL_CALL:
            self.tool_calls += 1
        if self._observer is not None:
            await self._observer(kind, data)

    async def execute(self, loop: AgentLoop, *, time_limit: float | None = None
                      ) -> AgentResult:
        """Run ``loop`` on the run's messages and record how it ended; whatever ended it
        (cancellation, the hard limit ``time_limit`` + :data:`HARD_LIMIT_GRACE` seconds as a
        :class:`TimeoutError`, a failure) is re-raised after being recorded."""
        hard = None if time_limit is None else time_limit + HARD_LIMIT_GRACE
        try:
            async with asyncio.timeout(hard):
                result = await loop.run(self.record.messages)
        except BaseException as exc:
            self.ended_by(exc, time_limit=time_limit)
            raise
        self.result = result
        self.status, self.stop_reason = COMPLETED, result.stop_reason
        return result

    def ended_by(self, exc: BaseException, *, time_limit: float | None = None) -> None:
        """Record that ``exc`` ended the run (also before its loop began: cancelled while
        queued, say)."""
        if isinstance(exc, asyncio.CancelledError):
            self.status, self.stop_reason = CANCELLED, CANCELLED
        elif isinstance(exc, TimeoutError):
            self.status, self.stop_reason = FAILED, "max_time"
            within = f" within {time_limit:g} s" if time_limit is not None else ""
            self.error = f"the run did not finish{within}"
        else:
            self.status, self.stop_reason = FAILED, "error"
            self.error = str(exc) or type(exc).__name__

    @property
    def usage(self) -> Usage | None:
        """The loop's token counts (``None`` if it did not return)."""
        return self.result.usage if self.result is not None else None

    async def finish(self, metrics: Mapping[str, Any] | None = None) -> None:
        """Close the run's tools (killing sandboxed processes) and store its end with
        ``metrics``. Shielded from cancellation of the caller, since a run must never stay
        open; idempotent."""
        if self._finished:
            return
        self._finished = True
        final = self.result.final if self.result is not None else None

        async def finish() -> None:
            await self.ctx.aclose()
            await self.store.finish(self.id, self.status, self.stop_reason, final,
                                    usage_record(self.usage), error=self.error,
                                    metrics=metrics)

        task = asyncio.ensure_future(finish())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
        if not task.done():
            await task
