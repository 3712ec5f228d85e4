"""OpenAI chat completions on the wire: request validation, SSE chunks, the final object.

Pure translation between OpenAI's shapes and our vocabulary; no HTTP server code.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kimi_modes.engines.base import Event, Finish, InvalidToolCall, Usage
from kimi_modes.engines.message import MessageBuilder
from kimi_modes.modes.chat import ChatParams
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta

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
    "agent",  # Agent/Swarm budgets: {"max_steps", "max_tokens", "max_time"}
    "swarm",  # Swarm options: {"fan_out", "subagent_max_steps", "subagent_max_time"}
)


class _AgentOptions(BaseModel):
    """``agent``: per-request budgets of an Agent or Swarm run (may only tighten the
    server's)."""

    model_config = ConfigDict(extra="forbid")
    max_steps: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_time: float | None = Field(None, gt=0)


class _SwarmOptions(BaseModel):
    """``swarm``: ``fan_out: "required"`` makes the orchestrator's first step fan out;
    sub-agent budgets (may only tighten the server's)."""

    model_config = ConfigDict(extra="forbid")
    fan_out: Literal["auto", "required"] | None = None
    subagent_max_steps: int | None = Field(None, ge=1)
    subagent_max_time: float | None = Field(None, gt=0)


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


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """The fields of a ``POST /v1/chat/completions`` body we read; others are allowed."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: Annotated[list[_Message], Field(min_length=1)]
    stream: bool = False
    stream_options: _StreamOptions | None = None
    tools: list[_Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    chat_template_kwargs: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    agent: _AgentOptions | None = None
    swarm: _SwarmOptions | None = None

    @field_validator("messages")
    @classmethod
    def _tool_messages_have_ids(cls, messages: list[_Message]) -> list[_Message]:
        for i, m in enumerate(messages):
            if m.role == "tool" and not m.tool_call_id:
                raise ValueError(f"message {i} has role 'tool' but no 'tool_call_id'")
            if m.role == "user" and m.content is None:
                raise ValueError(f"message {i} (user) has no content")
        return messages

    def to_params(self) -> ChatParams:
        """The request as the modes take it (``developer`` becomes ``system``)."""
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
            if isinstance(value, BaseModel):
                value = value.model_dump(exclude_none=True)
            if value is not None:
                extra[key] = value
        return ChatParams(
            messages=messages,
            tools=[t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None,
            tool_choice=self.tool_choice,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            stop=stop,
            seed=self.seed,
            extra=extra,
        )


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
        out = self._frame({}, self.finish or "stop")
        if self.invalid:
            marks = orjson.dumps([invalid_call_body(mark) for mark in self.invalid])
            out = out[: -len(b"}\n\n")] + b',"invalid_tool_calls":' + marks + b"}\n\n"
        if self.include_usage and self.usage is not None:
            out += self._usage_prefix + orjson.dumps(usage_body(self.usage)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        """An error after the stream started: a data frame with ``error``, then ``[DONE]``."""
        return b"data: " + orjson.dumps(body) + b"\n\ndata: [DONE]\n\n"


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


def completion_body(completion_id: str, model: str, events: list[Event]) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object for a finished list of events.

    A tool call that failed validation carries a non-standard ``"error"`` key beside its
    ``function``; valid calls are exactly OpenAI's. ``usage`` is ``null`` when the engine
    reported none (never made up)."""
    builder = MessageBuilder()
    for event in events:
        builder.add(event)
    answer = builder.message()
    message = answer.to_openai_message()
    for call, body in zip(answer.tool_calls, message.get("tool_calls", ()), strict=True):
        if call.error is not None:
            body["error"] = call.error
    usage, finish = builder.usage, builder.finish_reason or "stop"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_body(usage) if usage is not None else None,
    }
