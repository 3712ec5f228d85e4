"""What a run is: its status vocabulary, the records the store returns, and the step view.

:class:`RunSummary` is a row of ``GET /v1/runs``; :class:`RunRecord` adds what the run was
given and what it answered. :func:`assemble_steps` turns a run's event log into the per-step
view of ``GET /v1/runs/{id}`` (reasoning, text, tool calls with their results and timings).
Everything here is pure data; nothing does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol


class _Event(Protocol):
    """What :func:`assemble_steps` reads of an event (a :class:`~kimi_modes.runs.events.
    RunEvent`; structural, so this module does not import the events module that imports
    it)."""

    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> float: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...

#: Created, not started yet (a sub-agent waiting for capacity, or before ``run_started``).
QUEUED: Final = "queued"
#: ``run_started`` was emitted; the run is working.
RUNNING: Final = "running"
#: The run ended on its own terms: an answer, client tool calls, or a budget (see
#: ``stop_reason``).
COMPLETED: Final = "completed"
#: The run ended on an error (``error`` says which).
FAILED: Final = "failed"
#: Someone cancelled the run (``DELETE /v1/runs/{id}``, a client disconnect, a parent run).
CANCELLED: Final = "cancelled"
#: The gateway stopped (or crashed) while the run was queued or running.
INTERRUPTED: Final = "interrupted"

STATUSES: Final = frozenset({QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, INTERRUPTED})
ACTIVE_STATUSES: Final = frozenset({QUEUED, RUNNING})
TERMINAL_STATUSES: Final = STATUSES - ACTIVE_STATUSES

#: The stop reasons the agent loop reports; ``stop_reason`` is free text, these are the
#: values clients can expect (``client_tools`` and ``context`` come from the loop too).
STOP_REASONS: Final = (
    "answer",
    "client_tools",
    "max_steps",
    "max_tokens",
    "max_time",
    "context",
    "cancelled",
    "error",
    "interrupted",
)

_PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """One run without its messages and final message: what a listing shows.

    Times are Unix seconds (floats); ``started_at`` is set by the ``run_started`` event,
    ``finished_at`` by :meth:`RunStore.finish` (or by the store marking the run interrupted).
    ``task`` is the start of the last user message (at most 200 characters). ``step_count``
    and ``tool_call_count`` count the ``step`` and ``tool_call`` events persisted so far.
    ``last_seq`` is the seq of the run's latest persisted event (0: none yet). ``owner`` is
    who the run belongs to (the gateway's id of the API key that started it, inherited by
    sub-agents); ``None`` when nobody does (no keys configured, a terminal run, or a run
    stored before owners were recorded).
    """

    id: str
    mode: str
    model: str
    status: str
    stop_reason: str | None
    error: str | None
    parent_id: str | None
    task: str
    usage: dict[str, Any] | None
    metrics: dict[str, Any]
    step_count: int
    tool_call_count: int
    last_seq: int
    created_at: float
    started_at: float | None
    updated_at: float
    finished_at: float | None
    owner: str | None = None

    @property
    def finished(self) -> bool:
        """True when the status is terminal (nothing will change the run any more)."""
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (the field names above)."""
        return {name: getattr(self, name) for name in _SUMMARY_FIELDS}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord(RunSummary):
    """A whole run: the summary plus its ``messages`` (the task as given), ``params`` (the
    mode's settings: budgets, thinking, tools...), and ``final`` (what the run ended with:
    usually the last assistant message, a dict; ``None`` before it finishes)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    final: Any = None

    @property
    def final_answer(self) -> str | None:
        """The text of the final answer: ``final["content"]`` when it is a message, the string
        itself when ``final`` is one, else ``None``."""
        return final_text(self.final)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data: the summary's fields, ``messages``, ``params``,
        ``final`` and ``final_answer``."""
        data = {name: getattr(self, name) for name in _SUMMARY_FIELDS}
        data.update(
            messages=self.messages,
            params=self.params,
            final=self.final,
            final_answer=self.final_answer,
        )
        return data


_SUMMARY_FIELDS: Final = tuple(RunSummary.__dataclass_fields__)


def final_text(final: Any) -> str | None:
    """The answer text of a ``final`` value (a message dict or a string)."""
    if isinstance(final, str):
        return final
    if isinstance(final, Mapping):
        content = final.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):  # content parts: join the text ones
            texts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
            return "".join(t for t in texts if isinstance(t, str))
    return None


def task_preview(messages: Iterable[Mapping[str, Any]]) -> str:
    """The start of the last user message's text, for listings (at most 200 characters)."""
    text = ""
    for message in messages:
        if message.get("role") == "user":
            text = final_text(message) or ""
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def assemble_steps(events: Iterable[_Event]) -> list[dict[str, Any]]:
    """The run's steps, built from its events (in seq order).

    Each step is ``{"step", "started_at", "reasoning", "content", "tool_calls",
    "compactions"}``; each tool call is ``{"id", "name", "arguments", "client",
    "started_at", "result"}`` where ``result`` is ``None`` until its ``tool_result`` arrives,
    then ``{"output", "is_error", "duration", "meta", "finished_at"}`` (plus
    ``output_truncated`` / ``output_chars`` when the store shortened the output). Calls keep
    the order the model made them in. Events that belong to no step are ignored.
    """
    steps: dict[int, dict[str, Any]] = {}
    calls: dict[tuple[int, str], dict[str, Any]] = {}
    latest_call: dict[str, dict[str, Any]] = {}

    def step_of(number: Any, time: float) -> dict[str, Any] | None:
        if not isinstance(number, int):
            return None
        if number not in steps:
            steps[number] = {
                "step": number,
                "started_at": time,
                "reasoning": "",
                "content": "",
                "tool_calls": [],
                "compactions": [],
            }
        return steps[number]

    for event in events:
        data = event.data
        step = step_of(data.get("step"), event.time)
        if event.type == "step" or (step is None and event.type != "tool_result"):
            continue
        if event.type == "message_delta" and step is not None:
            key = "reasoning" if data.get("kind") == "reasoning" else "content"
            step[key] += str(data.get("text", ""))
        elif event.type == "tool_call" and step is not None:
            call = {
                "id": data.get("id"),
                "name": data.get("name"),
                "arguments": data.get("arguments"),
                "client": bool(data.get("client", False)),
                "started_at": event.time,
                "result": None,
            }
            step["tool_calls"].append(call)
            calls[(step["step"], str(data.get("id")))] = call
            latest_call[str(data.get("id"))] = call
        elif event.type == "tool_result":
            call_id = str(data.get("id"))
            found = calls.get((step["step"], call_id)) if step is not None else None
            found = found or latest_call.get(call_id)
            if found is None:
                continue
            result = {
                "output": data.get("output"),
                "is_error": bool(data.get("is_error", False)),
                "duration": data.get("duration"),
                "meta": data.get("meta") or {},
                "finished_at": event.time,
            }
            for extra in ("output_truncated", "output_chars"):
                if extra in data:
                    result[extra] = data[extra]
            found["result"] = result
        elif event.type == "compaction" and step is not None:
            step["compactions"].append(
                {k: v for k, v in data.items() if k != "step"} | {"time": event.time}
            )
    return [steps[number] for number in sorted(steps)]
