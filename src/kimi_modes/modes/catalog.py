"""The four modes, the model ids that name them, and how a request picks one.

A request names a mode by its model id (``kimi-k2.5-instant``, ``kimi-k2.5-thinking``,
``kimi-k2.5-agent``, ``kimi-k2.5-swarm``); the thinking switch can also be flipped per
request with ``chat_template_kwargs.thinking``, ``thinking: {"type": ...}`` or
``reasoning_effort: "none"`` (only "none" is a switch, see :func:`resolve_mode`). Pure; no I/O.
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


def resolve_mode(
    model: Any,
    *,
    chat_template_kwargs: Any = None,
    thinking: Any = None,
    reasoning_effort: Any = None,
) -> Resolved:
    """Pick the mode for a request. The per-request switches, when present, override the
    model id's default; if several are given they must agree.

    The switches: ``chat_template_kwargs.thinking`` (true/false), ``thinking.type``
    (``enabled``/``disabled``) and ``reasoning_effort: "none"`` (off). Other reasoning_effort
    values (``minimal`` … ``high``) are accepted and switch nothing: on kimi-k2.5-instant they
    do not turn thinking on, on kimi-k2.5-thinking it is on anyway.
    """
    entry = lookup_model(model)
    default = entry.mode != Mode.INSTANT
    wanted: list[tuple[str, bool]] = []
    if chat_template_kwargs is not None:
        if not isinstance(chat_template_kwargs, dict):
            raise ModeError(
                "'chat_template_kwargs' must be an object", param="chat_template_kwargs"
            )
        if "thinking" in chat_template_kwargs:
            value = chat_template_kwargs["thinking"]
            if not isinstance(value, bool):
                raise ModeError(
                    "'chat_template_kwargs.thinking' must be true or false",
                    param="chat_template_kwargs.thinking",
                )
            wanted.append(("chat_template_kwargs.thinking", value))
        if "enable_thinking" in chat_template_kwargs:
            raise ModeError(
                "Kimi's template reads 'thinking', not 'enable_thinking': send "
                "chat_template_kwargs.thinking",
                param="chat_template_kwargs.enable_thinking",
            )
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled"):
            raise ModeError(
                "'thinking' must be {\"type\": \"enabled\"} or {\"type\": \"disabled\"}",
                param="thinking",
            )
        wanted.append(("thinking.type", kind == "enabled"))
    if reasoning_effort is not None:
        if reasoning_effort not in ("none", "minimal", "low", "medium", "high"):
            raise ModeError(
                "'reasoning_effort' must be one of none, minimal, low, medium, high",
                param="reasoning_effort",
            )
        # Kimi has one level of thinking, so only "none" is a switch (off). Other levels state
        # no preference: clients that always send "medium" keep the model id's mode, and
        # never get Thinking on kimi-k2.5-instant by accident.
        if reasoning_effort == "none":
            wanted.append(("reasoning_effort", False))
    values = {v for _, v in wanted}
    if len(values) > 1:
        fields = ", ".join(f"{name}={'on' if v else 'off'}" for name, v in wanted)
        raise ModeError(f"the thinking switches disagree: {fields}", param=wanted[0][0])
    return Resolved(entry, values.pop() if values else default)
