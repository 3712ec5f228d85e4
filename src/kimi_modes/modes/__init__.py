"""Modes: Instant, Thinking, Agent and Swarm on top of the engines (every mode is an engine).

:class:`Router` picks the engine for a request's mode; :func:`resolve_mode` turns a model id
and the thinking switch a wire format decoded into a mode; :class:`ModeOptions` are the
per-request Agent and Swarm options every API accepts.
"""

from kimi_modes.modes.catalog import MODELS, Mode, ModeError, ModelEntry, Resolved, resolve_mode
from kimi_modes.modes.chat import ChatMode, ModeDefaults
from kimi_modes.modes.memory import ReasoningMemory
from kimi_modes.modes.options import NO_OPTIONS, AgentOptions, ModeOptions, SwarmOptions
from kimi_modes.modes.router import Router

__all__ = [
    "MODELS",
    "NO_OPTIONS",
    "AgentOptions",
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
    "resolve_mode",
]
