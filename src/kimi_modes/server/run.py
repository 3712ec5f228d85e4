"""Reading a request and watching its client: what every chat route does around the engine.

:func:`read_json` reads a body within the size and time limits; :func:`until_disconnect`
awaits work unless the client leaves first. Both speak :class:`ClientGone` for a client that
went away and :class:`~kimi_modes.server.errors.APIError` for a request that cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

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


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await ``work``, unless the client disconnects first: then cancel it and raise
    :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _body_too_large(limit: int) -> APIError:
    return APIError(413, f"request body larger than {limit} bytes", code="request_too_large")
