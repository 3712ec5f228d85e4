"""The simulated engine's HTTP app: vLLM's OpenAI-compatible routes plus ``/sim/*``.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``, ``GET /version``, ``GET /metrics`` (vLLM metric names), ``GET /sim/stats``
and ``POST /sim/control``. Per-request headers: ``x-sim-fault`` (``500``, ``429``, ``503``,
``cut``, ``cut:N``, ``hang``), ``x-sim-ttft`` and ``x-sim-tpot`` (seconds).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kimi_modes.protocol.families import family_info
from kimi_modes.simulator import wire
from kimi_modes.simulator.checks import RequestError, check_sampling
from kimi_modes.simulator.config import SimConfig, draw_fault
from kimi_modes.simulator.conversation import (
    Conversation,
    chat_prompt_tokens,
    from_chat,
    from_prompt,
)
from kimi_modes.simulator.faults import FAULT_HEADER, Fault, parse_fault
from kimi_modes.simulator.generation import RAW, Limits, Parsing, generate
from kimi_modes.simulator.replies import Reply, default_reply
from kimi_modes.simulator.runner import Exchange, Job, quiet_stream_cuts
from kimi_modes.simulator.state import SimState
from kimi_modes.simulator.tokenize import count_tokens

VLLM_VERSION = "0.15.1"
#: The most choices (``n``) and logprobs alternatives one request may ask for.
MAX_N = 128
MAX_LOGPROBS = 20
_ACTIONS = ("reset", "cut_inflight", "seed")


def create_app(config: SimConfig) -> Starlette:
    """The ASGI app of one simulated engine; its :class:`SimState` is ``app.state.sim``."""
    quiet_stream_cuts()
    handlers = _Handlers(SimState(config))
    app = Starlette(routes=[
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
        Route("/v1/completions", handlers.completions, methods=["POST"]),
        Route("/v1/models", handlers.models),
        Route("/health", handlers.health),
        Route("/version", handlers.version),
        Route("/metrics", handlers.metrics),
        Route("/sim/stats", handlers.stats),
        Route("/sim/control", handlers.control, methods=["POST"]),
    ])
    app.state.sim = handlers.state
    return app


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _error(status: int, message: str, param: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    return Response(wire.error_body(status, message, param), status, headers,
                    media_type="application/json")


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.config = state.config

    # --- generation ---------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completions")

    async def _generate(self, request: Request, endpoint: str) -> Response:
        state = self.state
        raw_body = await request.body()
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            state.record(request.url.path, dict(request.headers), raw_body.decode(errors="replace"))
            state.rejected += 1
            return _error(400, f"Invalid JSON body: {exc}")
        state.record(request.url.path, dict(request.headers), body)
        if state.settings.down:
            return _error(503, "The engine is down.")
        try:
            job = self._plan(request, body, endpoint)
        except RequestError as exc:
            state.rejected += 1
            status = 404 if exc.param == "model" else 400
            return _error(status, str(exc), exc.param)
        if job.fault is not None and job.fault.kind == "status":
            state.faults[str(job.fault.status)] += 1
            retry = state.settings.retry_after
            headers = ({"retry-after": f"{retry:g}"}
                       if retry is not None and job.fault.status in (429, 503) else None)
            return _error(job.fault.status, "Simulated failure.", headers=headers)
        return Exchange(state, job)

    def _plan(self, request: Request, body: Any, endpoint: str) -> Job:
        config, settings = self.config, self.state.settings
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != config.model:
            raise RequestError(f"The model `{model}` does not exist.", "model")
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise RequestError(f"n must be an integer from 1 to {MAX_N}", "n")
        top = _logprobs(body, endpoint)
        if endpoint == "chat":
            conv = from_chat(body, config.family)
            prompt_tokens = chat_prompt_tokens(body)
            if config.sampling == "official":
                check_sampling(body, config.family, conv.thinking)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise RequestError("prompt must be a string", "prompt")
            conv = from_prompt(prompt, config.family)
            prompt_tokens = count_tokens(prompt)
        limits = self._limits(body, endpoint, conv, prompt_tokens)
        replies = [self._reply(conv, endpoint) for _ in range(n)]  # a script's times count each
        reply = replies[0]
        fault = self._fault(request, reply)
        info = family_info(config.family)
        if endpoint == "chat" and not config.raw_markers:
            parsing = Parsing(
                thinks=conv.thinking, reasoning=info.thinking != "none",
                tools=bool(conv.tools) and conv.tool_choice != "none",
                named_tool=conv.tool_choice not in ("auto", "none", "required"),
                family=config.family,
            )
        else:
            parsing = RAW
        gens = [generate(r.raw_text(config.family, conv.thinking), limits, parsing,
                         info.stop_strings[0]) for r in replies]
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        created = int(time.time())
        encoders: list[wire.Encoder] = [
            wire.ChatEncoder(f"chatcmpl-{rid}", created, config.model, config.reasoning_field, i)
            if endpoint == "chat" else wire.CompletionEncoder(f"cmpl-{rid}", created,
                                                               config.model, i)
            for i in range(n)]
        options = body.get("stream_options")
        return Job(
            encoders=encoders, gens=gens, prompt_tokens=prompt_tokens,
            stream=body.get("stream") is True,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            ttft=_seconds(request, "x-sim-ttft", reply.ttft, settings.ttft),
            tpot=_seconds(request, "x-sim-tpot", reply.tpot, settings.tpot),
            jitter=settings.jitter, tokens_per_chunk=settings.tokens_per_chunk, fault=fault,
            top=top,
        )

    def _reply(self, conv: Conversation, endpoint: str) -> Reply:
        script = self.config.script
        scripted = script.reply_for(conv, endpoint) if script is not None else None
        return scripted if scripted is not None else default_reply(conv)

    def _fault(self, request: Request, reply: Reply) -> Fault | None:
        text = request.headers.get(FAULT_HEADER) or reply.fault
        if text:
            try:
                return parse_fault(text)
            except ValueError as exc:
                raise RequestError(str(exc), FAULT_HEADER) from None
        return draw_fault(self.state.settings, self.state.rng)

    def _limits(self, body: dict[str, Any], endpoint: str, conv: Conversation,
                prompt_tokens: int) -> Limits:
        max_len = self.config.max_model_len
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        if requested is None:
            requested = 16 if endpoint == "completions" else max(1, max_len - prompt_tokens)
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise RequestError("max_tokens must be an integer >= 1", "max_tokens")
        if prompt_tokens + requested > max_len:
            raise RequestError(
                f"This model's maximum context length is {max_len} tokens. However, you "
                f"requested {prompt_tokens + requested} tokens ({prompt_tokens} in the messages, "
                f"{requested} in the completion). Please reduce the length of the messages or "
                "completion.", "max_tokens")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else stop
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            raise RequestError("stop must be a string or a list of strings", "stop")
        skip = body.get("skip_special_tokens", True) is not False
        if (endpoint == "chat" and not self.config.raw_markers and conv.tools
                and conv.tool_choice != "none"):
            skip = False  # vLLM's Kimi tool parsers need the markers
        return Limits(requested, body.get("ignore_eos") is True, tuple(s for s in stop if s),
                      body.get("include_stop_str_in_output") is True, skip)

    # --- the rest of vLLM's surface ---------------------------------------------------------

    async def models(self, request: Request) -> Response:
        self.state.count(request.url.path)
        if self.state.settings.down:
            return _error(503, "The engine is down.")
        model, created = self.config.model, int(time.time())
        return _json({"object": "list", "data": [{
            "id": model, "object": "model", "created": created, "owned_by": "vllm",
            "root": model, "parent": None, "max_model_len": self.config.max_model_len,
            "permission": [{
                "id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                "created": created, "allow_create_engine": False, "allow_sampling": True,
                "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                "allow_fine_tuning": False, "organization": "*", "group": None,
                "is_blocking": False,
            }],
        }]})

    async def health(self, request: Request) -> Response:
        self.state.count(request.url.path)
        return Response(status_code=503 if self.state.settings.down else 200)

    async def version(self, request: Request) -> Response:
        return _json({"version": VLLM_VERSION})

    async def metrics(self, request: Request) -> Response:
        if self.state.settings.down:
            return _error(503, "The engine is down.")
        return Response(generate_latest(self.state.registry), media_type=CONTENT_TYPE_LATEST)

    # --- /sim ---------------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        return _json(self.state.stats())

    async def control(self, request: Request) -> Response:
        """Change settings and run actions; answers the settings now in force."""
        state = self.state
        try:
            changes = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"Invalid JSON body: {exc}")
        if not isinstance(changes, dict):
            return _error(400, "the control body must be a JSON object")
        actions = {key: changes.pop(key) for key in _ACTIONS if key in changes}
        try:
            settings = state.settings.updated(changes)
        except ValueError as exc:
            return _error(400, str(exc))
        seed = actions.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            return _error(400, "seed must be an integer")
        state.apply(settings)
        if seed is not None:
            state.rng.seed(seed)
        if actions.get("reset"):
            state.reset()
        for flight in list(state.in_flight):
            if settings.down or (actions.get("cut_inflight") and flight.started):
                flight.abort("down")
        return _json({"settings": settings.as_dict(), "in_flight": len(state.in_flight)})


def _logprobs(body: dict[str, Any], endpoint: str) -> int | None:
    """How many alternatives per token the request asks for, as vLLM reads it (``None``: no
    logprobs): chat's ``logprobs: true`` with ``top_logprobs`` (0 without), the completions
    API's ``logprobs: k``."""
    if endpoint == "chat":
        wanted, top = body.get("logprobs"), body.get("top_logprobs")
        if top is not None and wanted is not True:
            raise RequestError("when using `top_logprobs`, `logprobs` must be set to true",
                               "top_logprobs")
        if wanted is not True:
            return None
        top, param = 0 if top is None else top, "top_logprobs"
    else:
        top, param = body.get("logprobs"), "logprobs"
        if top is None:
            return None
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_LOGPROBS:
        raise RequestError(f"{param} must be an integer from 0 to {MAX_LOGPROBS}", param)
    return top


def _seconds(request: Request, header: str, rule: float | None, default: float) -> float:
    text = request.headers.get(header)
    if text is None:
        return rule if rule is not None else default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise RequestError(f"{header} must be a number of seconds >= 0", header)
    return value
