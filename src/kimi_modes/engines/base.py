"""The one seam every engine implements: ``stream(ChatRequest) -> AsyncIterator[Event]``.

An engine turns an OpenAI-style chat (already resolved to a mode: the thinking switch is a
plain bool here) into the shared delta vocabulary of :mod:`kimi_modes.protocol.deltas`, plus
one :class:`Usage` (when known) and exactly one :class:`Finish` as the last event of a
stream that ended normally. (:class:`InvalidToolCall` belongs to the same vocabulary but is
added by the modes layer, not by engines.) Failures are raised as :class:`EngineError`
subclasses, which carry the HTTP status the gateway should answer with and name the upstream.

A request for several choices (``ChatRequest.n > 1``) streams them all: each choice's events
follow a :class:`Choice` naming it (choices may interleave, a :class:`Choice` each time the
choice changes; events before the first :class:`Choice` are choice 0's), each choice ends
with its own :class:`Finish`, and the one :class:`Usage` counts them all (completion tokens
summed, the prompt once). A request for one choice has no
:class:`Choice` event. A request with ``logprobs`` gets :class:`Logprobs` events: each comes
before the deltas its tokens produced, in the choice they belong to.

Cancellation: closing the async iterator (``aclose()``), or cancelling the task that
consumes it, must stop the upstream work promptly (close the HTTP response, stop the
llama.cpp generation).

Optional capabilities are declared, never discovered by attribute name: an engine that can be
readied ahead of its first request subclasses :class:`Startable`, one that can report its
state for ``/health`` subclasses :class:`Snapshotting`, one that counts prompts exactly
subclasses :class:`TokenCounting`; callers test with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable

from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta


@dataclass(slots=True)
class ChatRequest:
    """A chat request as the engines see it.

    ``messages`` and ``tools`` are in OpenAI's chat-completions shape (assistant messages may
    carry ``reasoning_content``). ``thinking`` is the resolved mode switch. ``extra`` holds
    further OpenAI sampling parameters that are passed through unchanged (``presence_penalty``,
    ``frequency_penalty``, ``logit_bias``, ``response_format``, ``top_k``, ``min_p``, ...).
    ``model`` is the upstream's model name, when the configuration gives one. ``run_id``
    names the persisted run an Agent or Swarm request starts (the server derives it from the
    response id, so clients can find the run).
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    thinking: bool = True
    #: K3's reasoning depth (``low``, ``high``, ``max``; ``None``: the family's default).
    #: Asked for explicitly: an engine whose family or upstream cannot take it refuses it.
    thinking_effort: str | None = None
    #: The same depth derived from a generic client setting (OpenAI's ``reasoning_effort``):
    #: applied where the family takes it, ignored elsewhere. See :meth:`effort`.
    effort_hint: str | None = None
    #: K2.6's switch to keep earlier turns' reasoning in the prompt (``None``: default).
    preserve_thinking: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The id to give the run this request starts (Agent and Swarm modes); engines ignore it.
    run_id: str | None = None
    #: Who the runs this request starts belong to (the caller's id, set by the server);
    #: engines ignore it.
    owner: str | None = None
    #: A stable id of the conversation (or sub-agent) this request belongs to, for a router's
    #: session and cache affinity (set by the modes layer); an engine in front of a router
    #: forwards it, the others ignore it.
    session_id: str | None = None
    #: The name of the InferenceObjective (priority class) of the request's mode, for a
    #: router that schedules by it (set by the modes layer; ``None``: send none).
    objective: str | None = None
    #: How many choices to generate (OpenAI's ``n``); every engine gives them, in one upstream
    #: request where the upstream can, else by generating ``n`` times (:mod:`.choices`).
    n: int = 1
    #: Token log probabilities: ``None`` for none, ``k`` (0-20) for each generated token's
    #: logprob with the ``k`` most likely alternatives (OpenAI's ``logprobs: true`` with
    #: ``top_logprobs: k``). An engine that cannot give them raises :class:`UpstreamRejected`.
    logprobs: int | None = None

    def effort(self, accepted: tuple[str, ...]) -> str | None:
        """The ``thinking_effort`` an engine should send, given the efforts its family and
        upstream take (``accepted``; empty: none): the explicit one whatever it is (the
        engine refuses it if it cannot take it), else :attr:`effort_hint` when accepted, else
        ``None`` (the family's default)."""
        if self.thinking_effort is not None:
            return self.thinking_effort
        return self.effort_hint if self.effort_hint in accepted else None


@dataclass(slots=True, frozen=True)
class Usage:
    """Token counts of one completion; ``reasoning_tokens`` is ``None`` when unknown."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, frozen=True)
class Finish:
    """The end of a completion: ``reason`` is ``stop``, ``length`` or ``tool_calls``;
    ``stop_sequence``: which of the request's ``stop`` strings ended it (``reason`` is then
    ``stop``), ``None`` when none did or the engine cannot tell."""

    reason: str
    stop_sequence: str | None = None


def stop_sequence(request: ChatRequest, reported: Any) -> str | None:
    """The request's stop string an upstream reported as the one that fired (vLLM's and
    SGLang's ``stop_reason``; a token id or a stop string of its own is not one)."""
    return reported if isinstance(reported, str) and reported in (request.stop or ()) else None


