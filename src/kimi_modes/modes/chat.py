"""Instant and Thinking: one engine call with the mode's switch, plus what a chat needs around
it.

:class:`ChatMode` is an :class:`~kimi_modes.engines.base.Engine` wrapping an upstream engine.
It restores the reasoning the caller dropped from tool-call turns of the same conversation
(:class:`~kimi_modes.modes.memory.ReasoningMemory`), remembers the reasoning of the tool-call
answers it produces, and marks the tool calls that fail validation
(:class:`~kimi_modes.engines.base.InvalidToolCall`). Sampling defaults are the router's
(:mod:`kimi_modes.modes.router`); the request arrives with them filled in.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from typing import Any

from kimi_modes.engines.base import ChatRequest, Choice, Engine, Event, Finish, InvalidToolCall
from kimi_modes.engines.message import ChoicesBuilder
from kimi_modes.modes.memory import ReasoningMemory
from kimi_modes.protocol.output import ParsedOutput
from kimi_modes.protocol.schema import validate_tool_call


@dataclass(frozen=True, slots=True)
class ModeDefaults:
    """Sampling defaults of a mode and the upstream that serves it (``None``: the first);
    ``objective``: the priority class its requests name to a router upstream."""

    temperature: float | None
    top_p: float | None
    upstream: str | None = None
    max_tokens: int | None = None
    objective: str | None = None


class ChatMode:
    """Instant or Thinking on ``engine`` (the switch is the request's ``thinking``)."""

    def __init__(self, engine: Engine, memory: ReasoningMemory) -> None:
        self.engine = engine
        self.memory = memory
        self.name = engine.name

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """The engine's events for ``request`` (its messages with the caller's dropped
        reasoning restored), plus the marks of :func:`marked`. On a normal end, each choice's
        reasoning is remembered for this caller and conversation if it made tool calls (the
        client continues with whichever choice it picks; committed before the stream ends)."""
        restored = replace(request, messages=await self.memory.restore(request.owner,
                                                                       request.messages))
        builder = ChoicesBuilder()
        async for event in marked(self.engine.stream(restored), request.tools, builder):
            yield event
        for choice in builder.choices():
            await self.memory.remember(request.owner, request.messages,
                                       choice.message().to_openai_message())

    async def aclose(self) -> None:
        """Nothing of its own: the engine belongs to whoever built it."""


async def marked(events: AsyncGenerator[Event, None], tools: list[dict[str, Any]] | None,
                 builder: ChoicesBuilder | None = None) -> AsyncGenerator[Event, None]:
    """``events`` unchanged, plus one :class:`InvalidToolCall` for each tool call that fails
    :func:`~kimi_modes.protocol.validate_tool_call` against ``tools``, added when its choice
    ends (just before the choice's :class:`Finish`, or at the end of a stream without one,
    after a :class:`Choice` naming it when there are several). ``builder``, when given, is
    fed every event. Closing this stream closes ``events`` at once (the engine, or an
    Agent/Swarm run, is stopped then, not when the garbage collector runs)."""
    builder = builder if builder is not None else ChoicesBuilder()
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Finish) and builder.current.finish_reason is None:
                for mark in _invalid_calls(builder.current.message(), tools):
                    yield mark
            builder.add(event)
            yield event
    choices = builder.choices()
    for index, choice in enumerate(choices):
        if choice.finish_reason is None:
            marks = _invalid_calls(choice.message(), tools)
            if marks and len(choices) > 1:
                yield Choice(index)
            for mark in marks:
                yield mark


def _invalid_calls(answer: ParsedOutput, tools: list[dict[str, Any]] | None
                   ) -> list[InvalidToolCall]:
    marks = []
    for index, call in enumerate(answer.tool_calls):  # a call's place is its index
        error = validate_tool_call(call.name, call.arguments, tools)
        if error is not None:
            marks.append(InvalidToolCall(index, call.id or None, error))
    return marks
