"""Persisted, watchable, cancellable runs: Agent and Swarm runs, and each swarm's sub-agents.

A run is stored with its task (the messages), the mode's parameters, every event it emits
(steps, streamed text, tool calls with arguments, results and timings, compactions), its token
usage, final answer, status and stop reason. Watchers replay a run's events and follow it
live; ``GET /v1/runs/...`` (:mod:`kimi_modes.server.runs_api`) serves the same over HTTP.

    >>> import asyncio, tempfile, pathlib
    >>> from kimi_modes.runs import RunStore
    >>> async def demo(path):
    ...     async with RunStore(path) as store:
    ...         run = await store.create_run("agent", "kimi-k2.5-agent",
    ...                                      [{"role": "user", "content": "2+2?"}])
    ...         await store.emit(run.id, "run_started", {})
    ...         await store.emit(run.id, "step", {"step": 1})
    ...         await store.emit(run.id, "message_delta",
    ...                          {"step": 1, "kind": "content", "text": "4"})
    ...         await store.finish(run.id, "completed", "answer",
    ...                            {"role": "assistant", "content": "4"})
    ...         record = await store.get(run.id)
    ...         events = await store.events(run.id)
    ...         return record.status, record.final_answer, [e.type for e in events]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     asyncio.run(demo(pathlib.Path(tmp) / "runs.sqlite3"))
    ('completed', '4', ['run_started', 'step', 'message_delta', 'finished'])
"""

from kimi_modes.runs.errors import RunNotFound, RunStoreClosed, RunStoreError
from kimi_modes.runs.events import (
    EVENT_TYPES,
    CompactionEvent,
    FinishedEvent,
    LiveBroker,
    MessageDeltaEvent,
    RunEvent,
    RunStartedEvent,
    StepEvent,
    Subscription,
    ToolCallEvent,
    ToolResultEvent,
)
from kimi_modes.runs.live import CancelCallback
from kimi_modes.runs.memories import Memories
from kimi_modes.runs.records import (
    ACTIVE_STATUSES,
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STATUSES,
    STOP_REASONS,
    TERMINAL_STATUSES,
    RunRecord,
    RunSummary,
    assemble_steps,
)
from kimi_modes.runs.store import RunStore

__all__ = [
    "ACTIVE_STATUSES",
    "CANCELLED",
    "COMPLETED",
    "EVENT_TYPES",
    "FAILED",
    "INTERRUPTED",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "STOP_REASONS",
    "TERMINAL_STATUSES",
    "CancelCallback",
    "CompactionEvent",
    "FinishedEvent",
    "LiveBroker",
    "Memories",
    "MessageDeltaEvent",
    "RunEvent",
    "RunNotFound",
    "RunRecord",
    "RunStartedEvent",
    "RunStore",
    "RunStoreClosed",
    "RunStoreError",
    "RunSummary",
    "StepEvent",
    "Subscription",
    "ToolCallEvent",
    "ToolResultEvent",
    "assemble_steps",
]
