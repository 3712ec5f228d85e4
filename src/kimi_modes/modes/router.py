"""Which engine serves a request: the one place that knows the four modes.

Every mode is an :class:`~kimi_modes.engines.base.Engine`: Instant and Thinking are a
:class:`~kimi_modes.modes.chat.ChatMode` over their upstream, Agent and Swarm their services
(:mod:`kimi_modes.modes.agent`, :mod:`kimi_modes.modes.swarm`) bound to the request's
:class:`~kimi_modes.modes.options.ModeOptions`. :meth:`Router.route` fills in the mode's
sampling defaults and the thinking switch, so the server only calls ``engine.stream()``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import replace
from typing import Any, Protocol

from kimi_modes.engines.base import ChatRequest, Engine, Event
from kimi_modes.modes.agent.service import AgentService
from kimi_modes.modes.catalog import Mode, ModeError, Resolved
from kimi_modes.modes.chat import ChatMode, ModeDefaults, marked
from kimi_modes.modes.memory import ReasoningMemory
from kimi_modes.modes.options import NO_OPTIONS, ModeOptions
from kimi_modes.modes.session import conversation_session_id
from kimi_modes.modes.swarm.service import SwarmService

_NO_DEFAULTS = ModeDefaults(None, None)


class ModeEngine(Protocol):
    """What :meth:`Router.route` hands out: an engine whose stream is an async generator (the
    server closes it the moment the client leaves)."""

    name: str

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]: ...


class Router:
    """The modes over ``engines`` (upstream name → engine; the first serves every mode that
    names no upstream). ``agent`` and ``swarm`` are ``None`` when this process runs without a
    run store."""

    def __init__(self, engines: Mapping[str, Engine], defaults: Mapping[Mode, ModeDefaults],
                 *, memory: ReasoningMemory | None = None, agent: AgentService | None = None,
                 swarm: SwarmService | None = None) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self.engines = dict(engines)
        self.defaults = dict(defaults)
        self.memory = memory if memory is not None else ReasoningMemory()
        self.agent = agent
        self.swarm = swarm
        first = next(iter(self.engines))
        self._chat = {mode: ChatMode(self.engines[self._upstream(mode) or first], self.memory)
                      for mode in (Mode.INSTANT, Mode.THINKING)}

    def _upstream(self, mode: Mode) -> str | None:
        wanted = self.defaults.get(mode)
        return wanted.upstream if wanted is not None else None

    def upstream_for(self, mode: Mode) -> Engine:
        """The upstream engine that serves Instant or Thinking."""
        return self._chat[mode].engine

    def route(self, resolved: Resolved, request: ChatRequest,
              options: ModeOptions = NO_OPTIONS) -> tuple[ModeEngine, ChatRequest]:
        """The engine for ``resolved``'s mode and ``request`` as it goes to it: the thinking
        switch set and the mode's sampling defaults filled in where the client gave none
        (Agent and Swarm sample like the chat mode their switch selects), the conversation's
        session id and the mode's objective set (for a router upstream). Raises
        :class:`ModeError` for a mode this process cannot run (501) or a request the mode
        refuses (400)."""
        mode = resolved.mode
        sampling_mode = Mode.THINKING if resolved.thinking else Mode.INSTANT
        defaults = self.defaults.get(sampling_mode) or _NO_DEFAULTS
        request = replace(
            request,
            thinking=resolved.thinking,
            temperature=_first(request.temperature, defaults.temperature),
            top_p=_first(request.top_p, defaults.top_p),
            max_tokens=(request.max_tokens if mode in (Mode.AGENT, Mode.SWARM)
                        else _first(request.max_tokens, defaults.max_tokens)),
            session_id=(request.session_id
                        or conversation_session_id(request.owner, request.messages)),
            objective=(self.defaults.get(mode) or _NO_DEFAULTS).objective,
        )
        if mode in (Mode.INSTANT, Mode.THINKING):
            return self._chat[mode], request
        service = self.agent if mode is Mode.AGENT else self.swarm
        if service is None:
            raise ModeError(
                f"{resolved.entry.id} is not running here (it needs the run store, which "
                "this process did not open); use kimi-k2.5-instant or kimi-k2.5-thinking",
                status=501, param="model", code="mode_not_available")
        if mode is Mode.SWARM and request.tools:
            raise ModeError(
                "kimi-k2.5-swarm runs its own tools and cannot call the client's; send "
                "tools to kimi-k2.5-agent instead", param="tools")
        return _Bound(service, options), request

    async def aclose(self) -> None:
        """Close the services, then every engine."""
        if self.swarm is not None:
            await self.swarm.aclose()
        if self.agent is not None:
            await self.agent.aclose()
        for engine in self.engines.values():
            await engine.aclose()


class _Bound:
    """An Agent or Swarm service with one request's options: an engine for that request
    (its client tool calls marked like a chat's)."""

    def __init__(self, service: AgentService, options: ModeOptions) -> None:
        self.name = service.name
        self._service = service
        self._options = options

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        return marked(self._service.stream(request, self._options), request.tools)

    async def aclose(self) -> None:
        """Nothing: the router owns the service."""


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
