"""The simulated engine's configuration: what is fixed at start and what ``/sim/control`` changes.

:class:`SimConfig` is fixed for the life of the process (model, family, output shape, script).
:class:`Settings` holds what a test or a benchmark may change at run time: latencies, capacity
and fault rates. Both validate themselves; a bad value raises :class:`ValueError` with a
message fit for a CLI error or a 400 answer.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from kimi_modes.protocol.families import Family, family_info, resolve_family
from kimi_modes.simulator.checks import SAMPLING_POLICIES
from kimi_modes.simulator.faults import FAIL_STATUSES, Fault
from kimi_modes.simulator.script import Script

REASONING_FIELDS = ("reasoning", "reasoning_content", "both")


@dataclass(slots=True, frozen=True)
class Settings:
    """Run-time knobs. Times are in seconds; rates are probabilities per request."""

    ttft: float = 0.2
    tpot: float = 0.02
    jitter: float = 0.0
    tokens_per_chunk: int = 1
    max_num_seqs: int = 256
    fail_rate: float = 0.0
    fail_status: int = 500
    cut_rate: float = 0.0
    hang_rate: float = 0.0
    retry_after: float | None = None
    down: bool = False

    def __post_init__(self) -> None:
        for name in ("ttft", "tpot"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        for name in ("fail_rate", "cut_rate", "hang_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.fail_status not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {FAIL_STATUSES}")
        if self.tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be >= 1")
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")

    def updated(self, changes: dict[str, Any]) -> Settings:
        """A validated copy with ``changes`` applied; unknown names raise :class:`ValueError`."""
        known = {f.name: f.type for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        values = dataclasses.asdict(self)
        for name, value in changes.items():
            values[name] = _coerce(name, value, getattr(self, name))
        return Settings(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def draw_fault(settings: Settings, rng: random.Random) -> Fault | None:
    """A fault drawn from the configured rates, or ``None``. Draws nothing when all are 0."""
    if settings.fail_rate and rng.random() < settings.fail_rate:
        return Fault("status", status=settings.fail_status)
    if settings.hang_rate and rng.random() < settings.hang_rate:
        return Fault("hang")
    if settings.cut_rate and rng.random() < settings.cut_rate:
        return Fault("cut")
    return None


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name == "retry_after" and value is None:
        return None
    if isinstance(current, bool) or name == "down":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name in ("tokens_per_chunk", "max_num_seqs", "fail_status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


@dataclass(slots=True, frozen=True)
class SimConfig:
    """Everything fixed at start. ``family`` is any of :class:`~kimi_modes.protocol.Family`;
    ``max_model_len`` defaults to the family's context window. ``sampling``: ``open`` takes
    any sampling value (as vLLM does), ``official`` refuses what Moonshot's API refuses for
    the family (:func:`~kimi_modes.simulator.checks.check_sampling`)."""

    model: str = "moonshotai/Kimi-K2.5"
    family: str = Family.K2_5
    max_model_len: int = 0
    reasoning_field: str = "reasoning"
    raw_markers: bool = False
    script: Script | None = None
    seed: int = 0
    settings: Settings = field(default_factory=Settings)
    sampling: str = "open"

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", resolve_family(self.family))  # or ValueError
        if self.sampling not in SAMPLING_POLICIES:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING_POLICIES)}")
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(f"reasoning_field must be one of {', '.join(REASONING_FIELDS)}")
        if self.max_model_len < 0:
            raise ValueError("max_model_len must be >= 0")
        if self.max_model_len == 0:
            object.__setattr__(self, "max_model_len", family_info(self.family).context_window)
