"""``POST /v1/responses`` as a :class:`~kimi_modes.server.wire.WireFormat` that is also
:class:`~kimi_modes.server.wire.Stateful`: it continues stored responses
(``previous_response_id``), stores the ones it answers (``store``), and runs ``background``
ones (Agent and Swarm: persisted runs) to their end while the client polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import BaseModel

from kimi_modes.engines.base import Event, Finish
from kimi_modes.engines.message import MessageBuilder
from kimi_modes.server.auth import Caller
from kimi_modes.server.errors import APIError, openai_error_body
from kimi_modes.server.openai_answer import OpenAIError
from kimi_modes.server.responses_api.body import ResponseObject, ending, response_object
from kimi_modes.server.responses_api.items import output_items
from kimi_modes.server.responses_api.request import ResponsesBody, ResponsesRequest
from kimi_modes.server.responses_api.stored import PREFIX, StoredResponses
from kimi_modes.server.responses_api.stream import ResponseEncoder
from kimi_modes.server.wire import WireRequest

log = logging.getLogger("kimi_modes.server")

#: The modes whose answers are persisted runs of their own (they store themselves).
RUN_MODES = frozenset({"agent", "swarm"})


class ResponsesWire:
    """The Responses API over the stored responses ``stored``."""

    label = "responses"
    id_prefix = PREFIX
    request_model: type[BaseModel] = ResponsesBody
    answer_model: type[BaseModel] = ResponseObject
    error_model: type[BaseModel] = OpenAIError

    def __init__(self, stored: StoredResponses) -> None:
        self.stored = stored
        self._background: set[asyncio.Task[None]] = set()

    # -- WireFormat ----------------------------------------------------------------------

    def parse(self, body: dict[str, Any]) -> ResponsesRequest:
        return ResponsesBody.model_validate(body).to_wire()

    def encoder(self, answer_id: str, wire: WireRequest) -> ResponseEncoder:
        request = _responses(wire)
        return ResponseEncoder(answer_id[len(PREFIX):], wire.model, request.body.echo(),
                               summary=_wants_summary(request.body),
                               logprobs=wire.request.logprobs is not None)

    def body(self, answer_id: str, wire: WireRequest, events: list[Event]) -> dict[str, Any]:
        return self.encoder(answer_id, wire).fold(events)

    def error_body(self, err: APIError) -> dict[str, Any]:
        return openai_error_body(err)

    # -- Stateful ------------------------------------------------------------------------

    async def prepare(self, wire: WireRequest, caller: Caller) -> None:
        request = _responses(wire)
        body = request.body
        if body.background and body.stream:
            raise APIError(400, "a background response is not streamed here: leave out "
                           "'stream' and poll GET /v1/responses/{id}", param="stream")
        if body.previous_response_id is not None:
            history = await self.stored.history(body.previous_response_id, caller.scope)
            request.conversation = [*history, *request.conversation]
            system = [m for m in wire.request.messages[:1] if body.instructions]
            wire.request.messages = [*system, *request.conversation]
        if body.background:
            self.stored.store()  # 503 now rather than a run that cannot be kept

    def track(self, answer_id: str, wire: WireRequest, mode: str,
              events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        request = _responses(wire)
        if not request.body.store or mode in RUN_MODES or not self.stored.available():
            return events
        return self._kept(answer_id[len(PREFIX):], request, mode, events)

    async def _kept(self, key: str, request: ResponsesRequest, mode: str,
                    events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        """``events``, folded as they pass; the response is stored before the ``Finish``
        goes on, so a client that saw it end can read it back at once."""
        builder = MessageBuilder()
        finish: Finish | None = None
        async with contextlib.aclosing(events):
            async for event in events:
                builder.add(event)
                if isinstance(event, Finish):
                    finish = event
                    continue
                yield event
        answer = builder.message()
        status, reason = ending(builder.finish_reason)
        body = request.body
        settings = {**body.echo(), "status": status, "incomplete": reason,
                    "output": output_items(answer.to_openai_message(), key,
                                           summary=_wants_summary(body))}
        await self.stored.keep(key, mode=mode, model=request.model,
                               owner=request.request.owner,
                               conversation=request.conversation, answer=answer,
                               finish=builder.finish_reason, usage=builder.usage,
                               settings=settings)
        if finish is not None:
            yield finish

    async def detach(self, answer_id: str, wire: WireRequest, mode: str,
                     events: AsyncGenerator[Event, None]) -> dict[str, Any]:
        if mode not in RUN_MODES:
            await events.aclose()
            raise APIError(400, "background responses run on the Agent and Swarm models "
                           "(persisted runs); Instant and Thinking answer in the foreground",
                           param="background")
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._drive(answer_id, events, started))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(started)  # the run exists once the first event came
        body = _responses(wire).body
        return response_object(answer_id, wire.model, "in_progress", [], echo=body.echo())

    @staticmethod
    async def _drive(answer_id: str, events: AsyncGenerator[Event, None],
                     started: asyncio.Future[None]) -> None:
        """Consume a background response's events; the run records how it ended."""
        try:
            async with contextlib.aclosing(events):
                async for _ in events:
                    if not started.done():
                        started.set_result(None)
        except Exception as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                log.info("background response %s ended: %s", answer_id, exc)
        finally:
            if not started.done():
                started.set_result(None)

    async def aclose(self) -> None:
        """Stop the background responses still running (their runs end cancelled)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _responses(wire: WireRequest) -> ResponsesRequest:
    assert isinstance(wire, ResponsesRequest), "the Responses API parsed this request"
    return wire


def _wants_summary(body: ResponsesBody) -> bool:
    return body.reasoning is not None and body.reasoning.summary is not None
