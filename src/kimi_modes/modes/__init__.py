"""Modes: Instant, Thinking, Agent and Swarm on top of the engines (every mode is an engine)."""

from kimi_modes.modes.catalog import MODELS, Mode, ModeError, ModelEntry, Resolved, resolve_mode
from kimi_modes.modes.chat import ChatModes, ChatParams, ModeDefaults
from kimi_modes.modes.memory import ReasoningMemory

__all__ = [
    "MODELS",
    "ChatModes",
    "ChatParams",
    "Mode",
    "ModeDefaults",
    "ModeError",
    "ModelEntry",
    "ReasoningMemory",
    "Resolved",
    "resolve_mode",
]
