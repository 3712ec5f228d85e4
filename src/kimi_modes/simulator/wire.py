"""vLLM's OpenAI-compatible wire shapes, serialised with as little work per token as possible.

Each stream gets an encoder whose chunk prefix (``id``, ``created``, ``model``) is serialised
once; a token costs one ``orjson.dumps`` of its text. Shapes follow vLLM ≥ 0.15 with the
``kimi_k2`` parsers: the first chunk carries ``role`` and an empty content, tool calls start
with ``index``/``id``/``type``/``function.name`` and continue with ``function.arguments``
pieces, the last chunk has ``finish_reason`` and ``stop_reason``, then an optional usage chunk
(``choices: []``) and ``data: [DONE]``.

Several choices (``n``) stream interleaved, each with its own role and finish chunks, as
vLLM's do; the usage counts them all. With logprobs, a chunk carries those of the tokens
generated since the previous chunk of its choice, and tokens whose step sends no chunk
(markers the parsers hold back) lose theirs, as in vLLM's streams; a whole answer has them
all.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from kimi_modes.protocol.deltas import ContentDelta, Delta, ReasoningDelta, ToolCallDelta
from kimi_modes.simulator.generation import Generation
from kimi_modes.simulator.logprobs import chat_entries, completion_logprobs

DONE = b"data: [DONE]\n\n"
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError",
                500: "InternalServerError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    """vLLM's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status, "InternalServerError")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param,
                                   "code": status}})


def usage(prompt: int, gens: Sequence[Generation]) -> dict[str, Any]:
    """The usage of the choices ``gens`` of one prompt (completion tokens summed)."""
    completion = sum(gen.completion_tokens for gen in gens)
    return {
        "prompt_tokens": prompt, "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "completion_tokens_details": {"reasoning_tokens": sum(g.reasoning_tokens for g in gens)},
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
    """``chat.completion.chunk`` SSE events of one choice of a stream (``index``), and the
    non-streaming body of them all."""

    def __init__(self, rid: str, created: int, model: str, reasoning_field: str,
                 index: int = 0) -> None:
        self.rid, self.created, self.model = rid, created, model
        self._head = (b'data: {"id":' + orjson.dumps(rid) + b',"object":"chat.completion.chunk",'
                      b'"created":' + str(created).encode() + b',"model":' + orjson.dumps(model)
                      + b',"choices":[{"index":' + str(index).encode() + b',"delta":{')
        self._keys = (["reasoning", "reasoning_content"] if reasoning_field == "both"
                      else [reasoning_field])

    def role(self) -> bytes:
        return self._head + b'"role":"assistant","content":""},"logprobs":null,' \
            b'"finish_reason":null}]}\n\n'

    def delta(self, d: Delta | None, finish: str | None = None,
              stop_reason: str | None = None, logprobs: bytes | None = None) -> bytes:
        body = self._delta_body(d) if d is not None else b""
        if logprobs is None:
            logprobs = b"null"
        if finish is None:
            return (self._head + body + b'},"logprobs":' + logprobs
                    + b',"finish_reason":null}]}\n\n')
        return (self._head + body + b'},"logprobs":' + logprobs + b',"finish_reason":'
                + orjson.dumps(finish) + b',"stop_reason":' + orjson.dumps(stop_reason)
                + b"}]}\n\n")

    def logprobs(self, tokens: Sequence[str], start: int, top: int) -> bytes:
        """The ``logprobs`` of a chunk carrying ``tokens`` (the first generated at ``start``)."""
        return orjson.dumps({"content": chat_entries(tokens, start, top)})

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

    def usage_chunk(self, prompt: int, gens: Sequence[Generation]) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self.rid, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage(prompt, gens),
        }) + b"\n\n"

    def body(self, prompt: int, gens: Sequence[Generation], top: int | None = None) -> bytes:
        return orjson.dumps({
            "id": self.rid, "object": "chat.completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": i, "message": self._message(gen),
                         "logprobs": (None if top is None else
                                      {"content": chat_entries(gen.tokens, 0, top)}),
                         "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason}
                        for i, gen in enumerate(gens)],
            "service_tier": None, "system_fingerprint": None, "usage": usage(prompt, gens),
            "prompt_logprobs": None, "kv_transfer_params": None,
        })

    def _message(self, gen: Generation) -> dict[str, Any]:
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
        return message


