"""Reading a request and watching its client: what every chat route does around the engine.

:func:`read_json` reads a body within the size and time limits; :func:`until_disconnect`
awaits work unless the client leaves first. Both speak :class:`ClientGone` for a client that
went away and :class:`~kimi_modes.server.errors.APIError` for a request that cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kimi_modes.engines.base import Event
from kimi_modes.server.errors import APIError


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def read_json(request: Request, limit: int, deadline: float) -> dict[str, Any]:
    """The body as a JSON object, read piece by piece: over ``limit`` bytes it is a 413 as
    soon as the limit is passed (no more is read), slower than ``deadline`` seconds a 408; a
    client that leaves mid-body raises :class:`ClientGone`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline), contextlib.aclosing(request.stream()) as body:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    # Built here, not kept in a local: an exception held by the frame its
                    # traceback holds is a cycle, and the chunks would wait for the GC.
                    raise _body_too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {deadline:g} s",
                       code="request_timeout") from None
    except ClientDisconnect:
        raise ClientGone from None
    raw = b"".join(chunks)
    del chunks
    if not raw:
        raise APIError(400, "the request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    """Every event of a stream, in order."""
    return [event async for event in events]


class ClientWatch:
    """Watches one request's connection, from when its body has been read until
    :meth:`close`: if the client disconnects meanwhile, the task that created the watch is
    cancelled once, wherever it is waiting (an engine's first token, a whole answer, a send).

    The caller catches :class:`asyncio.CancelledError` around the watched work and asks
    :meth:`caught`: ``True`` means the client left (the cancellation is withdrawn from the task;
    answer 499 or end the stream), ``False`` that the cancellation came from elsewhere (re-raise
    it). Create it inside the serving task, after the body was read (the watch reads the rest
    of the request's messages); call :meth:`close` when the answer is done, before clean-up that
    must not be interrupted. A watch cancels at most once and never after :meth:`close`.
    """

    __slots__ = ("_open", "_task", "_watcher", "gone")

    def __init__(self, request: Request) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a request's task
            raise RuntimeError("ClientWatch needs a running task")
        self._task = task
        self._open = True
        #: Whether the client disconnected while the watch was open.
        self.gone = False
        self._watcher = asyncio.get_running_loop().create_task(self._listen(request.receive))

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if self._open:
            self.gone = True
            self._task.cancel()

    def caught(self) -> bool:
        """Whether the :class:`asyncio.CancelledError` being handled is this watch's; if so,
        the task is no longer counted as cancelling."""
        if not self.gone:
            return False
        self._task.uncancel()
        return True

    def close(self) -> None:
        """Stop watching (idempotent)."""
        self._open = False
        self._watcher.cancel()


class EventStream(Response):
    """An SSE answer: ``body`` under ``watch``. A client that leaves closes ``body`` (its
    ``finally`` runs, not interrupted again) and ends the response without an error."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncGenerator[bytes, None], watch: ClientWatch,
                 headers: Mapping[str, str]) -> None:
        # As Starlette's StreamingResponse: no ``body`` attribute, so no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self._body = body
        self._watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = self._watch
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.caught():
                raise
        finally:
            watch.close()
            await self._body.aclose()


def _body_too_large(limit: int) -> APIError:
    return APIError(413, f"request body larger than {limit} bytes", code="request_too_large")
