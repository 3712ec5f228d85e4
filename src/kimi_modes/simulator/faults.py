"""Injected faults: what can go wrong with one request, and how one is chosen.

A fault is an HTTP error status (500, 429, 503) answered at once, a stream ``cut`` (the
connection is closed mid-answer, with no ``[DONE]``), or a ``hang`` (the request is accepted
and never answered). One request gets at most one fault, chosen in this order: the
``x-sim-fault`` header, the matching script rule's ``fault``, then the random rates of the
current :class:`~kimi_modes.simulator.config.Settings`
(:func:`~kimi_modes.simulator.config.draw_fault`, beside the rates it reads, so that this
module imports nothing of the simulator's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
