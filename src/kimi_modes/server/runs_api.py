"""The runs API: list, inspect, cancel and watch persisted runs over HTTP.

``GET /v1/runs``, ``GET /v1/runs/{id}``, ``DELETE /v1/runs/{id}``,
``GET /v1/runs/{id}/events`` (Server-Sent Events) and ``POST /v1/runs/{id}/resume`` (when a
resumer is given: the swarm's, for failed sub-agents). :class:`RunsAPI` holds the handlers; the
gateway mounts :meth:`RunsAPI.routes`. Errors come in OpenAI's shape
(:func:`~kimi_modes.server.errors.openai_error_body`). Nothing here knows about modes: the
store (:mod:`kimi_modes.runs`) is the only thing the handlers talk to.

Every route is scoped to the caller (:class:`~kimi_modes.server.auth.Caller`): a caller sees,
watches, cancels and resumes only the runs it owns, unless it sees all (an operator key, or a
gateway without keys). A run of someone else answers exactly like an unknown id: 404
``run_not_found``.

The event stream: each event is one SSE message ``id: <seq>``, ``event: <type>``, ``data:
<the event as JSON>``. A client re-attaches with the ``Last-Event-ID`` header (what
``EventSource`` sends on reconnect) or ``?after=<seq>``; the header wins when both are given.
The stream replays the stored events after that seq, follows the live ones, and ends after the
``finished`` event. A comment line (``: keep-alive``) goes out after ``keepalive`` seconds
without an event, so proxies keep the connection open. A client that disconnects only
unsubscribes: the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from kimi_modes.runs import (
    TERMINAL_STATUSES,
    RunEvent,
    RunNotFound,
    RunRecord,
    RunStore,
    RunStoreClosed,
    assemble_steps,
)
from kimi_modes.server.auth import SINGLE_USER, Caller
from kimi_modes.server.errors import APIError, openai_error_body
from kimi_modes.server.openai_answer import OpenAIError
from kimi_modes.server.openapi import Endpoint, Operation
from kimi_modes.server.runs_schema import (
    CancelledRunBody,
    RunBody,
    RunEventsQuery,
    RunList,
    RunListQuery,
    RunSummaryBody,
)

log = logging.getLogger("kimi_modes.server")

#: ``authorize(request)``: the caller to serve the request for, else the response to send
#: (the gateway's API-key check).
Authorize = Callable[[Request], Caller | Response]
#: ``resume(run_id)``: the new run continuing ``run_id``; raises an error with ``status``
#: (404/409) and a message when it cannot.
Resumer = Callable[[str], Awaitable[RunRecord]]
#: The store, or a function giving it (``None`` while the gateway is still starting).
StoreSource = RunStore | Callable[[], RunStore | None]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_TAG = "runs"


class RunsAPI:
    """The handlers of the runs API over ``store``.

    ``authorize`` guards every route and says who calls (runs hold users' tasks and answers:
    mount them behind the same keys as the chat routes); without it every caller sees every
    run. ``keepalive``: seconds of silence before the event
    stream sends a comment. ``cancel_wait``: how long ``DELETE`` waits for a cancelled run to
    record its end before answering (the answer then says ``cancelled``; if the run takes
    longer it says ``running`` with ``cancel_requested: true``).
    """

    def __init__(
        self,
        store: StoreSource,
        *,
        authorize: Authorize | None = None,
        keepalive: float = 15.0,
        cancel_wait: float = 5.0,
        resume: Callable[[], Resumer | None] | None = None,
    ) -> None:
        self._store = store
        self._resume = resume
        self._authorize = authorize
        self.keepalive = keepalive
        self.cancel_wait = cancel_wait

    def endpoints(self, prefix: str = "/v1") -> list[Endpoint]:
        """The five routes under ``prefix``, each with its OpenAPI operation."""
        one = f"{prefix}/runs/{{run_id}}"
        base = (400, 401, 404, 503)
        return [
            Endpoint(Operation("get", f"{prefix}/runs", "List the caller's runs", _TAG,
                               OpenAIError, (400, 401, 503), RunList, query=RunListQuery),
                     self.list_runs),
            Endpoint(Operation("get", one, "A whole run with its steps", _TAG, OpenAIError,
                               base, RunBody), self.get_run),
            Endpoint(Operation("delete", one, "Cancel a queued or running run", _TAG,
                               OpenAIError, (*base, 409), CancelledRunBody), self.cancel_run),
            Endpoint(Operation("get", f"{one}/events", "The run's events (Server-Sent Events)",
                               _TAG, OpenAIError, base, media=("text/event-stream",),
                               query=RunEventsQuery,
                               headers={"Last-Event-ID": {"type": "string"}}),
                     self.run_events),
            Endpoint(Operation("post", f"{one}/resume", "Resume a failed sub-agent as a new run",
                               _TAG, OpenAIError, (*base, 409, 501), RunSummaryBody,
                               status=202), self.resume_run),
        ]

    def routes(self, prefix: str = "/v1") -> list[Route]:
        """The five routes under ``prefix``."""
        return [endpoint.route() for endpoint in self.endpoints(prefix)]

    # -- handlers ------------------------------------------------------------------------

    async def list_runs(self, request: Request) -> Response:
        """``GET /v1/runs?limit=&offset=&status=&mode=&parent_id=``: run summaries, newest
        first: ``{"object": "list", "data": [...], "has_more", "limit", "offset"}``; only the
        caller's runs."""
        try:
            store, caller = self._guard(request)
            query: RunListQuery = RunListQuery.parse(request.query_params)
            limit, offset = query.limit, query.offset
            runs = await store.list_runs(limit + 1, offset, status=query.status,
                                         mode=query.mode, parent_id=query.parent_id,
                                         owner=caller.scope)
        except _Denied as denied:
            return denied.response
        except Exception as exc:
            return _error(exc)
        data = [{"object": "run", **r.to_dict()} for r in runs[:limit]]
        return _json({"object": "list", "data": data, "has_more": len(runs) > limit,
                      "limit": limit, "offset": offset})

    async def get_run(self, request: Request) -> Response:
        """``GET /v1/runs/{id}``: the whole run (``object: "run"``): the summary fields,
        ``messages``, ``params``, ``final``, ``final_answer``, and ``steps`` built from its
        events (see :func:`~kimi_modes.runs.records.assemble_steps`)."""
        run_id = request.path_params["run_id"]
        try:
            store, caller = self._guard(request)
            record = await store.get(run_id, owner=caller.scope)
            if record is None:
                raise RunNotFound(run_id)
            events = await store.events(run_id)
        except _Denied as denied:
            return denied.response
        except Exception as exc:
            return _error(exc)
        body = {"object": "run", **record.to_dict(), "live": store.is_live(run_id),
                "steps": assemble_steps(events)}
        return _json(body)

    async def cancel_run(self, request: Request) -> Response:
        """``DELETE /v1/runs/{id}``: cancel a queued or running run. 200 with the run's
        summary once it has recorded its end (``status: "cancelled"``) or ``cancel_wait``
        passed (``cancel_requested: true``); 409 if it had already finished; 404 if
        unknown."""
        run_id = request.path_params["run_id"]
        try:
            store, caller = self._guard(request)
            await self._visible(store, caller, run_id)
            if not await store.cancel(run_id):
                status = await store.status(run_id)
                if status in TERMINAL_STATUSES:
                    raise APIError(409, f"run {run_id!r} already finished with status "
                                   f"{status!r}", code="run_finished")
                raise APIError(409, f"run {run_id!r} is {status}, but in another process: "
                               "cancel it there", code="run_not_local")
            await store.wait(run_id, self.cancel_wait)
            record = await store.get(run_id)
            if record is None:
                raise RunNotFound(run_id)
        except _Denied as denied:
            return denied.response
        except Exception as exc:
            return _error(exc)
        body: dict[str, Any] = {"object": "run", **record.to_dict()}
        body["cancel_requested"] = True
        return _json(body)

    async def resume_run(self, request: Request) -> Response:
        """``POST /v1/runs/{id}/resume``: continue a failed (cancelled, interrupted,
        out-of-budget) sub-agent from its last finished step, as a new run; 202 with the new
        run's summary (``resumed_from`` in its params). 404 unknown run, 409 not resumable,
        501 when this gateway has no swarm mode."""
        run_id = request.path_params["run_id"]
        try:
            store, caller = self._guard(request)
            await self._visible(store, caller, run_id)
            resume = self._resume() if self._resume is not None else None
            if resume is None:
                raise APIError(501, "resuming runs needs Swarm mode, which is not running",
                               code="mode_not_available")
            try:
                record = await resume(run_id)
            except ValueError as exc:
                status = getattr(exc, "status", 409)
                if status == 404:
                    raise RunNotFound(run_id) from None
                raise APIError(status, str(exc), code="not_resumable") from None
        except _Denied as denied:
            return denied.response
        except Exception as exc:
            return _error(exc)
        return _json({"object": "run", **record.to_dict()}, status=202)

    async def run_events(self, request: Request) -> Response:
        """``GET /v1/runs/{id}/events``: the run's events as SSE (see the module docstring);
        404 if the run is unknown, 400 for a malformed ``Last-Event-ID`` or ``after``."""
        run_id = request.path_params["run_id"]
        try:
            store, caller = self._guard(request)
            header = (request.headers.get("last-event-id") or "").strip()
            query: RunEventsQuery = (
                RunEventsQuery.parse({"after": header}, {"after": "Last-Event-ID"}) if header
                else RunEventsQuery.parse(request.query_params))
            after = query.after
            await self._visible(store, caller, run_id)
        except _Denied as denied:
            return denied.response
        except Exception as exc:
            return _error(exc)
        return StreamingResponse(self._stream(store, run_id, after),
                                 media_type="text/event-stream", headers=_SSE_HEADERS)

    # -- helpers -------------------------------------------------------------------------

    async def _stream(self, store: RunStore, run_id: str, after: int) -> AsyncIterator[bytes]:
        # The subscription is made here, not in the handler: a generator that never starts
        # (the client left before the headers went out) then holds nothing.
        yield b"retry: 3000\n\n"
        try:
            sub = await store.subscribe(run_id, after)
        except Exception as exc:
            yield _sse_error(exc)
            return
        try:
            while True:
                try:
                    event = await sub.next_event(self.keepalive)
                except StopAsyncIteration:
                    return
                if event is None:
                    yield b": keep-alive\n\n"
                    continue
                yield sse_frame(event)
        except Exception as exc:  # the database failed under us: say so, then end
            log.exception("run %s: event stream failed", run_id)
            yield _sse_error(exc)
        finally:
            await sub.aclose()

    def _guard(self, request: Request) -> tuple[RunStore, Caller]:
        caller = SINGLE_USER if self._authorize is None else self._authorize(request)
        if isinstance(caller, Response):
            raise _Denied(caller)
        store = self._store if isinstance(self._store, RunStore) else self._store()
        if store is not None and store.is_closed:
            raise RunStoreClosed("the run store is closed")
        if store is None or not store.is_open:
            raise APIError(503, "the gateway is still starting (the run store is not open)",
                           code="starting")
        return store, caller

    @staticmethod
    async def _visible(store: RunStore, caller: Caller, run_id: str) -> None:
        """:class:`RunNotFound` unless ``run_id`` exists and the caller may see it (a run of
        someone else is not found, alike)."""
        if await store.status(run_id, owner=caller.scope) is None:
            raise RunNotFound(run_id)


def sse_frame(event: RunEvent) -> bytes:
    """One SSE message for ``event``: ``id: <seq>``, ``event: <type>``, ``data: <JSON>``."""
    return (f"id: {event.seq}\nevent: {event.type}\n".encode()
            + b"data: " + event.to_json() + b"\n\n")


class _Denied(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("denied")
        self.response = response


def _api_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RunNotFound):
        return APIError(404, f"no run with id {exc.run_id!r}", param="run_id",
                        code="run_not_found")
    if isinstance(exc, RunStoreClosed):
        return APIError(503, "the run store is closed (the gateway is shutting down)",
                        code="shutting_down")
    if isinstance(exc, ValueError):
        return APIError(400, str(exc))
    log.error("runs API failed: %r", exc)
    return APIError.from_exception(exc)


def _error(exc: BaseException) -> Response:
    err = _api_error(exc)
    return _json(openai_error_body(err), status=err.status)


def _sse_error(exc: BaseException) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(openai_error_body(_api_error(exc))) + b"\n\n"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=str), status_code=status,
                    media_type="application/json")
