"""The gateway's HTTP surface: a Starlette app with OpenAI and Anthropic routes.

Routes (the table is in :func:`create_app`): ``POST /v1/chat/completions`` (also at
``/chat/completions``), ``POST /v1/responses`` and the stored-response routes under it
(:mod:`kimi_modes.server.responses_api`), ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``, ``GET /v1/models`` and
``GET /v1/models/{model}`` (:mod:`kimi_modes.server.models_api`), ``GET /health``,
``GET /metrics``, ``GET /openapi.json`` (the document describing all of these:
:mod:`kimi_modes.server.openapi`); the runs API's five under ``/v1/runs`` (list, get, cancel,
events, resume: :mod:`kimi_modes.server.runs_api`); the live view's six under ``/ui``
(:mod:`kimi_modes.server.ui`, HTML for browsers: not in the document). :class:`Gateway`
assembles the app at start-up (:mod:`kimi_modes.assembly`) and releases it at shutdown.

The server validates, authenticates, streams and maps errors; everything about modes lives in
:mod:`kimi_modes.modes`, everything about engines in :mod:`kimi_modes.engines`. A client
that disconnects cancels the engine stream at once (the upstream HTTP request is closed, an
embedded generation stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

import anyio
import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kimi_modes import __version__
from kimi_modes.assembly import Assembly, assemble
from kimi_modes.config import Settings
from kimi_modes.engines.base import Engine, EngineError, Event, TokenCounting, Usage
from kimi_modes.modes import Mode, ModeError, Router
from kimi_modes.modes.router import ModeEngine
from kimi_modes.server.anthropic_api import AnthropicMessages, parse_count_request
from kimi_modes.server.anthropic_api.answer import AnthropicError, TokenCount
from kimi_modes.server.anthropic_api.request import AnthropicRequestError, CountTokensBody
from kimi_modes.server.auth import APIKeys, Caller
from kimi_modes.server.cors import cors_middleware
from kimi_modes.server.errors import APIError
from kimi_modes.server.metrics import Metrics
from kimi_modes.server.models_api import ModelsAPI
from kimi_modes.server.openai_answer import OpenAIError
from kimi_modes.server.openai_api import OpenAIChat
from kimi_modes.server.openapi import (
    CHAT_ERRORS,
    Endpoint,
    Operation,
    openapi_document,
    wire_operation,
)
from kimi_modes.server.responses_api import ResponsesRoutes, ResponsesWire, StoredResponses
from kimi_modes.server.run import ClientGone, collect, read_json, until_disconnect
from kimi_modes.server.runs_api import RunsAPI
from kimi_modes.server.ui import RunsUI
from kimi_modes.server.wire import Stateful, StreamEncoder, WireFormat

log = logging.getLogger("kimi_modes.server")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_OPENAI: WireFormat = OpenAIChat()
_ANTHROPIC: WireFormat = AnthropicMessages()
#: Answers after which the connection is closed: the rest of the body was not read, and a
#: client that sends too much or too slowly gets no second request on the same connection.
_CLOSE_AFTER = frozenset({408, 413})
#: Who may call a route: with a key, or anyone (a key then shows more).
_KEY_OPTIONAL: tuple[dict[str, list[str]], ...] = ({}, {"bearer": []}, {"x-api-key": []})


class Health(BaseModel):
    """``GET /health``: ``upstreams`` and ``swarm`` only for a caller with a valid key."""

    status: Literal["ok", "degraded", "starting"]
    upstreams: dict[str, dict[str, Any]] | None = None
    swarm: dict[str, Any] | None = None


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
        #: The modes (None before start-up).
        self.router: Router | None = None
        #: Per upstream: whether its last request succeeded (for /health).
        self._upstream_health: dict[str, dict[str, Any]] = {}
        self.runs_api = RunsAPI(lambda: self.assembly.store if self.assembly else None,
                                authorize=lambda r: self._auth(r, _OPENAI),
                                resume=self._resumer)
        stored = StoredResponses(lambda: self.assembly.store if self.assembly else None)
        self.responses = ResponsesWire(stored)
        self.responses_api = ResponsesRoutes(stored, lambda r: self._auth(r, self.responses))
        self.models_api = ModelsAPI(lambda r: self._auth(r, _OPENAI), lambda: self.router)

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        """Assemble the app from the settings (:func:`~kimi_modes.assembly.assemble`)."""
        self.assembly = await assemble(self.settings, engines=self._engines)
        self.router = self.assembly.router
        log.info("gateway ready; upstreams: %s", ", ".join(self.router.engines))

    async def shutdown(self) -> None:
        """Release what :meth:`startup` assembled (live runs end as ``interrupted``)."""
        await self.responses.aclose()
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
        swarm = self.router.swarm if self.router is not None else None
        return swarm.workers.resume_detached if swarm is not None else None

    # -- plain routes ----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Liveness for anyone: ``{"status": "ok"}``; ``degraded`` when the last request to
        some upstream failed; ``starting`` (503) before the engines are ready.

        A caller with a valid API key (anyone, when no keys are configured) also gets
        ``upstreams`` (each upstream's last error, which names its URL) and, with Swarm mode,
        ``swarm``: the sub-agents running and queued and each engine pool's members
        (docs/pool.md), and ``pid``: the process that answered (one of ``--workers``)."""
        detailed = isinstance(self._auth(request, _OPENAI), Caller)
        if self.router is None:
            starting: dict[str, Any] = {"status": "starting"}
            if detailed:
                starting["upstreams"] = {}
            return _json(starting, status=503)
        upstreams = {name: self._upstream_health.get(name, {"ok": None})
                     for name in self.router.engines}
        degraded = any(state.get("ok") is False for state in upstreams.values())
        body: dict[str, Any] = {"status": "degraded" if degraded else "ok"}
        if not detailed:
            return _json(body)
        body["upstreams"] = upstreams
        body["pid"] = os.getpid()  # which process answered (`serve --workers N`)
        if self.router.swarm is not None:
            body["swarm"] = self.router.swarm.status()
        return _json(body)

    def _upstream_failed(self, exc: EngineError) -> None:
        self.metrics.upstream_errors.labels(exc.upstream, exc.kind).inc()
        self._upstream_health[exc.upstream] = {"ok": False, "error": str(exc),
                                               "since": time.time()}

    def _upstream_ok(self, engine: ModeEngine) -> None:
        if self._upstream_health.get(engine.name, {}).get("ok") is not True:
            self._upstream_health[engine.name] = {"ok": True}

    async def metrics_route(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    # -- the chat APIs (each a WireFormat) ------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, _OPENAI)

    async def messages(self, request: Request) -> Response:
        return await self._serve(request, _ANTHROPIC)

    async def create_response(self, request: Request) -> Response:
        return await self._serve(request, self.responses)

    async def count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens``: ``{"input_tokens", "estimated"}``. Exact
        (``estimated: false``) when the request goes to Instant or Thinking on an engine that
        renders and tokenizes prompts itself (:class:`TokenCounting`: the embedded engine);
        otherwise the estimate ``/v1/messages`` reports before the engine counts (a quarter
        of the body's bytes), and ``estimated: true`` says so."""
        api = _ANTHROPIC
        if isinstance(caller := self._auth(request, api), Response):
            return caller
        try:
            body = await read_json(request, self.settings.server.max_body_bytes,
                                   self.settings.server.body_timeout)
            wire = parse_count_request(body)
            router = self._router()
            resolved = router.catalog.resolve(wire.model, wire.thinking)
            _, chat = router.route(resolved, wire.request, wire.options)
            engine = (router.upstream_for(resolved.mode, resolved.entry.family)
                      if resolved.mode in (Mode.INSTANT, Mode.THINKING) else None)
            if isinstance(engine, TokenCounting):
                counted = TokenCount(input_tokens=await engine.count_tokens(chat),
                                     estimated=False)
            else:
                counted = TokenCount(input_tokens=wire.prompt_estimate, estimated=True)
        except ClientGone:
            return self._client_gone(api, "unknown", "while sending the request body")
        except AnthropicRequestError as exc:
            return self._error(api, APIError(400, exc.message, param=exc.param), "unknown")
        except EngineError as exc:
            return self._error(api, APIError.from_exception(exc), "unknown")
        except (APIError, ValidationError, ValueError) as exc:
            return self._error(api, _as_api_error(exc), "unknown")
        except Exception as exc:
            log.exception("could not count the tokens")
            return self._error(api, APIError.from_exception(exc), "unknown")
        return _json(counted.model_dump())

    def endpoints(self) -> list[Endpoint]:
        """Every API route with its OpenAPI operation (the live view's pages aside)."""
        chat = "Chat completions (OpenAI's API)"
        return [
            Endpoint(wire_operation("/v1/chat/completions", _OPENAI, chat, tag="openai"),
                     self.chat_completions),
            Endpoint(wire_operation("/chat/completions", _OPENAI, chat + ", without /v1",
                                    tag="openai"), self.chat_completions),
            Endpoint(wire_operation("/v1/responses", self.responses, "Responses (OpenAI's API)",
                                    tag="responses"), self.create_response),
            *self.responses_api.endpoints(),
            Endpoint(wire_operation("/v1/messages", _ANTHROPIC, "Messages (Anthropic's API)",
                                    tag="anthropic"), self.messages),
            Endpoint(Operation("post", "/v1/messages/count_tokens", "Count a prompt's tokens",
                               "anthropic", AnthropicError, CHAT_ERRORS, TokenCount,
                               body=CountTokensBody), self.count_tokens),
            *self.models_api.endpoints(),
            Endpoint(Operation("get", "/health", "Liveness, and upstreams' state with a key",
                               "gateway", OpenAIError, (), Health, also=(503,),
                               security=_KEY_OPTIONAL), self.health),
            Endpoint(Operation("get", "/metrics", "Prometheus metrics", "gateway",
                               OpenAIError, (), media=("text/plain",), security=()),
                     self.metrics_route),
            *self.runs_api.endpoints(),
        ]

    # -- shared request handling -----------------------------------------------------------

    async def _serve(self, request: Request, api: WireFormat) -> Response:
        """One chat request on ``api``: authenticate, read and parse the body, route it to its
        mode's engine, then answer whole or streamed. Every failure is an answer in the API's
        own shape; before the first event a streamed request can still get a real status."""
        started = time.perf_counter()
        metrics = self.metrics
        model_label = "unknown"
        metrics.in_flight.labels(api.label).inc()
        handed_off = False
        try:
            if isinstance(caller := self._auth(request, api), Response):
                return caller
            try:
                body = await read_json(request, self.settings.server.max_body_bytes,
                                       self.settings.server.body_timeout)
                wire = api.parse(body)
                resolved = self._router().catalog.resolve(wire.model, wire.thinking)
                key = uuid.uuid4().hex
                answer_id = api.id_prefix + key
                # An Agent/Swarm run is findable from the answer's id and belongs to the caller.
                wire.request.run_id = "run_" + key
                wire.request.owner = caller.owner
                if isinstance(api, Stateful):
                    await api.prepare(wire, caller)
                engine, chat = self._router().route(resolved, wire.request, wire.options)
            except ClientGone:
                return self._client_gone(api, model_label, "while sending the request body")
            except (APIError, ValidationError, ValueError) as exc:
                return self._error(api, _as_api_error(exc), model_label)
            except Exception as exc:  # a bug or a misconfiguration: still the API's shape
                log.exception("could not prepare the request")
                return self._error(api, APIError.from_exception(exc), model_label)
            model_label = wire.model
            events = engine.stream(chat)
            if isinstance(api, Stateful):
                if wire.background:
                    try:
                        detached = await api.detach(answer_id, wire, resolved.mode.value, events)
                    except Exception as exc:
                        if isinstance(exc, EngineError):
                            self._upstream_failed(exc)
                        elif not isinstance(exc, APIError | ModeError):
                            log.exception("request failed")
                        return self._error(api, APIError.from_exception(exc), model_label)
                    metrics.requests.labels(api.label, model_label, "200").inc()
                    return _json(detached)
                events = api.track(answer_id, wire, resolved.mode.value, events)
            if wire.stream:
                try:
                    first = await until_disconnect(request, anext(events))
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
                except ModeError as exc:
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
                    self._stream_body(api, model_label, api.encoder(answer_id, wire), first,
                                      events, started),
                    media_type="text/event-stream",
                    headers=_SSE_HEADERS,
                )
            try:
                collected = await until_disconnect(request, collect(events))
            except ClientGone:
                metrics.disconnects.labels(api.label).inc()
                return Response(status_code=499)
            except EngineError as exc:
                self._upstream_failed(exc)
                return self._error(api, APIError.from_exception(exc), model_label)
            except ModeError as exc:  # e.g. the run was cancelled: an answer, not a crash
                return self._error(api, APIError.from_exception(exc), model_label)
            except Exception as exc:
                log.exception("request failed")
                return self._error(api, APIError.from_exception(exc), model_label)
            self._upstream_ok(engine)
            self._count_tokens(model_label, collected)
            metrics.requests.labels(api.label, model_label, "200").inc()
            metrics.latency.labels(api.label, model_label).observe(time.perf_counter() - started)
            return _json(api.body(answer_id, wire, collected))
        finally:
            if not handed_off:
                metrics.in_flight.labels(api.label).dec()

    async def _stream_body(
        self,
        api: WireFormat,
        model: str,
        encoder: StreamEncoder,
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
        except ModeError as exc:
            status = str(exc.status)
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
            # Starlette cancels this body through an anyio cancel scope when the client
            # leaves; its cancellation is level-triggered, so every await in the engine's
            # clean-up would be cancelled again (an Agent/Swarm run left "running"). The
            # clean-up is shielded: it runs to its end.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await events.aclose()
            metrics.in_flight.labels(api.label).dec()
            metrics.requests.labels(api.label, model, status).inc()
            metrics.latency.labels(api.label, model).observe(time.perf_counter() - started)
            if usage is not None:
                self._count_usage(model, usage)

    # -- helpers ---------------------------------------------------------------------------

    def _router(self) -> Router:
        if self.router is None:
            raise APIError(503, "the gateway is still starting", code="starting")
        return self.router

    def _auth(self, request: Request, api: WireFormat) -> Caller | Response:
        """The caller (server/auth.py), or the 401 to answer with."""
        caller = self._keys.identify(request)
        if isinstance(caller, Caller):
            return caller
        return self._error(api, APIError(401, caller, code="invalid_api_key"), "unknown")

    def _client_gone(self, api: WireFormat, model: str, when: str) -> Response:
        """Count a client that left (status 499, the nginx convention) and log one line."""
        self.metrics.disconnects.labels(api.label).inc()
        self.metrics.requests.labels(api.label, model, "499").inc()
        log.info("%s: the client disconnected %s", api.label, when)
        return Response(status_code=499)

    def _error(self, api: WireFormat, err: APIError, model: str) -> Response:
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
    endpoints = gateway.endpoints()
    document = openapi_document(
        [e.operation for e in endpoints] + [_OPENAPI_OPERATION], title="kimi-modes gateway",
        version=__version__, description="Kimi's four modes behind OpenAI- and "
        "Anthropic-compatible APIs; docs/api.md says where they differ from the originals.")
    published = orjson.dumps(document)

    async def openapi(request: Request) -> Response:
        return Response(published, media_type="application/json")

    routes = [
        *(e.route() for e in endpoints),
        Endpoint(_OPENAPI_OPERATION, openapi).route(),
        *RunsUI().routes(),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown routes and wrong methods, in the shape of the API the path belongs to."""
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", None) or "error"
        message = f"{request.method} {request.url.path}: {detail}"
        if status == 404:
            message += (" (routes: /v1/chat/completions, /v1/responses, /v1/messages, "
                        "/v1/models, /v1/runs;"
                        " the live view at /ui/runs)")
        api = _ANTHROPIC if request.url.path.startswith("/v1/messages") else _OPENAI
        return _json(api.error_body(APIError(status, message)), status=status)

    app = Starlette(routes=routes, lifespan=gateway.lifespan if owns_lifecycle else None,
                    exception_handlers={HTTPException: http_error},
                    middleware=cors_middleware(settings.server.cors_allow_origins))
    app.state.gateway = gateway
    return app


_OPENAPI_OPERATION = Operation("get", "/openapi.json", "This document", "gateway", OpenAIError,
                               (), security=())


def _as_api_error(exc: Exception) -> APIError:
    if isinstance(exc, APIError | ValidationError | ModeError):
        return APIError.from_exception(exc)
    return APIError(400, str(exc))


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
