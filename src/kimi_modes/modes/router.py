"""Which engine serves a request: the one place that knows the four modes.

Every mode is an :class:`~kimi_modes.engines.base.Engine`: Instant and Thinking are a
:class:`~kimi_modes.modes.chat.ChatMode` over an upstream serving the requested model, Agent
and Swarm their services (:mod:`kimi_modes.modes.agent`, :mod:`kimi_modes.modes.swarm`) bound
to the request's :class:`~kimi_modes.modes.options.ModeOptions`. :meth:`Router.route` fills
in the mode's sampling defaults and the thinking switch, so the server only calls
``engine.stream()``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import replace
from typing import Any, Protocol

from kimi_modes.engines.base import ChatRequest, Engine, Event
from kimi_modes.modes.agent.service import AgentService
from kimi_modes.modes.catalog import Catalog, Mode, ModeError, Resolved
from kimi_modes.modes.chat import ChatMode, ModeDefaults, marked
from kimi_modes.modes.memory import ReasoningMemory
from kimi_modes.modes.options import NO_OPTIONS, ModeOptions
from kimi_modes.modes.session import conversation_session_id
from kimi_modes.modes.swarm.service import SwarmService
from kimi_modes.protocol.families import Family, family_info

_NO_DEFAULTS = ModeDefaults(None, None)


class ModeEngine(Protocol):
    """What :meth:`Router.route` hands out: an engine whose stream is an async generator (the
    server closes it the moment the client leaves)."""

    name: str

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]: ...


class Router:
    """The modes of every model in ``catalog`` over ``engines`` (upstream name → engine).

    Instant and Thinking of a model run on the upstream its mode names in ``defaults``
    (``[modes.<mode>] upstream``) when that upstream serves the model's family, else on the
    first upstream that does. ``agents`` and ``swarms`` hold the Agent and Swarm services per
    family (empty when this process runs without a run store)."""

    def __init__(self, catalog: Catalog, engines: Mapping[str, Engine],
                 defaults: Mapping[Mode, ModeDefaults], *, memory: ReasoningMemory | None = None,
                 agents: Mapping[Family, AgentService] | None = None,
                 swarms: Mapping[Family, SwarmService] | None = None) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        missing = [n for names in catalog.upstreams.values() for n in names if n not in engines]
        if missing:
            raise ValueError(f"the catalog names upstreams without an engine: {missing}")
        self.catalog = catalog
        self.engines = dict(engines)
        self.defaults = dict(defaults)
        self.memory = memory if memory is not None else ReasoningMemory()
        self.agents = dict(agents or {})
        self.swarms = dict(swarms or {})
        self._chat = {(family, mode): ChatMode(self.engines[self._upstream(family, mode)],
                                               self.memory)
                      for family in catalog.upstreams for mode in (Mode.INSTANT, Mode.THINKING)}

    @property
    def agent(self) -> AgentService | None:
        """Agent mode of the default model (None without a run store)."""
        return self.agents.get(self.catalog.default)

    @property
    def swarm(self) -> SwarmService | None:
        """Swarm mode of the default model (None without a run store); every model's swarm
        shares its sub-agent workers."""
        return self.swarms.get(self.catalog.default)

    def _upstream(self, family: Family, mode: Mode) -> str:
        serving = self.catalog.upstreams[family]
        wanted = self.defaults.get(mode)
        if wanted is not None and wanted.upstream in serving:
            return wanted.upstream
        return serving[0]

    def upstream_for(self, mode: Mode, family: Family | None = None) -> Engine:
        """The upstream engine that serves Instant or Thinking of ``family`` (default: the
        default model)."""
        return self._chat[(family or self.catalog.default, mode)].engine

    def route(self, resolved: Resolved, request: ChatRequest,
              options: ModeOptions = NO_OPTIONS) -> tuple[ModeEngine, ChatRequest]:
        """The engine for ``resolved``'s model and mode and ``request`` as it goes to it: the
        thinking switch set and the mode's sampling defaults filled in where the client gave
        none: the configured ones, else the model family's recommended values for the mode
        (Agent and Swarm sample like the chat mode their switch selects), the conversation's
        session id and the mode's objective set (for a router upstream). Raises
        :class:`ModeError` for a mode this process cannot run (501) or a request the mode
        refuses (400)."""
        mode = resolved.mode
        family = resolved.family
        sampling_mode = Mode.THINKING if resolved.thinking else Mode.INSTANT
        defaults = self.defaults.get(sampling_mode) or _NO_DEFAULTS
        recommended = family_info(family).default_sampling(resolved.thinking)
        request = replace(
            request,
            thinking=resolved.thinking,
            temperature=_first(request.temperature, defaults.temperature,
                               recommended.temperature),
            top_p=_first(request.top_p, defaults.top_p, recommended.top_p),
            max_tokens=(request.max_tokens if mode in (Mode.AGENT, Mode.SWARM)
                        else _first(request.max_tokens, defaults.max_tokens)),
            session_id=(request.session_id
                        or conversation_session_id(request.owner, request.messages)),
            objective=(self.defaults.get(mode) or _NO_DEFAULTS).objective,
        )
        if mode in (Mode.INSTANT, Mode.THINKING):
            return self._chat[(family, mode)], request
        if request.n > 1 or request.logprobs is not None:
            param = "n" if request.n > 1 else "logprobs"
            chat = [e.id for e in (self.catalog.entry(family, Mode.INSTANT),
                                   self.catalog.entry(family, Mode.THINKING)) if e]
            raise ModeError(
                f"{resolved.entry.id} runs a tool loop: it gives one answer and no token "
                f"logprobs; send '{param}' to {' or '.join(chat) or 'a chat model'}",
                param=param, code="unsupported_parameter")
        service = (self.agents if mode is Mode.AGENT else self.swarms).get(family)
        if service is None:
            chat = [e.id for e in (self.catalog.entry(family, Mode.INSTANT),
                                   self.catalog.entry(family, Mode.THINKING)) if e]
            raise ModeError(
                f"{resolved.entry.id} is not running here (it needs the run store, which "
                f"this process did not open); use {' or '.join(chat)}",
                status=501, param="model", code="mode_not_available")
        if mode is Mode.SWARM and request.tools:
            agent = self.catalog.entry(family, Mode.AGENT)
            raise ModeError(
                f"{resolved.entry.id} runs its own tools and cannot call the client's; send "
                f"tools to {agent.id if agent else 'an agent model'} instead", param="tools")
        return _Bound(service, options), request

    async def aclose(self) -> None:
        """Close the services, then every engine."""
        for swarm in self.swarms.values():
            await swarm.aclose()
        for agent in self.agents.values():
            await agent.aclose()
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
