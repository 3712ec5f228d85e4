"""The data of ``kimi-modes bench agents``: what is benchmarked (:class:`Target`) and what one
task run gave (:class:`TaskRun`); the figures are explained in :mod:`kimi_modes.bench.agents.run`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The gateway's model id for each mode.
MODE_MODELS = {"agent": "kimi-k2.5-agent", "swarm": "kimi-k2.5-swarm"}


@dataclass(frozen=True, slots=True)
class Target:
    """What a task is sent to: ``model``, benchmarked as ``mode`` (``agent`` or ``swarm``:
    which tasks it gets and how its figures are read)."""

    mode: str
    model: str

    @property
    def label(self) -> str:
        """``agent``, or ``agent (model)`` when the model is not the mode's own id."""
        return self.mode if MODE_MODELS.get(self.mode) == self.model \
            else f"{self.mode} ({self.model})"


@dataclass(slots=True)
class TaskRun:
    """One task sent once to one target, and what came of it (see the module docstring for
    the figures; ``None`` where the endpoint did not say)."""

    task: str
    mode: str
    model: str
    repeat: int
    success: bool = False
    check: str = ""
    error: str | None = None
    answer: str = ""
    wall_time: float = 0.0
    response_id: str | None = None
    finish_reason: str | None = None
    metrics_source: str = "response"
    run_id: str | None = None
    status: str | None = None
    stop_reason: str | None = None
    run_time: float | None = None
    steps: int | None = None
    critical_steps: int | None = None
    total_steps: int | None = None
    tool_calls: int | None = None
    subagents: int | None = None
    subagents_failed: int | None = None
    parallelism: float | None = None
    tokens: dict[str, int] | None = None
    subagent_runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
