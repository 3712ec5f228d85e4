"""Modes: Instant, Thinking, Agent and Swarm on top of the engines (every mode is an engine).

:class:`Catalog` lists the served model ids and turns a model id and the thinking switch a
wire format decoded into a model and mode (:meth:`Catalog.resolve`); :class:`Router` picks
the engine for it; :class:`ModeOptions` are the
per-request Agent and Swarm options every API accepts.
"""

from kimi_modes.modes.catalog import Catalog, Mode, ModeError, ModelEntry, Resolved, model_id
from kimi_modes.modes.chat import ChatMode, ModeDefaults
from kimi_modes.modes.memory import ReasoningMemory
from kimi_modes.modes.options import NO_OPTIONS, AgentOptions, ModeOptions, SwarmOptions
from kimi_modes.modes.router import Router

__all__ = [
    "NO_OPTIONS",
    "AgentOptions",
    "Catalog",
    "ChatMode",
    "Mode",
    "ModeDefaults",
    "ModeError",
    "ModeOptions",
    "ModelEntry",
    "ReasoningMemory",
    "Resolved",
    "Router",
    "SwarmOptions",
    "model_id",
]
