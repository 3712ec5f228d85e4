"""What an API is to the gateway: a wire format that reads request bodies and writes answers.

Each API the gateway serves (OpenAI chat completions in :mod:`~kimi_modes.server.openai_api`,
OpenAI responses in :mod:`~kimi_modes.server.responses_api`, Anthropic messages in
:mod:`~kimi_modes.server.anthropic_api`) is one :class:`WireFormat`.
It parses a body into one :class:`WireRequest` (the engine request, the thinking switch it
decoded from its own fields, the Agent/Swarm options) and encodes the engine's events as a
streamed or whole answer and errors in its own shape. The request handling in
:mod:`~kimi_modes.server.run` is the same for every API. An API whose requests read and
write stored state (the Responses API's ``previous_response_id``, ``store`` and
``background``) is also :class:`Stateful`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel
from pydantic.config import JsonDict

from kimi_modes.engines.base import ChatRequest, Event
from kimi_modes.modes.options import NO_OPTIONS, ModeOptions
from kimi_modes.server.auth import Caller
from kimi_modes.server.errors import APIError

#: The ``model`` field of every chat API in the OpenAPI document: the ids depend on what the
#: upstreams serve (read at start-up), so the document points at ``GET /v1/models``.
MODEL_FIELD: JsonDict = {
    "description": "A model id listed by GET /v1/models (or one of its aliases: kimi-instant, "
                   "kimi-thinking, kimi-agent, kimi-swarm); another id is a 404 "
                   "model_not_found.",
    "examples": ["kimi-k2.5-thinking", "kimi-thinking"],
}


@dataclass(slots=True)
class WireRequest:
    """A request body as a wire format read it.

    ``model`` is the id the client asked for; ``request`` the engine request (messages and
    tools in OpenAI's chat shape, wire field names gone); ``thinking`` the switch the body
    set (``None``: the model id's default); ``options`` the Agent and Swarm options;
    ``include_usage``: a streamed answer ends with the usage; ``prompt_estimate``: a rough
    prompt size in tokens, for an API that must state one before the engine counts;
    ``background``: answer at once and let the run go on (only a :class:`Stateful` API sets
    it)."""

    model: str
    request: ChatRequest
    thinking: bool | None = None
    options: ModeOptions = NO_OPTIONS
    stream: bool = False
    include_usage: bool = True
    prompt_estimate: int = 0
    background: bool = False


class StreamEncoder(Protocol):
    """Writes one streamed answer: ``start`` once, ``feed`` per event (may be empty),
    ``end`` once, or ``error`` instead of ``end`` when the stream fails after it started."""

    def start(self) -> bytes: ...
    def feed(self, event: Event) -> bytes: ...
    def end(self) -> bytes: ...
    def error(self, err: APIError) -> bytes: ...


class WireFormat(Protocol):
    """One API. ``label`` names it in metrics and logs; ``id_prefix`` starts the ids of its
    answers (the run an Agent or Swarm request starts is ``run_`` + the same suffix).

    ``request_model``, ``answer_model`` and ``error_model`` are the pydantic models of its
    request body, its whole answer and its error body: the OpenAPI document describes the
    API with them (:func:`kimi_modes.server.openapi.wire_operation`). ``parse`` validates
    with ``request_model``, so the document says what the API accepts."""

    label: str
    id_prefix: str
    request_model: type[BaseModel]
    answer_model: type[BaseModel]
    error_model: type[BaseModel]

    def parse(self, body: dict[str, Any]) -> WireRequest:
        """The request in ``body`` (a JSON object); raises :class:`APIError` (or pydantic's
        ``ValidationError``) for one that cannot be served."""
        ...

    def encoder(self, answer_id: str, wire: WireRequest) -> StreamEncoder:
        """The encoder of a streamed answer to ``wire``."""
        ...

    def body(self, answer_id: str, wire: WireRequest, events: list[Event]) -> dict[str, Any]:
        """The whole answer to ``wire`` from its finished events."""
        ...

    def error_body(self, err: APIError) -> dict[str, Any]:
        """``err`` in this API's error shape."""
        ...


@runtime_checkable
class Stateful(Protocol):
    """An API whose requests read and write stored state. The gateway calls
    :meth:`prepare` after parsing, wraps the engine's stream in :meth:`track`, and hands a
    ``background`` request to :meth:`detach` instead of answering it."""

    async def prepare(self, wire: WireRequest, caller: Caller) -> None:
        """Complete ``wire`` from stored state for ``caller`` (the history of a previous
        answer); raises :class:`APIError`."""
        ...

    def track(self, answer_id: str, wire: WireRequest, mode: str,
              events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        """``events`` as the client gets them, stored as they pass when the request asks
        (the same events; the final ``Finish`` after what is stored is committed)."""
        ...

    async def detach(self, answer_id: str, wire: WireRequest, mode: str,
                     events: AsyncGenerator[Event, None]) -> dict[str, Any]:
        """Run ``events`` to their end in the background; the body to answer with now."""
        ...
