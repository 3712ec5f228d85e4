"""Engines: one async streaming interface over every way of running Kimi.

See :mod:`kimi_modes.engines.base` for the contract.
"""

from kimi_modes.engines.base import (
    ChatRequest,
    Engine,
    EngineError,
    Event,
    Finish,
    InvalidToolCall,
    Snapshotting,
    Startable,
    TokenCounting,
    UpstreamFailed,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    Usage,
)

__all__ = [
    "ChatRequest",
    "Engine",
    "EngineError",
    "Event",
    "Finish",
    "InvalidToolCall",
    "Snapshotting",
    "Startable",
    "TokenCounting",
    "UpstreamFailed",
    "UpstreamOverloaded",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "Usage",
]
