"""The gateway's HTTP surface: a Starlette app with OpenAI and Anthropic routes.

Routes (the table is in :func:`create_app`): ``POST /v1/chat/completions`` (also at
``/chat/completions``), ``POST /v1/messages``, ``GET /v1/models``, ``GET /health``,
``GET /metrics``; the runs API's five under ``/v1/runs`` (list, get, cancel, events, resume:
:mod:`kimi_modes.server.runs_api`); the live view's six under ``/ui``
(:mod:`kimi_modes.server.ui`). :class:`Gateway` assembles the app at start-up
(:mod:`kimi_modes.assembly`) and releases it at shutdown.

The server validates, authenticates, streams and maps errors; everything about modes lives in
:mod:`kimi_modes.modes`, everything about engines in :mod:`kimi_modes.engines`. A client
that disconnects cancels the engine stream at once (the upstream HTTP request is closed, an
embedded generation stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from kimi_modes.assembly import Assembly, assemble
from kimi_modes.config import Settings
from kimi_modes.engines.base import Engine, EngineError, Event, Usage
from kimi_modes.modes import MODELS, ChatModes, ChatParams, ModeError, resolve_mode
from kimi_modes.server import anthropic_api
from kimi_modes.server.auth import APIKeys, Caller
from kimi_modes.server.cors import cors_middleware
from kimi_modes.server.errors import APIError, openai_error_body
from kimi_modes.server.metrics import Metrics
from kimi_modes.server.openai_api import ChatCompletionBody, ChunkEncoder, completion_body
from kimi_modes.server.runs_api import RunsAPI
from kimi_modes.server.ui import RunsUI

log = logging.getLogger("kimi_modes.server")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: Answers after which the connection is closed: the rest of the body was not read, and a
#: client that sends too much or too slowly gets no second request on the same connection.
_CLOSE_AFTER = frozenset({408, 413})


class _Encoder(Protocol):
    def start(self) -> bytes: ...
    def feed(self, event: Event) -> bytes: ...
    def end(self) -> bytes: ...
    def error(self, err: APIError) -> bytes: ...


class _OpenAIStream:
    def __init__(self, inner: ChunkEncoder) -> None:
        self.inner = inner

    def start(self) -> bytes:
        return self.inner.start()

    def feed(self, event: Event) -> bytes:
        return self.inner.feed(event)

    def end(self) -> bytes:
        return self.inner.end()

    def error(self, err: APIError) -> bytes:
        return self.inner.error(openai_error_body(err))


class _AnthropicStream:
    def __init__(self, inner: anthropic_api.MessageStreamEncoder) -> None:
        self.inner = inner

    def start(self) -> bytes:
        return self.inner.start()

    def feed(self, event: Event) -> bytes:
        return self.inner.feed(event)

    def end(self) -> bytes:
        return self.inner.finish()

    def error(self, err: APIError) -> bytes:
        return self.inner.error(err.status, err.message)


@dataclass
class _Api:
    """What differs between the two APIs: the label, and how an error body looks."""

    label: str
    error_body: Callable[[APIError], dict[str, Any]]


_OPENAI = _Api("chat_completions", openai_error_body)
_ANTHROPIC = _Api(
    "messages", lambda err: anthropic_api.anthropic_error_body(err.status, err.message)
)


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


class Gateway:
    """The app's state and handlers. Build the ASGI app with :func:`create_app`."""

    def __init__(self, settings: Settings, engines: dict[str, Engine] | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._engines = engines
        self._keys = APIKeys([k.get_secret_value() for k in settings.server.api_keys],
                             [k.get_secret_value() for k in settings.server.operator_api_keys])
        #: What :meth:`startup` assembled (engines, modes, the run store); None before.
        self.assembly: Assembly | None = None
        self.modes: ChatModes | None = None
        #: Per upstream: whether its last request succeeded (for /health).
        self._upstream_health: dict[str, dict[str, Any]] = {}
        self.runs_api = RunsAPI(lambda: self.assembly.store if self.assembly else None,
                                authorize=lambda r: self._auth(r, _OPENAI),
                                resume=self._resumer)

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        """Assemble the app from the settings (:func:`~kimi_modes.assembly.assemble`)."""
        self.assembly = await assemble(self.settings, engines=self._engines)
        self.modes = self.assembly.modes
        log.info("gateway ready; upstreams: %s", ", ".join(self.modes.engines))

    async def shutdown(self) -> None:
        """Release what :meth:`startup` assembled (live runs end as ``interrupted``)."""
        if self.assembly is not None:
            await self.assembly.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    def _resumer(self) -> Any:
        """The swarm's sub-agent resumer, once the swarm runs (None otherwise)."""
        swarm = self.modes.swarm if self.modes is not None else None
        return swarm.workers.resume_detached if swarm is not None else None

    # -- plain routes ----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Liveness for anyone: ``{"status": "ok"}``; ``degraded`` when the last request to
        some upstream failed; ``starting`` (503) before the engines are ready.

        A caller with a valid API key (anyone, when no keys are configured) also gets
        ``upstreams`` (each upstream's last error, which names its URL) and, with Swarm mode,
        ``swarm``: the sub-agents running and queued and each engine pool's members
        (docs/pool.md)."""
        detailed = self._auth(request, _OPENAI) is None
        if self.modes is None:
            starting: dict[str, Any] = {"status": "starting"}
            if detailed:
                starting["upstreams"] = {}
            return _json(starting, status=503)
        upstreams = {name: self._upstream_health.get(name, {"ok": None})
                     for name in self.modes.engines}
        degraded = any(state.get("ok") is False for state in upstreams.values())
        body: dict[str, Any] = {"status": "degraded" if degraded else "ok"}
        if not detailed:
            return _json(body)
        body["upstreams"] = upstreams
        if self.modes.swarm is not None:
            body["swarm"] = self.modes.swarm.status()
        return _json(body)

    def _upstream_failed(self, exc: EngineError) -> None:
        self.metrics.upstream_errors.labels(exc.upstream, exc.kind).inc()
        self._upstream_health[exc.upstream] = {"ok": False, "error": str(exc),
                                               "since": time.time()}

    def _upstream_ok(self, engine: Engine) -> None:
        if self._upstream_health.get(engine.name, {}).get("ok") is not True:
            self._upstream_health[engine.name] = {"ok": True}

    async def metrics_route(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def models(self, request: Request) -> Response:
        if isinstance(denied := self._auth(request, _OPENAI), Response):
            return denied
        data = [
            {
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": "kimi-modes",
                "mode": m.mode.value,
                "description": m.description,
            }
            for m in MODELS
        ]
        return _json({"object": "list", "data": data})

    # -- the two chat APIs -----------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        async def prepare(body: Any) -> tuple[str, Engine, Any, bool, _Encoder | None, str]:
            parsed = ChatCompletionBody.model_validate(body)
            resolved = resolve_mode(
                parsed.model,
                chat_template_kwargs=parsed.chat_template_kwargs,
                thinking=parsed.thinking,
                reasoning_effort=parsed.reasoning_effort,
            )
            engine, chat = self._modes().prepare(resolved, parsed.to_params())
            key = uuid.uuid4().hex
            cid = "chatcmpl-" + key
            chat.run_id = "run_" + key  # an Agent/Swarm run is findable from the response id
            include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            encoder = (
                _OpenAIStream(ChunkEncoder(cid, parsed.model, include_usage=include_usage))
                if parsed.stream
                else None
            )
            return parsed.model, engine, chat, parsed.stream, encoder, cid

        return await self._serve(request, _OPENAI, prepare, completion_body)

    async def messages(self, request: Request) -> Response:
        estimate = [0]  # the prompt-size estimate, for the non-streamed body too

        def final_body(mid: str, model: str, events: list[Event]) -> dict[str, Any]:
            return anthropic_api.build_message_response(
                mid, model, events, input_tokens_estimate=estimate[0]
            )

        async def prepare(body: Any) -> tuple[str, Engine, Any, bool, _Encoder | None, str]:
            try:
                req = anthropic_api.parse_messages_request(body)
            except anthropic_api.AnthropicRequestError as exc:
                raise APIError(400, exc.message, param=exc.param) from None
            resolved = resolve_mode(
                req.model,
                thinking=None
                if req.thinking is None
                else {"type": "enabled" if req.thinking else "disabled"},
            )
            params = ChatParams(
                messages=req.messages,
                tools=req.tools,
                tool_choice=req.tool_choice,
                temperature=req.temperature,
                top_p=req.top_p,
                max_tokens=req.max_tokens,
                stop=req.stop,
                extra=dict(req.extra),
            )
            engine, chat = self._modes().prepare(resolved, params)
            key = uuid.uuid4().hex
            mid = "msg_" + key
            chat.run_id = "run_" + key
            estimate[0] = _estimate_tokens(body)
            encoder = (
                _AnthropicStream(anthropic_api.MessageStreamEncoder(mid, req.model, estimate[0]))
                if req.stream
                else None
            )
            return req.model, engine, chat, req.stream, encoder, mid

        return await self._serve(request, _ANTHROPIC, prepare, final_body)

    # -- shared request handling -----------------------------------------------------------

    async def _serve(
        self,
        request: Request,
        api: _Api,
        prepare: Callable[[Any], Awaitable[tuple[str, Engine, Any, bool, _Encoder | None, str]]],
        final_body: Callable[[str, str, list[Event]], dict[str, Any]],
    ) -> Response:
        started = time.perf_counter()
        metrics = self.metrics
        model_label = "unknown"
        metrics.in_flight.labels(api.label).inc()
        handed_off = False
        try:
            if isinstance(caller := self._auth(request, api), Response):
                return caller
            try:
                body = await self._read_json(request)
                model, engine, chat, stream, encoder, rid = await prepare(body)
                chat.owner = caller.owner  # the runs it starts belong to the caller
            except ClientGone:
                return self._client_gone(api, model_label, "while sending the request body")
            except (APIError, ValidationError, ValueError) as exc:
                return self._error(api, _as_api_error(exc), model_label)
            except Exception as exc:  # a bug or a misconfiguration: still the API's shape
                log.exception("could not prepare the request")
                return self._error(api, APIError.from_exception(exc), model_label)
            model_label = model
            events = self._modes().stream(engine, chat)
            if stream and encoder is not None:
                try:
                    first = await _until_disconnect(request, anext(events))
                except StopAsyncIteration:
                    first = None
                except ClientGone:
                    metrics.disconnects.labels(api.label).inc()
                    await events.aclose()
                    return Response(status_code=499)
                except EngineError as exc:
                    self._upstream_failed(exc)
                    await events.aclose()
                    return self._error(api, APIError.from_exception(exc), model_label)
                except Exception as exc:
                    log.exception("request failed")
                    await events.aclose()
                    return self._error(api, APIError.from_exception(exc), model_label)
                metrics.ttft.labels(api.label, model_label).observe(time.perf_counter() - started)
                self._upstream_ok(engine)
                handed_off = True
                return StreamingResponse(
                    self._stream_body(api, model_label, encoder, first, events, started),
                    media_type="text/event-stream",
                    headers=_SSE_HEADERS,
                )
            try:
                collected = await _until_disconnect(request, _collect(events))
            except ClientGone:
                metrics.disconnects.labels(api.label).inc()
                return Response(status_code=499)
            except EngineError as exc:
                self._upstream_failed(exc)
                return self._error(api, APIError.from_exception(exc), model_label)
            except Exception as exc:
                log.exception("request failed")
                return self._error(api, APIError.from_exception(exc), model_label)
            self._upstream_ok(engine)
            self._count_tokens(model_label, collected)
            metrics.requests.labels(api.label, model_label, "200").inc()
            metrics.latency.labels(api.label, model_label).observe(time.perf_counter() - started)
            return _json(final_body(rid, model_label, collected))
        finally:
            if not handed_off:
                metrics.in_flight.labels(api.label).dec()

    async def _stream_body(
        self,
        api: _Api,
        model: str,
        encoder: _Encoder,
        first: Event | None,
        events: AsyncGenerator[Event, None],
        started: float,
    ) -> AsyncIterator[bytes]:
        metrics = self.metrics
        status = "200"
        usage: Usage | None = None
        try:
            head = encoder.start()
            if first is not None:
                head += encoder.feed(first)
            yield head
            async for event in events:
                if isinstance(event, Usage):
                    usage = event
                frame = encoder.feed(event)
                if frame:
                    yield frame
            yield encoder.end()
        except EngineError as exc:
            status = str(exc.status)
            self._upstream_failed(exc)
            log.warning("stream failed: %s", exc)
            yield encoder.error(APIError.from_exception(exc))
        except asyncio.CancelledError:
            status = "499"
            metrics.disconnects.labels(api.label).inc()
            raise
        except Exception as exc:
            status = "500"
            log.exception("stream failed")
            yield encoder.error(APIError.from_exception(exc))
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
            metrics.in_flight.labels(api.label).dec()
            metrics.requests.labels(api.label, model, status).inc()
            metrics.latency.labels(api.label, model).observe(time.perf_counter() - started)
            if usage is not None:
                self._count_usage(model, usage)

    # -- helpers ---------------------------------------------------------------------------

    def _modes(self) -> ChatModes:
        if self.modes is None:
            raise APIError(503, "the gateway is still starting", code="starting")
        return self.modes

    def _auth(self, request: Request, api: _Api) -> Caller | Response:
        """The caller (server/auth.py), or the 401 to answer with."""
        caller = self._keys.identify(request)
        if isinstance(caller, Caller):
            return caller
        return self._error(api, APIError(401, caller, code="invalid_api_key"), "unknown")

    async def _read_json(self, request: Request) -> Any:
        """The body as a JSON object, read piece by piece: over ``server.max_body_bytes`` it
        is a 413 as soon as the limit is passed (no more is read), slower than
        ``server.body_timeout`` a 408; a client that leaves mid-body raises
        :class:`ClientGone`."""
        limit = self.settings.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _body_too_large(limit)
        timeout = self.settings.server.body_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout), contextlib.aclosing(request.stream()) as body:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        # Built here, not kept in a local: an exception held by the frame its
                        # traceback holds is a cycle, and the chunks would wait for the GC.
                        raise _body_too_large(limit)
                    chunks.append(chunk)
        except TimeoutError:
            raise APIError(408, f"the request body did not arrive within {timeout:g} s",
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

    def _client_gone(self, api: _Api, model: str, when: str) -> Response:
        """Count a client that left (status 499, the nginx convention) and log one line."""
        self.metrics.disconnects.labels(api.label).inc()
        self.metrics.requests.labels(api.label, model, "499").inc()
        log.info("%s: the client disconnected %s", api.label, when)
        return Response(status_code=499)

    def _error(self, api: _Api, err: APIError, model: str) -> Response:
        self.metrics.requests.labels(api.label, model, str(err.status)).inc()
        if err.status >= 500:
            log.warning("%s: %s", err.status, err.detail or err.message)
        response = _json(api.error_body(err), status=err.status)
        if err.status in _CLOSE_AFTER:
            response.headers["Connection"] = "close"
        if err.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(err.retry_after)))
        return response

    def _count_tokens(self, model: str, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Usage):
                self._count_usage(model, event)

    def _count_usage(self, model: str, usage: Usage) -> None:
        self.metrics.tokens.labels(model, "prompt").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(model, "completion").inc(usage.completion_tokens)
        if usage.reasoning_tokens:
            self.metrics.tokens.labels(model, "reasoning").inc(usage.reasoning_tokens)


def create_app(
    settings: Settings,
    *,
    engines: dict[str, Engine] | None = None,
    gateway: Gateway | None = None,
) -> Starlette:
    """The ASGI app for ``settings``; ``engines`` replaces the configured ones (tests).

    With ``gateway`` given, the caller has already started it (``await gateway.startup()``)
    and stops it; the app then has no lifespan of its own. ``kimi-modes serve`` does that so
    a start-up failure is reported in one line before anything listens."""
    owns_lifecycle = gateway is None
    gateway = gateway or Gateway(settings, engines)
    routes = [
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/messages", gateway.messages, methods=["POST"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/health", gateway.health, methods=["GET"]),
        Route("/metrics", gateway.metrics_route, methods=["GET"]),
        *gateway.runs_api.routes(),
        *RunsUI().routes(),
    ]
    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown routes and wrong methods, in the shape of the API the path belongs to."""
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", None) or "error"
        message = f"{request.method} {request.url.path}: {detail}"
        if status == 404:
            message += (" (routes: /v1/chat/completions, /v1/messages, /v1/models, /v1/runs;"
                        " the live view at /ui/runs)")
        api = _ANTHROPIC if request.url.path.startswith("/v1/messages") else _OPENAI
        return _json(api.error_body(APIError(status, message)), status=status)

    app = Starlette(routes=routes, lifespan=gateway.lifespan if owns_lifecycle else None,
                    exception_handlers={HTTPException: http_error},
                    middleware=cors_middleware(settings.server.cors_allow_origins))
    app.state.gateway = gateway
    return app


async def _collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


async def _until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
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


def _as_api_error(exc: Exception) -> APIError:
    if isinstance(exc, APIError | ValidationError | ModeError):
        return APIError.from_exception(exc)
    return APIError(400, str(exc))


def _estimate_tokens(body: Any) -> int:
    """A rough prompt size for Anthropic's message_start (the engine's count comes later)."""
    return max(1, len(orjson.dumps(body)) // 4)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
