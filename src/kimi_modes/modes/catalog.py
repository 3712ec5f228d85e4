"""The four modes, the model ids that name them, and how a request picks one.

A request names a mode by its model id (``kimi-k2.5-instant``, ``kimi-k2.5-thinking``,
``kimi-k2.5-agent``, ``kimi-k2.5-swarm``); the thinking switch can also be flipped per
request. Each wire format decodes its own switch fields (server/); :func:`resolve_mode` takes
the result as a plain ``bool | None``. Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    INSTANT = "instant"
    THINKING = "thinking"
    AGENT = "agent"
    SWARM = "swarm"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One id listed by ``/v1/models``."""

    id: str
    mode: Mode
    description: str


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("kimi-k2.5-instant", Mode.INSTANT, "Kimi K2.5, thinking off: fast answers."),
    ModelEntry("kimi-k2.5-thinking", Mode.THINKING, "Kimi K2.5, thinking on: reasons first."),
    ModelEntry(
        "kimi-k2.5-agent",
        Mode.AGENT,
        "Kimi K2.5 in a tool loop with sandboxed code, files, web and MCP tools.",
    ),
    ModelEntry(
        "kimi-k2.5-swarm",
        Mode.SWARM,
        "An orchestrator fanning out to up to 100 parallel sub-agents, each an agent run.",
    ),
)

#: Other names clients commonly send, mapped to a listed id.
ALIASES: dict[str, str] = {
    "kimi-k2.5": "kimi-k2.5-thinking",
    "kimi-k2.5-instruct": "kimi-k2.5-instant",
}

_BY_ID = {m.id: m for m in MODELS}


class ModeError(ValueError):
    """A request asked for a mode or switch that cannot be honoured.

    ``status`` is the HTTP status to answer with, ``param`` the offending field.
    """

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Resolved:
    """The outcome of :func:`resolve_mode`: which entry was asked for and the switch."""

    entry: ModelEntry
    thinking: bool

    @property
    def mode(self) -> Mode:
        """Instant or Thinking after the per-request switch (Agent/Swarm as named)."""
        if self.entry.mode in (Mode.INSTANT, Mode.THINKING):
            return Mode.THINKING if self.thinking else Mode.INSTANT
        return self.entry.mode


def lookup_model(model: Any) -> ModelEntry:
    """The entry for a model id (aliases accepted); :class:`ModeError` 404 otherwise."""
    if not isinstance(model, str) or not model:
        raise ModeError("'model' is required: one of " + ", ".join(_BY_ID), param="model")
    entry = _BY_ID.get(ALIASES.get(model, model))
    if entry is None:
        raise ModeError(
            f"The model {model!r} does not exist. Use one of: {', '.join(_BY_ID)}.",
            status=404,
            param="model",
            code="model_not_found",
        )
    return entry


def resolve_mode(model: Any, thinking: bool | None = None) -> Resolved:
    """Pick the mode for a request: the model id's mode, with the thinking switch the wire
    format decoded from the request (``None``: the model id's default, on for every mode but
    Instant). An unknown model id raises :class:`ModeError` (404 ``model_not_found``)."""
    entry = lookup_model(model)
    return Resolved(entry, entry.mode != Mode.INSTANT if thinking is None else thinking)