@dataclass(slots=True, frozen=True)
class Choice:
    """The events after this one, up to the next :class:`Choice`, belong to choice number
    ``index`` (0-based) of a request for several; see the module docstring."""

    index: int


class TopLogprob(TypedDict):
    """One of the most likely tokens at a position (OpenAI's chat shape)."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TypedDict):
    """A generated token's log probability and its most likely alternatives, in OpenAI's
    chat shape (``choices[].logprobs.content[]``), as vLLM writes it."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


@dataclass(slots=True, frozen=True)
class Logprobs:
    """The log probabilities of tokens just generated, in order; they come before the deltas
    those tokens produced (a token that produced no text of its own, a marker, has them all
    the same)."""

    content: list[TokenLogprob]


@dataclass(slots=True, frozen=True)
class InvalidToolCall:
    """Tool call number ``index`` (with the ``id`` it was streamed with) is complete but not
    usable as it is; ``error`` says why in one sentence (unknown function, arguments that are
    not a JSON object or fail the tool's JSON schema).

    Engines do not produce it: :func:`kimi_modes.modes.chat.marked` validates every call
    at the end of an answer and adds one of these per invalid call, just before
    :class:`Finish`. The call itself has been streamed like any other: it is marked, never
    dropped. An encoder with no way to say it ignores it (the Anthropic one does).
    """

    index: int
    id: str | None
    error: str


Event = (ReasoningDelta | ContentDelta | ToolCallDelta | Usage | InvalidToolCall | Finish
         | Choice | Logprobs)


class EngineError(Exception):
    """An engine could not complete a request.

    ``status`` is the HTTP status the gateway answers with; ``upstream`` names the engine
    (its configured name, or its URL) so the message tells the operator where to look.
    """

    status: int = 502
    kind: str = "upstream_error"

    def __init__(self, upstream: str, message: str, *, status: int | None = None,
                 param: str | None = None) -> None:
        super().__init__(f"upstream {upstream!r}: {message}")
        self.upstream = upstream
        self.message = message
        #: The request parameter at fault, when one is (``logprobs``, ``n``...).
        self.param = param
        if status is not None:
            self.status = status


class UpstreamUnavailable(EngineError):
    """The upstream could not be reached (connection refused, DNS, reset before a reply)."""

    status = 502
    kind = "upstream_unavailable"


class UpstreamTimeout(EngineError):
    """The upstream did not answer (or stopped streaming) within the configured timeout."""

    status = 504
    kind = "upstream_timeout"


class UpstreamOverloaded(EngineError):
    """The upstream said it is busy (429 or 503); ``retry_after`` in seconds when it said.
    ``status`` is 503 unless the engine passes the upstream's own on (a router's 429)."""

    status = 503
    kind = "upstream_overloaded"

    def __init__(
        self, upstream: str, message: str, *, retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(upstream, message, status=status)
        self.retry_after = retry_after


class UpstreamFailed(EngineError):
    """The upstream answered with a 5xx, broke its stream, or sent something unreadable."""

    status = 502
    kind = "upstream_failed"


class UpstreamRejected(EngineError):
    """The request cannot be served as given: the upstream refused it as invalid (400, 413 or
    422, passed through with that ``status``), or the engine cannot honour a parameter."""

    status = 400
    kind = "upstream_rejected"


@runtime_checkable
class Engine(Protocol):
    """What every engine provides. ``name`` is used in errors, metrics and logs."""

    name: str

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Stream the completion of ``request`` as events; see the module docstring."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models. Idempotent."""
        ...


@runtime_checkable
class Startable(Protocol):
    """An engine with work worth doing before its first request (the embedded engine loads
    its model). The composition root awaits :meth:`start` once at start-up; an engine that
    is never started still starts itself on first use."""

    async def start(self) -> None:
        """Get ready to serve; idempotent. Raises :class:`EngineError` when it cannot."""
        ...


@runtime_checkable
class TokenCounting(Protocol):
    """An engine that renders and tokenizes prompts itself (the embedded engine), so it can
    count a request's prompt exactly."""

    async def count_tokens(self, request: ChatRequest) -> int:
        """The prompt tokens of ``request``: what its answer's :class:`Usage` would report as
        ``prompt_tokens``, without generating. Raises :class:`EngineError` as ``stream``
        would (a prompt the engine refuses)."""
        ...


@runtime_checkable
class Snapshotting(Protocol):
    """An engine that can report its state for ``/health`` (an engine pool: its members)."""

    def snapshot(self) -> list[dict[str, Any]]:
        """JSON-ready figures now, one dict per part (a pool's members; fields in
        docs/pool.md). Cheap and synchronous: no I/O."""
        ...
