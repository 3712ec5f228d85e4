"""What a swarm run measures: each sub-agent's outcome and the run's figures.

Pure data and arithmetic; no I/O. The figures (docs/swarm.md explains them):

- ``critical_steps``: per stage (one orchestrator step), 1 for the orchestrator's own step plus
  the most steps any sub-agent started in that step took; summed over stages. This is the
  latency measure of kimi-protocol.md §7: what a run costs when sub-agents truly run at once.
- ``total_steps``: orchestrator steps plus every sub-agent's steps (the work done).
- ``parallelism``: the sum of the sub-agents' running times over the run's wall time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_ANSWER_PREVIEW = 500
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


@dataclass(slots=True)
class SubagentOutcome:
    """How one sub-agent run ended. Times are Unix seconds (``started_at`` is ``None`` when
    it never left the queue). ``stage`` is the orchestrator step that started it;
    ``agent_id`` the id the sub-agent keeps over its continuations (its first run's id: this
    run's ``id`` unless it continues another, ``resumed_from``); ``item`` the AgentSwarm item
    it was launched for, if any."""

    id: str
    index: int
    task: str
    stage: int
    status: str = "queued"
    stop_reason: str | None = None
    steps: int = 0
    tool_calls: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    answer: str | None = None
    error: str | None = None
    agent_id: str = ""
    item: str | None = None
    resumed_from: str | None = None

    def __post_init__(self) -> None:
        if not self.agent_id:
            self.agent_id = self.id

    @property
    def duration(self) -> float:
        """Seconds it ran (0 if it never started)."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return max(0.0, self.finished_at - self.started_at)

    def finished_event(self) -> dict[str, Any]:
        """The ``subagent_finished`` event's fields."""
        answer = self.answer
        if answer is not None and len(answer) > _ANSWER_PREVIEW:
            answer = answer[:_ANSWER_PREVIEW] + " …"
        return {"id": self.id, "index": self.index, "status": self.status,
                "stop_reason": self.stop_reason, "steps": self.steps,
                "tool_calls": self.tool_calls, "started_at": self.started_at,
                "finished_at": self.finished_at, "duration": round(self.duration, 4),
                "usage": dict(self.usage), "answer": answer, "error": self.error}


def add_usage(total: dict[str, int], usage: Mapping[str, Any] | None) -> dict[str, int]:
    """``total`` with ``usage``'s token counts added (missing counts as 0); returns total."""
    for key in _USAGE_KEYS:
        value = (usage or {}).get(key)
        total[key] = total.get(key, 0) + (value if isinstance(value, int) else 0)
    return total


def swarm_metrics(
    *,
    wall_time: float,
    orchestrator_steps: int,
    orchestrator_tool_calls: int,
    orchestrator_usage: Mapping[str, Any] | None,
    outcomes: Sequence[SubagentOutcome],
) -> dict[str, Any]:
    """The run's figures (the ``swarm_metrics`` event and the run's ``metrics``)."""
    by_stage: dict[int, list[SubagentOutcome]] = {}
    for outcome in outcomes:
        by_stage.setdefault(outcome.stage, []).append(outcome)
    stages = []
    critical = 0
    last = max([orchestrator_steps, *by_stage])
    for step in range(1, last + 1):
        group = by_stage.get(step, [])
        longest = max((o.steps for o in group), default=0)
        critical += 1 + longest
        if group:
            stages.append({"step": step, "subagents": len(group),
                           "max_subagent_steps": longest, "critical": 1 + longest})
    busy = sum(o.duration for o in outcomes)
    sub_usage: dict[str, int] = {}
    for outcome in outcomes:
        add_usage(sub_usage, outcome.usage)
    orch_usage = add_usage({}, orchestrator_usage)
    return {
        "wall_time": round(wall_time, 4),
        "critical_steps": critical,
        "total_steps": orchestrator_steps + sum(o.steps for o in outcomes),
        "orchestrator_steps": orchestrator_steps,
        "tool_calls": orchestrator_tool_calls + sum(o.tool_calls for o in outcomes),
        "subagents": len(outcomes),
        "subagents_failed": sum(o.status != "completed" for o in outcomes),
        "parallelism": round(busy / wall_time, 3) if wall_time > 0 else 0.0,
        "subagent_time": round(busy, 4),
        "stages": stages,
        "tokens": {"orchestrator": orch_usage, "subagents": sub_usage,
                   "total": add_usage(dict(orch_usage), sub_usage)},
    }
