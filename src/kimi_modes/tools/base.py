"""The tool seam: what a tool is, what it returns, and the per-run context it runs in.

Every tool the agent loop can run on the server (built-in or MCP) implements :class:`Tool`.
A tool never raises for a user-level failure (bad path, non-zero exit, HTTP 404): it returns a
:class:`ToolResult` with ``is_error=True`` and a message the model can act on. Exceptions that
do escape are turned into such a result by :class:`~kimi_modes.tools.toolset.Toolset`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gives back.

    ``output`` is the text the model sees (already truncated to the tool's limit);
    ``is_error`` marks a failure the model should react to; ``meta`` holds structured facts
    for the run record and events (exit code, duration, bytes, whether output was truncated).
    """

    output: str
    is_error: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Per-run state shared by the tools of one agent run.

    ``workspace`` is the run's only writable directory. Tools keep per-run resources (a live
    sandboxed interpreter, say) in ``resources`` and register how to release them with
    :meth:`on_close`; :meth:`aclose` runs those callbacks in reverse order and never raises.
    """

    run_id: str
    workspace: Path
    resources: dict[str, Any] = field(default_factory=dict)
    #: The run's current step (set by the agent loop as each step starts; 0 before the first).
    step: int = 0
    _cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._cleanups.append(callback)

    async def aclose(self) -> None:
        while self._cleanups:
            callback = self._cleanups.pop()
            with contextlib.suppress(Exception):
                await callback()


@runtime_checkable
class Tool(Protocol):
    """A tool the server runs. ``name`` matches ``^[A-Za-z0-9_-]{1,64}$``; ``parameters`` is
    a JSON Schema object; ``timeout`` (seconds) bounds one call, ``None`` for the default."""

    name: str
    description: str
    parameters: dict[str, Any]
    timeout: float | None

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        """Run one call with already-validated ``arguments``."""
        ...


@runtime_checkable
class Repairable(Protocol):
    """An optional capability of a :class:`Tool`: with ``repairable`` true, a call whose
    arguments fail validation gets one repair round from the toolset's repairer (see
    :mod:`kimi_modes.tools.toolset`). The swarm's fan-out tool declares it."""

    repairable: bool


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, keeping the head and the tail, with a marker
    saying how much was left out; and whether it was cut."""
    if len(text) <= limit:
        return text, False
    head = limit * 2 // 3
    tail = limit - head
    dropped = len(text) - head - tail
    return f"{text[:head]}\n[... {dropped} characters truncated ...]\n{text[-tail:]}", True