class CompletionEncoder:
    """``text_completion`` SSE events of one choice of a stream (``index``), and the
    non-streaming body of them all."""

    def __init__(self, rid: str, created: int, model: str, index: int = 0) -> None:
        self.rid, self.created, self.model = rid, created, model
        self._head = (b'data: {"id":' + orjson.dumps(rid) + b',"object":"text_completion",'
                      b'"created":' + str(created).encode() + b',"model":' + orjson.dumps(model)
                      + b',"choices":[{"index":' + str(index).encode() + b',"text":')
        self._offset = 0  # characters of text before the next logprobs' first token

    def role(self) -> bytes:
        return b""

    def delta(self, d: Delta | None, finish: str | None = None,
              stop_reason: str | None = None, logprobs: bytes | None = None) -> bytes:
        text = orjson.dumps(d.text if isinstance(d, ContentDelta | ReasoningDelta) else "")
        return (self._head + text + b',"logprobs":' + (logprobs or b"null")
                + b',"finish_reason":' + orjson.dumps(finish)
                + b',"stop_reason":' + orjson.dumps(stop_reason) + b"}]}\n\n")

    def logprobs(self, tokens: Sequence[str], start: int, top: int) -> bytes:
        """The ``logprobs`` of a chunk carrying ``tokens`` (the first generated at ``start``)."""
        out = completion_logprobs(tokens, start, top, self._offset)
        self._offset += sum(len(t) for t in tokens)
        return orjson.dumps(out)

    def usage_chunk(self, prompt: int, gens: Sequence[Generation]) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self.rid, "object": "text_completion", "created": self.created,
            "model": self.model, "choices": [], "usage": usage(prompt, gens),
        }) + b"\n\n"

    def body(self, prompt: int, gens: Sequence[Generation], top: int | None = None) -> bytes:
        return orjson.dumps({
            "id": self.rid, "object": "text_completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": i, "text": gen.content,
                         "logprobs": (None if top is None
                                      else completion_logprobs(gen.tokens, 0, top, 0)),
                         "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason,
                         "prompt_logprobs": None}
                        for i, gen in enumerate(gens)],
            "usage": usage(prompt, gens),
        })


Encoder = ChatEncoder | CompletionEncoder


def frames(encs: Sequence[Encoder], gens: Sequence[Generation], prompt: int, *,
           tokens_per_chunk: int, include_usage: bool,
           top: int | None = None) -> Iterator[tuple[int, bytes]]:
    """The stream as ``(tokens generated when due, bytes)`` pairs, produced as consumed: the
    choices ``gens`` (each with its encoder in ``encs``) interleaved by when their tokens are
    due; with ``top``, the chunks carry logprobs. Each choice's first frame holds its role
    chunk, its last one its finish chunk; the very last frame also the usage chunk if asked,
    and ``[DONE]``. Steps that produce no delta (markers, hidden tokens) send nothing."""
    streams = [_choice_frames(enc, gen, tokens_per_chunk, top)
               for enc, gen in zip(encs, gens, strict=True)]
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda f: f[0])
    held: tuple[int, bytes] | None = None
    for frame in merged:
        if held is not None:
            yield held
        held = frame
    tail = (encs[0].usage_chunk(prompt, gens) if include_usage else b"") + DONE
    if held is not None:
        yield held[0], held[1] + tail


def _choice_frames(enc: Encoder, gen: Generation, tokens_per_chunk: int,
                   top: int | None) -> Iterator[tuple[int, bytes]]:
    total = gen.completion_tokens
    first = True
    group: list[Delta] = []
    start = 0  # the first token of the group
    for generated, step in enumerate(gen.steps(), 1):
        group.extend(step)
        last = generated == total
        if not last and generated % tokens_per_chunk:
            continue
        deltas = merge(group) if tokens_per_chunk > 1 else group
        group = []
        logprobs = enc.logprobs(gen.tokens[start:generated], start, top) if top is not None \
            else None
        start = generated
        parts = [enc.role()] if first else []
        first = False
        tail = deltas.pop() if last and deltas and not _is_header(deltas[-1]) else None
        for d in deltas:
            parts.append(enc.delta(d, logprobs=logprobs))
            logprobs = None  # on the group's first chunk
        if last:
            parts.append(enc.delta(tail, gen.finish_reason, gen.stop_reason, logprobs))
        if parts:
            yield generated, b"".join(parts)


def _is_header(d: Delta) -> bool:
    return isinstance(d, ToolCallDelta) and d.id is not None
