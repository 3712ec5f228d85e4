"""OpenAI chat completions on the wire: request validation, SSE chunks, the final object.

Pure translation between OpenAI's shapes and our vocabulary; no HTTP server code.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from kimi_modes.engines.base import (
    ChatRequest,
    Choice,
    Event,
    Finish,
    InvalidToolCall,
    Logprobs,
    TokenLogprob,
    Usage,
)
from kimi_modes.engines.message import ChoicesBuilder
from kimi_modes.modes.options import NO_OPTIONS, AgentOptions, ModeOptions, SwarmOptions
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.server.errors import APIError, openai_error_body
from kimi_modes.server.openai_answer import ChatCompletion, OpenAIError
from kimi_modes.server.wire import MODEL_FIELD, WireRequest

# OpenAI / vLLM sampling parameters forwarded to the engine as they are.
PASSTHROUGH = (
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "top_k",
    "min_p",
    "repetition_penalty",
    "ignore_eos",
    "min_tokens",
    "parallel_tool_calls",
)

#: The most choices one request may ask for (``n``; OpenAI's own bound).
MAX_CHOICES = 128

#: What ``reasoning_effort`` takes: every value the ``openai`` SDK sends.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
#: ``reasoning_effort`` → K3's ``thinking_effort`` (``none`` switches thinking off instead).
#: A hint: a family without efforts (K2.x) ignores it (docs/api.md has the table).
EFFORTS: dict[str, str] = {"minimal": "low", "low": "low", "medium": "high", "high": "high",
                           "xhigh": "max", "max": "max"}
#: An explicit K3 ``thinking_effort`` (``chat_template_kwargs.thinking_effort``,
#: ``thinking.effort``): the encoder's values, so ``medium`` is a 400 here as it is there.
ThinkingEffort = Literal["low", "high", "max"]


class _Function(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: _Function


class _CallFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str | dict[str, Any] = ""


class _ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: _CallFunction


class _MessageBase(BaseModel):
    model_config = ConfigDict(extra="allow")
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _UserMessage(_MessageBase):
    role: Literal["user"]
    content: str | list[dict[str, Any]]


class _ToolMessage(_MessageBase):
    role: Literal["tool"]
    tool_call_id: str


class _ChatMessage(_MessageBase):
    role: Literal["system", "developer", "assistant"]
    tool_calls: list[_ToolCall] | None = None
    reasoning_content: str | None = None


_Message = Annotated[_UserMessage | _ToolMessage | _ChatMessage, Field(discriminator="role")]


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool = False


class _TemplateKwargs(BaseModel):
    """``chat_template_kwargs``: Kimi's template switches (others are passed on)."""

    model_config = ConfigDict(extra="allow")
    thinking: StrictBool | None = None
    thinking_effort: ThinkingEffort | None = None
    preserve_thinking: StrictBool | None = None


class _ThinkingSwitch(BaseModel):
    """``thinking``: Moonshot's form of the switch and of K3's effort (``{"type": "enabled",
    "effort": "high"}``, as Moonshot's API and KVV's ``--think-mode kimi`` send it). Either
    may be left out: no ``type`` leaves the switch to the model id."""

    model_config = ConfigDict(extra="allow")
    type: Literal["enabled", "disabled"] | None = None
    effort: ThinkingEffort | None = None


