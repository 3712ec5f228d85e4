"""Injected faults: what can go wrong with one request, and how one is chosen.

A fault is an HTTP error status (500, 429, 503) answered at once, a stream ``cut`` (the
connection is closed mid-answer, with no ``[DONE]``), or a ``hang`` (the request is accepted
and never answered). One request gets at most one fault, chosen in this order: the
``x-sim-fault`` header, the matching script rule's ``fault``, then the random rates of the
current :class:`~kimi_modes.simulator.config.Settings`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kimi_modes.simulator.config import Settings

FAULT_HEADER = "x-sim-fault"
FAIL_STATUSES = (500, 429, 503)


@dataclass(slots=True, frozen=True)
class Fault:
    """``kind`` is ``status``, ``cut`` or ``hang``. ``status`` is the HTTP status of a
    ``status`` fault; ``cut_after`` is the number of tokens sent before a cut (``None``:
    half of the answer)."""

    kind: Literal["status", "cut", "hang"]
    status: int = 0
    cut_after: int | None = None


def parse_fault(text: str) -> Fault:
    """Read ``500``, ``429``, ``503``, ``cut``, ``cut:N`` or ``hang``; else :class:`ValueError`."""
    value = text.strip().lower()
    if value == "hang":
        return Fault("hang")
    if value == "cut":
        return Fault("cut")
    if value.startswith("cut:") and value[4:].isdigit():
        return Fault("cut", cut_after=int(value[4:]))
    if value.isdigit() and int(value) in FAIL_STATUSES:
        return Fault("status", status=int(value))
    raise ValueError(f"unknown fault {text!r}: use 500, 429, 503, cut, cut:N or hang")


def draw_fault(settings: Settings, rng: random.Random) -> Fault | None:
    """A fault drawn from the configured rates, or ``None``. Draws nothing when all are 0."""
    if settings.fail_rate and rng.random() < settings.fail_rate:
        return Fault("status", status=settings.fail_status)
    if settings.hang_rate and rng.random() < settings.hang_rate:
        return Fault("hang")
    if settings.cut_rate and rng.random() < settings.cut_rate:
        return Fault("cut")
    return None
