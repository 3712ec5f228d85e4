"""Instant and Thinking: one engine call with the mode's switch and sampling defaults.

:class:`ChatModes` owns the engines by upstream name and the per-mode settings. It turns a
:class:`ChatParams` (what the server read from the HTTP request, in OpenAI's shape) plus a
:class:`~kimi_modes.modes.catalog.Resolved` mode into an engine stream, fills in the model
card's sampling defaults where the client gave none, restores reasoning the client dropped
from tool-call turns, remembers the reasoning of the tool-call answers Instant and Thinking
produce (never Agent's or Swarm's), and marks the tool calls that fail validation
(:class:`~kimi_modes.engines.base.InvalidToolCall`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kimi_modes.engines.base import ChatRequest, Engine, Event, Finish, InvalidToolCall
from kimi_modes.engines.message import MessageBuilder
from kimi_modes.modes.catalog import Mode, ModeError, Resolved
from kimi_modes.modes.memory import ReasoningMemory
from kimi_modes.protocol.output import ParsedOutput
from kimi_modes.protocol.schema import validate_tool_call


@dataclass(slots=True)
class ChatParams:
    """A chat request as the server read it; ``None`` means "not given by the client"."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModeDefaults:
    """Sampling defaults of a mode and the upstream that serves it (``None``: the first)."""

    temperature: float | None
    top_p: float | None
    upstream: str | None = None
    max_tokens: int | None = None


class ChatModes:
    """Runs Instant and Thinking requests on the configured engines."""

    def __init__(
        self,
        engines: Mapping[str, Engine],
        defaults: Mapping[Mode, ModeDefaults],
        *,
        memory: ReasoningMemory | None = None,
        agent: Any = None,
        swarm: Any = None,
    ) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self.engines = dict(engines)
        self.defaults = dict(defaults)
        self.memory = memory if memory is not None else ReasoningMemory()
        self._first = next(iter(self.engines))
        #: Agent mode (an AgentService, which has the engine signature); None: unavailable.
        self.agent = agent
        #: Swarm mode (a SwarmService); None: unavailable.
        self.swarm = swarm

    def engine_for(self, mode: Mode) -> Engine:
        """The engine serving ``mode`` (its configured upstream, else the first)."""
        wanted = self.defaults.get(mode)
        name = wanted.upstream if wanted and wanted.upstream else self._first
        return self.engines[name]

    def prepare(self, resolved: Resolved, params: ChatParams) -> tuple[Engine, ChatRequest]:
        """The engine and the engine request for one call; raises :class:`ModeError` for
        modes it was built without (Agent and Swarm need a run store: 501 without one)."""
        mode = resolved.mode
        service = {Mode.AGENT: self.agent, Mode.SWARM: self.swarm}.get(mode)
        if service is not None:
            if mode is Mode.SWARM and params.tools:
                raise ModeError(
                    "kimi-k2.5-swarm runs its own tools and cannot call the client's; send "
                    "tools to kimi-k2.5-agent instead", param="tools")
            # The agent samples like the chat mode its thinking switch selects.
            sampling = self.defaults.get(Mode.THINKING if resolved.thinking else Mode.INSTANT)
            sampling = sampling or ModeDefaults(None, None)
            return service, ChatRequest(
                messages=[dict(m) for m in params.messages],
                tools=params.tools or None,
                tool_choice=params.tool_choice,
                thinking=resolved.thinking,
                temperature=_first(params.temperature, sampling.temperature),
                top_p=_first(params.top_p, sampling.top_p),
                max_tokens=params.max_tokens,
                stop=params.stop,
                seed=params.seed,
                extra=dict(params.extra),
            )
        if mode in (Mode.AGENT, Mode.SWARM):
            raise ModeError(
                f"{resolved.entry.id} is not running here (it needs the run store, which "
                "this process did not open); use kimi-k2.5-instant or kimi-k2.5-thinking",
                status=501,
                param="model",
                code="mode_not_available",
            )
        defaults = self.defaults.get(mode) or ModeDefaults(None, None)
        request = ChatRequest(
            messages=self.memory.restore(params.messages),
            tools=params.tools or None,
            tool_choice=params.tool_choice,
            thinking=resolved.thinking,
            temperature=_first(params.temperature, defaults.temperature),
            top_p=_first(params.top_p, defaults.top_p),
            max_tokens=_first(params.max_tokens, defaults.max_tokens),
            stop=params.stop,
            seed=params.seed,
            extra=dict(params.extra),
        )
        return self.engine_for(mode), request

    async def stream(self, engine: Engine, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """The engine's events, unchanged, plus one :class:`InvalidToolCall` for each tool
        call that fails :func:`~kimi_modes.protocol.validate_tool_call` against
        ``request.tools``, added when the answer ends (just before :class:`Finish`).

        On a normal end of an Instant or Thinking answer (``engine`` is one of
        :attr:`engines`), its reasoning is remembered if it made tool calls. Agent and Swarm
        answers never are: their reasoning stream carries progress lines meant for people,
        not reasoning to give back to a model."""
        builder = MessageBuilder()
        validated = False
        async for event in engine.stream(request):
            if isinstance(event, Finish) and not validated:
                validated = True
                for mark in _invalid_calls(builder.message(), request.tools):
                    yield mark
            builder.add(event)
            yield event
        if not validated:  # an engine that ended without a Finish
            for mark in _invalid_calls(builder.message(), request.tools):
                yield mark
        if any(engine is chat for chat in self.engines.values()):
            self.memory.remember(builder.message().to_openai_message())

    async def aclose(self) -> None:
        if self.swarm is not None:
            await self.swarm.aclose()
        if self.agent is not None:
            await self.agent.aclose()
        for engine in self.engines.values():
            await engine.aclose()


def _invalid_calls(answer: ParsedOutput, tools: list[dict[str, Any]] | None
                   ) -> list[InvalidToolCall]:
    marks = []
    for index, call in enumerate(answer.tool_calls):  # a call's place is its index
        error = validate_tool_call(call.name, call.arguments, tools)
        if error is not None:
            marks.append(InvalidToolCall(index, call.id or None, error))
    return marks


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
