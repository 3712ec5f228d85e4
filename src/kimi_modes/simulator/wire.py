"""vLLM's OpenAI-compatible wire shapes, serialised with as little work per token as possible.

Each stream gets an encoder whose chunk prefix (``id``, ``created``, ``model``) is serialised
once; a token costs one ``orjson.dumps`` of its text. Shapes follow vLLM ≥ 0.15 with the
``kimi_k2`` parsers: the first chunk carries ``role`` and an empty content, tool calls start
with ``index``/``id``/``type``/``function.name`` and continue with ``function.arguments``
pieces, the last chunk has ``finish_reason`` and ``stop_reason``, then an optional usage chunk
(``choices: []``) and ``data: [DONE]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from kimi_modes.protocol.deltas import ContentDelta, Delta, ReasoningDelta, ToolCallDelta
from kimi_modes.simulator.generation import Generation

DONE = b"data: [DONE]\n\n"
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError",
                500: "InternalServerError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    """vLLM's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status, "InternalServerError")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param,
                                   "code": status}})


def usage(prompt: int, gen: Generation) -> dict[str, Any]:
    completion = gen.completion_tokens
    return {
        "prompt_tokens": prompt, "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "completion_tokens_details": {"reasoning_tokens": gen.reasoning_tokens},
    }


def merge(deltas: Iterable[Delta]) -> list[Delta]:
    """Join consecutive deltas of the same kind (and tool call), as one engine step would."""
    out: list[Delta] = []
    for d in deltas:
        last = out[-1] if out else None
        if isinstance(d, ReasoningDelta) and isinstance(last, ReasoningDelta):
            out[-1] = ReasoningDelta(last.text + d.text)
        elif isinstance(d, ContentDelta) and isinstance(last, ContentDelta):
            out[-1] = ContentDelta(last.text + d.text)
        elif (isinstance(d, ToolCallDelta) and isinstance(last, ToolCallDelta)
              and d.index == last.index and d.id is None):
            out[-1] = ToolCallDelta(last.index, last.id, last.name, last.arguments + d.arguments)
        else:
            out.append(d)
    return out


class ChatEncoder:
    """``chat.completion.chunk`` SSE events of one stream, and the non-streaming body."""

    def __init__(self, rid: str, created: int, model: str, reasoning_field: str) -> None:
        self.rid, self.created, self.model = rid, created, model
        self._head = (b'data: {"id":' + orjson.dumps(rid) + b',"object":"chat.completion.chunk",'
                      b'"created":' + str(created).encode() + b',"model":' + orjson.dumps(model)
                      + b',"choices":[{"index":0,"delta":{')
        self._keys = (["reasoning", "reasoning_content"] if reasoning_field == "both"
                      else [reasoning_field])

    def role(self) -> bytes:
        return self._head + b'"role":"assistant","content":""},"logprobs":null,' \
            b'"finish_reason":null}]}\n\n'

    def delta(self, d: Delta | None, finish: str | None = None,
              stop_reason: str | None = None) -> bytes:
        body = self._delta_body(d) if d is not None else b""
        if finish is None:
            return self._head + body + b'},"logprobs":null,"finish_reason":null}]}\n\n'
        return (self._head + body + b'},"logprobs":null,"finish_reason":' + orjson.dumps(finish)
                + b',"stop_reason":' + orjson.dumps(stop_reason) + b"}]}\n\n")

    def _delta_body(self, d: Delta) -> bytes:
        if isinstance(d, ContentDelta):
            return b'"content":' + orjson.dumps(d.text)
        if isinstance(d, ReasoningDelta):
            text = orjson.dumps(d.text)
            return b",".join(b'"' + k.encode() + b'":' + text for k in self._keys)
        call: dict[str, Any] = {"index": d.index}
        if d.id is not None:
            call.update(id=d.id, type="function", function={"name": d.name})
        else:
            call["function"] = {"arguments": d.arguments}
        return b'"tool_calls":' + orjson.dumps([call])

    def usage_chunk(self, prompt: int, gen: Generation) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self.rid, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage(prompt, gen),
        }) + b"\n\n"

    def body(self, prompt: int, gen: Generation) -> bytes:
        message: dict[str, Any] = {
            "role": "assistant", "content": gen.content or None, "refusal": None,
            "annotations": None, "audio": None, "function_call": None,
        }
        if gen.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in gen.tool_calls
            ]
        for key in self._keys:
            message[key] = gen.reasoning or None
        return orjson.dumps({
            "id": self.rid, "object": "chat.completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason}],
            "service_tier": None, "system_fingerprint": None, "usage": usage(prompt, gen),
            "prompt_logprobs": None, "kv_transfer_params": None,
        })


class CompletionEncoder:
    """``text_completion`` SSE events of one stream, and the non-streaming body."""

    def __init__(self, rid: str, created: int, model: str) -> None:
        self.rid, self.created, self.model = rid, created, model
        self._head = (b'data: {"id":' + orjson.dumps(rid) + b',"object":"text_completion",'
                      b'"created":' + str(created).encode() + b',"model":' + orjson.dumps(model)
                      + b',"choices":[{"index":0,"text":')

    def role(self) -> bytes:
        return b""

    def delta(self, d: Delta | None, finish: str | None = None,
              stop_reason: str | None = None) -> bytes:
        text = orjson.dumps(d.text if isinstance(d, ContentDelta | ReasoningDelta) else "")
        return (self._head + text + b',"logprobs":null,"finish_reason":' + orjson.dumps(finish)
                + b',"stop_reason":' + orjson.dumps(stop_reason) + b"}]}\n\n")

    def usage_chunk(self, prompt: int, gen: Generation) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self.rid, "object": "text_completion", "created": self.created,
            "model": self.model, "choices": [], "usage": usage(prompt, gen),
        }) + b"\n\n"

    def body(self, prompt: int, gen: Generation) -> bytes:
        return orjson.dumps({
            "id": self.rid, "object": "text_completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "text": gen.content, "logprobs": None,
                         "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason,
                         "prompt_logprobs": None}],
            "usage": usage(prompt, gen),
        })


Encoder = ChatEncoder | CompletionEncoder


def frames(enc: Encoder, gen: Generation, prompt: int, *, tokens_per_chunk: int,
           include_usage: bool) -> Iterator[tuple[int, bytes]]:
    """The stream as ``(tokens generated when due, bytes)`` pairs, produced as consumed. The
    first frame holds the role chunk; the last one the finish chunk, the usage chunk if asked,
    and ``[DONE]``. Steps that produce no delta (markers, hidden tokens) send nothing."""
    total = gen.completion_tokens
    first = True
    group: list[Delta] = []
    for generated, step in enumerate(gen.steps(), 1):
        group.extend(step)
        last = generated == total
        if not last and generated % tokens_per_chunk:
            continue
        deltas = merge(group) if tokens_per_chunk > 1 else group
        group = []
        parts = [enc.role()] if first else []
        first = False
        if not last:
            parts.extend(enc.delta(d) for d in deltas)
        else:
            tail = deltas.pop() if deltas and not _is_header(deltas[-1]) else None
            parts.extend(enc.delta(d) for d in deltas)
            parts.append(enc.delta(tail, gen.finish_reason, gen.stop_reason))
            if include_usage:
                parts.append(enc.usage_chunk(prompt, gen))
            parts.append(DONE)
        if parts:
            yield generated, b"".join(parts)


def _is_header(d: Delta) -> bool:
    return isinstance(d, ToolCallDelta) and d.id is not None
