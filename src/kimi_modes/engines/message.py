"""The one fold of an engine's event stream into a message.

:class:`MessageBuilder` takes the events of one answer, in order, and keeps what they add up
to: protocol's :class:`~kimi_modes.protocol.output.ParsedOutput` (reasoning, content, the tool
calls with their ids, names, arguments and, for calls an :class:`InvalidToolCall` marked, the
error), the :class:`Usage` and the finish reason. It also says when a tool call is complete,
so a caller can act on it before the answer ends: a call is complete when the next call
begins (engines stream calls one after another, see :mod:`kimi_modes.protocol.deltas`), when
the :class:`Finish` arrives, or when the caller closes the builder.

:func:`collect` drives a builder over an async stream, with hooks for every event and for
every completed tool call (the agent loop starts a tool as soon as its call is complete).

:class:`ChoicesBuilder` folds a stream of several choices (``ChatRequest.n``): one
:class:`MessageBuilder` per choice, the :class:`~kimi_modes.engines.base.Choice` events
saying which one an event belongs to.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from kimi_modes.engines.base import (
    Choice,
    Event,
    Finish,
    InvalidToolCall,
    Logprobs,
    TokenLogprob,
    Usage,
)
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.output import ParsedOutput, ToolCall


@dataclass(frozen=True, slots=True)
class Completion:
    """A folded answer: the ``message``, the engine's ``usage`` (``None`` when it reported
    none) and its ``finish_reason`` (``None`` when the stream had no :class:`Finish`)."""

    message: ParsedOutput
    usage: Usage | None
    finish_reason: str | None


@dataclass(slots=True)
class _Call:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    error: str | None = None

    def tool_call(self) -> ToolCall:
        return ToolCall(self.id or "", self.name, "".join(self.arguments), self.error)


class MessageBuilder:
    """Folds the events of one answer; see the module docstring.

    Tool calls are ordered by their ``index`` (0-based and gap-free in the engine
    vocabulary, so a call's place in ``message().tool_calls`` is its index). A call whose
    ``id`` was never streamed has ``id == ""``. Deltas that arrive for a call already
    complete are still folded into the message, but the call is reported complete only once.
    """

    def __init__(self) -> None:
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._open: int | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        #: The token log probabilities that came, in order (``None``: none came).
        self.logprobs: list[TokenLogprob] | None = None

    def add(self, event: Event) -> ToolCall | None:
        """Fold ``event`` in; returns the tool call it completed, if any."""
        if isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
        elif isinstance(event, ContentDelta):
            self._content.append(event.text)
        elif isinstance(event, ToolCallDelta):
            return self._add_call(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, InvalidToolCall):
            marked = self._calls.get(event.index)
            if marked is not None:  # a mark for a call never streamed marks nothing
                marked.error = event.error
        elif isinstance(event, Finish):
            self.finish_reason = event.reason
            return self.close()
        elif isinstance(event, Logprobs):
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(event.content)
        return None

    def close(self) -> ToolCall | None:
        """The stream ended: returns the call that was still open, if any (then complete)."""
        index, self._open = self._open, None
        return None if index is None else self._calls[index].tool_call()

    def message(self) -> ParsedOutput:
        """The answer so far (empty reasoning or content is ``None``)."""
        return ParsedOutput(
            reasoning_content="".join(self._reasoning) or None,
            content="".join(self._content) or None,
            tool_calls=[self._calls[i].tool_call() for i in sorted(self._calls)],
        )

    def completion(self) -> Completion:
        """The message, usage and finish reason so far."""
        return Completion(self.message(), self.usage, self.finish_reason)

    def _add_call(self, event: ToolCallDelta) -> ToolCall | None:
        completed = None
        call = self._calls.get(event.index)
        if call is None:
            completed = self.close()
            call = self._calls[event.index] = _Call()
            self._open = event.index
        if event.id is not None:
            call.id = event.id
        if event.name is not None:
            call.name = event.name
        call.arguments.append(event.arguments)
        return completed


class ChoicesBuilder:
    """Folds the events of a request's choices (one, or ``n``): each event goes to the
    :class:`MessageBuilder` of the choice the last :class:`Choice` named (choice 0 before
    any); the request's :class:`Usage` is kept here, not in a choice."""

    def __init__(self) -> None:
        self.current = MessageBuilder()
        self._choices: dict[int, MessageBuilder] = {0: self.current}
        self.usage: Usage | None = None

    def add(self, event: Event) -> ToolCall | None:
        """Fold ``event`` into its choice; returns the tool call it completed, if any."""
        kind = type(event)  # exact types: the events are final dataclasses (cheap per token)
        if kind is Choice:
            assert isinstance(event, Choice)
            builder = self._choices.get(event.index)
            if builder is None:
                builder = self._choices[event.index] = MessageBuilder()
            self.current = builder
            return None
        if kind is Usage:
            assert isinstance(event, Usage)
            self.usage = event
            return None
        return self.current.add(event)

    def choices(self) -> list[MessageBuilder]:
        """Each choice's builder, by index."""
        return [self._choices[i] for i in sorted(self._choices)]


async def collect(
    events: AsyncGenerator[Event, None],
    *,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
    on_tool_call: Callable[[ToolCall], Awaitable[None]] | None = None,
) -> Completion:
    """Fold a whole stream: ``on_event`` is awaited for each event as it arrives, then
    ``on_tool_call`` for each tool call as it completes (in index order). Whatever the
    stream or a hook raises propagates, and the calls completed so far stay reported. The
    stream is closed whatever happens (a hook that raises, a cancelled caller), so the engine
    stops at once."""
    builder = MessageBuilder()
    async with contextlib.aclosing(events):
        async for event in events:
            if on_event is not None:
                await on_event(event)
            done = builder.add(event)
            if done is not None and on_tool_call is not None:
                await on_tool_call(done)
    done = builder.close()
    if done is not None and on_tool_call is not None:
        await on_tool_call(done)
    return builder.completion()
