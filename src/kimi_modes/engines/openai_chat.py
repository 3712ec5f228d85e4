"""Engine for an upstream that parses Kimi's output itself: vLLM, SGLang, llama-server,
KTransformers, TensorRT-LLM, LMDeploy, exo, Moonshot's API.

It sends the thinking switch in the upstream's dialect (with K3's ``thinking_effort`` and
K2.6's ``preserve_thinking`` where the family has them), reads ``reasoning_content`` (or
``reasoning``) and tool-call deltas, and runs the content through our own streaming parser for
the family (K2.x markers or K3's XTML), so raw Kimi markers in the content (an engine started
without ``--tool-call-parser``, or without ``--reasoning-parser`` when
``reasoning_parser=False``) still come out as reasoning and tool calls, never as text.

In front of a router (``router=True``: llm-d's endpoint picker, the Gateway API Inference
Extension, vLLM Router, SGLang Model Gateway, Dynamo's frontend) each request also carries
what routers schedule by (:meth:`OpenAIChatEngine.build_headers`): the request's session id
(``x-session-id``, or the header named by ``session_header``) and its mode's objective
(``x-gateway-inference-objective`` and llm-d's newer name for it,
``x-llm-d-inference-objective``). A plain engine gets neither. A router's 429 (a request it
shed) is passed on as a 429, with its ``Retry-After``; a plain engine's 429 is a 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from kimi_modes.engines._http import UpstreamClient, usage_from
from kimi_modes.engines.base import (
    ChatRequest,
    Choice,
    Event,
    Finish,
    Logprobs,
    UpstreamFailed,
    UpstreamRejected,
    Usage,
    stop_sequence,
)
from kimi_modes.engines.choices import fan_out
from kimi_modes.engines.dialects import DIALECTS, merge_into
from kimi_modes.protocol import (
    Family,
    ReasoningDelta,
    StreamingParser,
    ToolCallDelta,
    continues_final,
    family_info,
    neutralize_control_tokens,
    normalize_tool_call_ids,
)

log = logging.getLogger(__name__)

#: The Gateway API Inference Extension's header naming a request's InferenceObjective, and
#: llm-d-router's newer name for it (it reads either); both are sent, with the same value.
OBJECTIVE_HEADERS = ("x-gateway-inference-objective", "x-llm-d-inference-objective")
#: The session header most routers read (llm-d's session-affinity scorer, AIBrix, vLLM
#: Router; Dynamo's frontend among its aliases).
SESSION_HEADER = "x-session-id"


@dataclass(slots=True)
class _ChoiceState:
    """What the stream of one choice has shown so far."""

    parser: StreamingParser
    finish: str | None = None
    fired: str | None = None
    upstream_calls: bool = False
    parser_calls: int = 0
    logprobs: bool = False

    def finished(self) -> Finish:
        finish = self.finish
        if (self.upstream_calls or self.parser_calls) and finish in (None, "stop"):
            finish = "tool_calls"
        return Finish(finish or "stop", self.fired if finish in (None, "stop") else None)


class OpenAIChatEngine:
    """``stream()`` a chat through an upstream's ``/v1/chat/completions``."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        family: str = Family.K2_5,
        dialect: str = "vllm",
        model: str | None = None,
        api_key: str | None = None,
        reasoning_parser: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        router: bool = False,
        session_header: str = SESSION_HEADER,
    ) -> None:
        self.name = name
        #: Whether the upstream is a router (see the module docstring).
        self.router = router
        self.session_header = session_header
        self.family = family
        self._info = family_info(family)
        self.dialect = DIALECTS[dialect]
        self.reasoning_parser = reasoning_parser
        #: Whether the "no reasoning parser upstream?" warning was logged (once per engine).
        self._warned_no_reasoning_parser = False
        self._client = UpstreamClient(
            name,
            base_url,
            model=model,
            api_key=api_key,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            busy_status_as_is=router,
        )

    def build_body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The JSON body sent upstream for ``request`` (exposed for tests and debugging).

        The upstream renders the chat with Kimi's template and tokenizes it with special
        tokens enabled, so every piece of client text (contents and text parts, tool results,
        names, reasoning, tool-call ids and arguments, the tool declarations) goes through
        :func:`~kimi_modes.protocol.neutralize_control_tokens` first (kimi-protocol.md §2).
        ``thinking_effort`` and ``preserve_thinking`` are read from ``request.extra`` and sent
        the dialect's way; :class:`UpstreamRejected` for a value the family or the dialect
        cannot take.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                _neutralized_message(m) for m in normalize_tool_call_ids(request.messages)
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = _neutralized(request.tools)
        if request.tool_choice is not None:  # without tools too: the upstream judges it
            body["tool_choice"] = request.tool_choice
        for key in ("temperature", "top_p", "max_tokens", "stop", "seed"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.n > 1:
            body["n"] = request.n
        if request.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = max(request.logprobs, self.dialect.least_top_logprobs)
        try:
            fragment = self.dialect.body_fragment(
                request.thinking and not continues_final(request.messages),
                self.family,
                thinking_effort=request.effort(self.dialect.efforts(self.family)),
                preserve_thinking=request.preserve_thinking,
            )
        except ValueError as exc:
            raise UpstreamRejected(self.name, str(exc)) from None
        merge_into(body, dict(request.extra))
        merge_into(body, fragment)
        if continues_final(request.messages):  # vLLM's and SGLang's way to continue it
            body["messages"][-1].pop("partial", None)
            body["continue_final_message"], body["add_generation_prompt"] = True, False
        return body

    def build_headers(self, request: ChatRequest) -> dict[str, str]:
        """The per-request headers sent upstream for ``request``: none unless the upstream is
        a router; then the session id and the objective, each when the request has one."""
        headers: dict[str, str] = {}
        if not self.router:
            return headers
        if request.session_id:
            headers[self.session_header] = request.session_id
        if request.objective:
            headers.update(dict.fromkeys(OBJECTIVE_HEADERS, request.objective))
        return headers

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """The events of ``request``: its ``n`` choices in one upstream request where the
        dialect takes ``n``, else one request per choice (:func:`fan_out`); logprobs as the
        upstream gives them, or :class:`UpstreamRejected` (``param="logprobs"``) where the
        dialect gives none."""
        if request.n > 1 and not self.dialect.n:
            return fan_out(self._events, request)
        return self._events(request)

    async def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        if request.logprobs is not None and not self.dialect.logprobs:
            raise UpstreamRejected(
                self.name, f"a {self.dialect.name!r} upstream gives no logprobs; send the "
                "request without 'logprobs' and 'top_logprobs'", param="logprobs")
        body = self.build_body(request, request.model or await self._client.model_name())
        headers = self.build_headers(request)
        # Content is parsed by us as well: thinking-aware only when the upstream leaves the
        # reasoning in the content, tool-marker-aware always.
        thinking = request.thinking and not continues_final(request.messages)
        # A continued assistant message goes on in the answer: no reasoning comes first.
        choices = [_ChoiceState(StreamingParser(self.family, thinking=thinking,
                                                tools=request.tools,
                                                reasoning=not self.reasoning_parser))
                   for _ in range(request.n)]
        several = request.n > 1
        current = 0
        usage: Usage | None = None
        # The client forbade tool calls: markers the model wrote anyway are consumed (never
        # shown as text) but not returned as calls, as the client could not answer them.
        no_calls = request.tool_choice == "none"
        want_logprobs = request.logprobs is not None
        # More alternatives than asked come back from a dialect that needs a floor: cut.
        cut = request.logprobs if (request.logprobs or 0) < self.dialect.least_top_logprobs \
            else None
        # Watching for the end of the reasoning (</think>; K3: <|close|>think<|sep|>) in the
        # content of the first choice: only until reasoning arrives or the warning was given.
        # ``tail`` keeps the end of the content seen, for a split marker.
        end = self._info.reasoning_end
        watch = (
            self.reasoning_parser
            and self._info.thinks(request.thinking)
            and not self._warned_no_reasoning_parser
        )
        tail = ""
        async for chunk in self._client.post_stream("/chat/completions", body, headers):
            if chunk.get("usage"):
                usage = usage_from(chunk["usage"])
            for choice in chunk.get("choices") or ():
                index = int(choice.get("index") or 0)
                if not 0 <= index < len(choices):
                    continue
                state = choices[index]
                if several and index != current:
                    current = index
                    yield Choice(index)
                if want_logprobs:
                    logprobs = (choice.get("logprobs") or {}).get("content")
                    if logprobs:
                        state.logprobs = True
                        if cut is not None:
                            for entry in logprobs:
                                tops = entry.get("top_logprobs")
                                if isinstance(tops, list):
                                    del tops[cut:]
                        yield Logprobs(logprobs)
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    watch = False
                    yield ReasoningDelta(reasoning)
                content = delta.get("content")
                if content:
                    if watch and index == 0:
                        seen = tail + content
                        if end in seen:
                            watch = False
                            self._warn_no_reasoning_parser()
                        tail = seen[-(len(end) - 1):]
                    for event in state.parser.feed(content):
                        if isinstance(event, ToolCallDelta):
                            if no_calls:
                                continue
                            state.parser_calls = max(state.parser_calls, event.index + 1)
                        yield event
                for call in delta.get("tool_calls") or ():
                    state.upstream_calls = True
                    fn = call.get("function") or {}
                    yield ToolCallDelta(
                        index=int(call.get("index", 0)) + state.parser_calls,
                        id=call.get("id"),
                        name=fn.get("name"),
                        arguments=fn.get("arguments") or "",
                    )
                if choice.get("finish_reason"):
                    state.finish = choice["finish_reason"]
                    state.fired = stop_sequence(request, choice.get("stop_reason"))
        for index, state in enumerate(choices):
            if several:
                yield Choice(index)
            for event in state.parser.close():
                if isinstance(event, ToolCallDelta):
                    if no_calls:
                        continue
                    state.parser_calls = max(state.parser_calls, event.index + 1)
                yield event
            if want_logprobs and not state.logprobs and state.finish is not None:
                raise UpstreamFailed(self.name, "the upstream was asked for logprobs and sent "
                                     "none (does it support them?)")
            if usage is not None and not several:
                yield usage
            yield state.finished()
        if usage is not None and several:
            yield usage

    def _warn_no_reasoning_parser(self) -> None:
        if self._warned_no_reasoning_parser:
            return
        self._warned_no_reasoning_parser = True
        log.warning(
            "upstream %r sent %r in the content and no reasoning: it seems to run "
            "without a reasoning parser, so the reasoning reaches clients as content. Set "
            "reasoning_parser = false for this upstream (kimi-modes serve "
            "--no-reasoning-parser), or start the engine with its Kimi reasoning parser "
            "(vLLM/SGLang: --reasoning-parser %s). This warning is given once.",
            self.name,
            self._info.reasoning_end,
            self._info.engine_parser,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _neutralized_message(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``message`` whose client text cannot become control tokens; roles, part
    types, image URLs and the other structure are left as they are."""
    out = dict(message)
    content = out.get("content")
    if isinstance(content, str):
        out["content"] = neutralize_control_tokens(content)
    elif isinstance(content, list):
        out["content"] = [_neutralized_part(part) for part in content]
    for key in ("name", "reasoning_content", "reasoning", "tool_call_id"):
        if isinstance(out.get(key), str):
            out[key] = neutralize_control_tokens(out[key])
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_neutralized_call(call) for call in calls]
    return out


def _neutralized_part(part: Any) -> Any:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        return {**part, "text": neutralize_control_tokens(part["text"])}
    return part


def _neutralized_call(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    out = dict(call)
    if isinstance(out.get("id"), str):
        out["id"] = neutralize_control_tokens(out["id"])
    function = out.get("function")
    if isinstance(function, dict) and "arguments" in function:
        # A string is sent as it is; parsed arguments are rendered by the template's tojson.
        out["function"] = {**function, "arguments": _neutralized(function["arguments"])}
    return out


def _neutralized(value: Any) -> Any:
    """``value`` with every string in it (dict keys included) neutralized."""
    if isinstance(value, str):
        return neutralize_control_tokens(value)
    if isinstance(value, dict):
        return {_neutralized(k): _neutralized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_neutralized(item) for item in value]
    return value