class ChatCompletionBody(BaseModel):
    """The fields of a ``POST /v1/chat/completions`` body we read; others are allowed."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, json_schema_extra=MODEL_FIELD)
    messages: Annotated[list[_Message], Field(min_length=1)]
    stream: StrictBool = False
    stream_options: _StreamOptions | None = None
    tools: list[_Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    chat_template_kwargs: _TemplateKwargs | None = None
    thinking: _ThinkingSwitch | None = None
    reasoning_effort: ReasoningEffort | None = None
    agent: AgentOptions | None = None
    swarm: SwarmOptions | None = None

    def to_wire(self) -> WireRequest:
        """The request as the gateway takes it (``developer`` becomes ``system``; the
        thinking switch decoded by :func:`thinking_switch`, the effort by
        :func:`thinking_effort`)."""
        messages = []
        for m in self.messages:
            msg = m.model_dump(exclude_none=True)
            if msg["role"] == "developer":
                msg["role"] = "system"
            messages.append(msg)
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        fields = self.__dict__
        others = self.model_extra or {}
        extra = {}
        for key in PASSTHROUGH:
            value = fields.get(key, others.get(key))
            if value is not None:
                extra[key] = value
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        kwargs = self.chat_template_kwargs
        preserve = kwargs.preserve_thinking if kwargs else None
        request = ChatRequest(
            messages=messages,
            thinking_effort=thinking_effort(self),
            effort_hint=EFFORTS.get(self.reasoning_effort or ""),
            preserve_thinking=preserve,
            tools=[t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None,
            tool_choice=self.tool_choice,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            stop=stop,
            seed=self.seed,
            extra=extra,
            n=self.n or 1,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
        )
        options = NO_OPTIONS if self.agent is None and self.swarm is None else ModeOptions(
            agent=self.agent or NO_OPTIONS.agent, swarm=self.swarm or NO_OPTIONS.swarm)
        return WireRequest(
            self.model, request, thinking_switch(self), options, stream=self.stream,
            include_usage=bool(self.stream_options and self.stream_options.include_usage))


def thinking_switch(body: ChatCompletionBody) -> bool | None:
    """The thinking switch an OpenAI body sets: ``chat_template_kwargs.thinking``
    (true/false), ``thinking.type`` (``enabled``/``disabled``, Moonshot's form) and
    ``reasoning_effort: "none"`` (off); ``None`` when it sets none. If several are given
    they must agree. Other reasoning_effort values (``minimal`` … ``max``) switch nothing (they
    set K3's effort, see :data:`EFFORTS`): clients that always send ``medium`` keep the
    model id's mode. Raises :class:`APIError` (400) naming the field."""
    wanted: list[tuple[str, bool]] = []
    kwargs = body.chat_template_kwargs
    if kwargs is not None:
        if kwargs.thinking is not None:
            wanted.append(("chat_template_kwargs.thinking", kwargs.thinking))
        if "enable_thinking" in (kwargs.model_extra or {}):
            raise APIError(400, "Kimi's template reads 'thinking', not 'enable_thinking': "
                           "send chat_template_kwargs.thinking",
                           param="chat_template_kwargs.enable_thinking")
    if body.thinking is not None and body.thinking.type is not None:
        wanted.append(("thinking.type", body.thinking.type == "enabled"))
    if body.reasoning_effort == "none":
        wanted.append(("reasoning_effort", False))
    values = {v for _, v in wanted}
    if len(values) > 1:
        fields = ", ".join(f"{name}={'on' if v else 'off'}" for name, v in wanted)
        raise APIError(400, f"the thinking switches disagree: {fields}", param=wanted[0][0])
    return values.pop() if values else None


def thinking_effort(body: ChatCompletionBody) -> str | None:
    """The explicit K3 effort an OpenAI body asks for: ``chat_template_kwargs.thinking_effort``
    or ``thinking.effort`` (Moonshot's spelling); ``None`` when neither is given. Both given
    must agree; otherwise a 400 names both fields. (``reasoning_effort`` is only a hint
    these win over, see :data:`EFFORTS`; a family without efforts refuses one downstream.)"""
    kwargs = body.chat_template_kwargs
    template = kwargs.thinking_effort if kwargs is not None else None
    moonshot = body.thinking.effort if body.thinking is not None else None
    if template is not None and moonshot is not None and template != moonshot:
        raise APIError(400, "the thinking efforts disagree: chat_template_kwargs.thinking_effort="
                       f"{template}, thinking.effort={moonshot}; send one of them",
                       param="chat_template_kwargs.thinking_effort")
    return template if template is not None else moonshot


class OpenAIChat:
    """``POST /v1/chat/completions`` as a :class:`~kimi_modes.server.wire.WireFormat`."""

    label = "chat_completions"
    id_prefix = "chatcmpl-"
    request_model: type[BaseModel] = ChatCompletionBody
    answer_model: type[BaseModel] = ChatCompletion
    error_model: type[BaseModel] = OpenAIError

    def parse(self, body: dict[str, Any]) -> WireRequest:
        try:
            return ChatCompletionBody.model_validate(body).to_wire()
        except ValidationError as exc:
            raise APIError.from_exception(exc) from None

    def encoder(self, answer_id: str, wire: WireRequest) -> ChunkEncoder:
        request = wire.request
        if request.n > 1 or request.logprobs is not None:
            return ChoicesEncoder(answer_id, wire.model, include_usage=wire.include_usage,
                                  n=request.n)
        return ChunkEncoder(answer_id, wire.model, include_usage=wire.include_usage)

    def body(self, answer_id: str, wire: WireRequest, events: list[Event]) -> dict[str, Any]:
        return completion_body(answer_id, wire.model, events,
                               logprobs=wire.request.logprobs is not None)

    def error_body(self, err: APIError) -> dict[str, Any]:
        return openai_error_body(err)


class ChunkEncoder:
    """Turns engine events into ``data: {chat.completion.chunk}`` SSE frames (bytes).

    Standard OpenAI chunks, with one addition: when tool calls failed validation, the
    finish chunk carries a top-level ``"invalid_tool_calls": [{"index", "id", "error"}]``
    (clients that do not know the key ignore it). The usage chunk is sent when the client
    asked for it and the engine reported usage.
    """

    def __init__(self, completion_id: str, model: str, *, include_usage: bool) -> None:
        self.include_usage = include_usage
        created = int(time.time())
        head = orjson.dumps(
            {"id": completion_id, "object": "chat.completion.chunk", "created": created,
             "model": model}
        )
        # Every frame shares this prefix; only the delta and finish_reason vary.
        self._prefix = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'
        self._usage_prefix = b"data: " + head[:-1] + b',"choices":[],"usage":'
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.invalid: list[InvalidToolCall] = []

    def _frame(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        tail = b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"
        return self._prefix + orjson.dumps(delta) + tail

    def start(self) -> bytes:
        return self._frame({"role": "assistant", "content": ""})

    def feed(self, event: Event) -> bytes:
        """The frame for one event (empty for usage and finish, which :meth:`end` sends)."""
        if isinstance(event, ContentDelta):
            return self._frame({"content": event.text})
        if isinstance(event, ReasoningDelta):
            return self._frame({"reasoning_content": event.text})
        if isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            function: dict[str, Any] = {"arguments": event.arguments}
            if event.name is not None:
                function["name"] = event.name
            call["function"] = function
            return self._frame({"tool_calls": [call]})
        if isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, InvalidToolCall):
            self.invalid.append(event)
        elif isinstance(event, Finish):
            self.finish = event.reason
        return b""

    def end(self) -> bytes:
        """The final frame (finish_reason, and ``invalid_tool_calls`` when there are some),
        the usage frame when asked for and known, ``[DONE]``."""
        return self._finish_frame(self.finish or "stop", self.invalid) + self._tail()

    def _finish_frame(self, reason: str, invalid: list[InvalidToolCall]) -> bytes:
        out = self._frame({}, reason)
        if invalid:
            marks = orjson.dumps([invalid_call_body(mark) for mark in invalid])
            out = out[: -len(b"}\n\n")] + b',"invalid_tool_calls":' + marks + b"}\n\n"
        return out

    def _tail(self) -> bytes:
        """The usage frame when asked for and known, then ``[DONE]``."""
        out = b""
        if self.include_usage and self.usage is not None:
            out += self._usage_prefix + orjson.dumps(usage_body(self.usage)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(err: APIError) -> bytes:
        """An error after the stream started: a data frame with ``error``, then ``[DONE]``."""
        return b"data: " + orjson.dumps(openai_error_body(err)) + b"\n\ndata: [DONE]\n\n"


class ChoicesEncoder(ChunkEncoder):
    """The chunks of an answer with several choices, or with logprobs (the plain
    :class:`ChunkEncoder` stays the path of every other answer).

    Every frame names its choice (``index``); each choice opens with its role frame and ends
    with its own finish frame (with its ``invalid_tool_calls``) as soon as it ends. A token's
    logprobs ride on the first frame of its choice written after they came: the frame of the
    text the token produced, or, for a token that produced none of its own (a marker), the
    next one (the finish frame at the latest); so joined in order, a choice's frames'
    ``logprobs.content`` are its ``logprobs.content`` in the whole answer. A frame with none
    has ``"logprobs": null``."""

    def __init__(self, completion_id: str, model: str, *, include_usage: bool,
                 n: int) -> None:
        super().__init__(completion_id, model, include_usage=include_usage)
        self._head = self._prefix[: -len(b'0,"delta":')]  # up to the choice's index
        self._n = n
        self._index = 0
        self._pending: dict[int, list[TokenLogprob]] = {}
        self._marks: dict[int, list[InvalidToolCall]] = {}
        self._finished: set[int] = set()

    def _frame(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        pending = self._pending.pop(self._index, None)
        logprobs = b'{"content":' + orjson.dumps(pending) + b"}" if pending else b"null"
        return (self._head + str(self._index).encode() + b',"delta":' + orjson.dumps(delta)
                + b',"logprobs":' + logprobs + b',"finish_reason":' + orjson.dumps(finish)
                + b"}]}\n\n")

    def start(self) -> bytes:
        frames = []
        for index in range(self._n):
            self._index = index
            frames.append(self._frame({"role": "assistant", "content": ""}))
        self._index = 0
        return b"".join(frames)

    def feed(self, event: Event) -> bytes:
        if isinstance(event, Logprobs):
            self._pending.setdefault(self._index, []).extend(event.content)
        elif isinstance(event, Choice):
            self._index = event.index
        elif isinstance(event, InvalidToolCall):
            self._marks.setdefault(self._index, []).append(event)
        elif isinstance(event, Finish):
            self._finished.add(self._index)
            return self._finish_frame(event.reason, self._marks.pop(self._index, []))
        else:
            return super().feed(event)
        return b""

    def end(self) -> bytes:
        """The finish frames of the choices that did not end, the usage frame, ``[DONE]``."""
        out = b""
        for index in range(self._n):
            if index not in self._finished:
                self._index = index
                out += self._finish_frame("stop", self._marks.pop(index, []))
        return out + self._tail()


def invalid_call_body(mark: InvalidToolCall) -> dict[str, Any]:
    """One entry of the finish chunk's ``invalid_tool_calls``."""
    return {"index": mark.index, "id": mark.id, "error": mark.error}


def usage_body(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body


def completion_body(completion_id: str, model: str, events: list[Event], *,
                    logprobs: bool = False) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object for a finished list of events: a choice
    per choice the events hold (:class:`~kimi_modes.engines.message.ChoicesBuilder`).

    A tool call that failed validation carries a non-standard ``"error"`` key beside its
    ``function``; valid calls are exactly OpenAI's. With ``logprobs``, each choice's
    ``logprobs`` is ``{"content": [...]}`` (every token the engine gave, in order), else
    ``null``. ``usage`` is ``null`` when the engine reported none (never made up)."""
    builder = ChoicesBuilder()
    for event in events:
        builder.add(event)
    choices = []
    for index, choice in enumerate(builder.choices()):
        answer = choice.message()
        message = answer.to_openai_message()
        for call, body in zip(answer.tool_calls, message.get("tool_calls", ()), strict=True):
            if call.error is not None:
                body["error"] = call.error
        choices.append({"index": index, "message": message,
                        "logprobs": {"content": choice.logprobs or []} if logprobs else None,
                        "finish_reason": choice.finish_reason or "stop"})
    usage = builder.usage
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_body(usage) if usage is not None else None,
    }
