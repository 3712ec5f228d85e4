"""One streamed request and its timings, measured as vLLM's ``vllm bench serve`` measures them.

The SSE stream is read straight off the socket (aiohttp), one timestamp per network read:

- ``start_time``: just before the request is sent (after any client-side concurrency wait);
- ``ttft``: from ``start_time`` to the first chunk that carries a generated token;
- ``itl``: the gaps between consecutive token chunks (one entry per chunk after the first, so
  a chunk holding several tokens is one gap, as in vLLM);
- ``latency`` (E2EL): from ``start_time`` to the last token chunk (not to ``[DONE]``).

Which chunks are token chunks: on ``/v1/completions`` every chunk with a choice (vLLM's rule);
on ``/v1/chat/completions`` every chunk with a choice except one whose delta carries nothing
generated and no ``finish_reason`` — the ``{"role": "assistant", "content": ""}`` opener, which
some servers send before any token. Reasoning deltas (``reasoning_content`` or ``reasoning``)
and tool-call deltas are tokens, as in vLLM, which times every choice chunk whatever its delta
holds; like vLLM, ``generated_text`` keeps only ``content`` (chat) or ``text`` (completions).

Token counts come from the server's ``usage`` (``stream_options.include_usage``):
``completion_tokens`` becomes ``output_tokens`` and ``prompt_tokens`` replaces the expected
``prompt_len``. Without usage, ``output_tokens`` is the number of token chunks.

A request fails when the status is not 200, the connection breaks, the stream carries an
``error`` object, it ends without ``[DONE]``, or no token chunk came; ``error`` says which.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kimi_modes.bench._http import exception_text, http_error

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
_GENERATED_KEYS = ("content", "reasoning_content", "reasoning", "tool_calls")
_MAX_ERROR = 500


@dataclass(slots=True)
class RequestInput:
    """What to send: the full URL, the JSON body (``stream`` is set by the sender) and the
    headers; ``prompt_len`` is the expected prompt length."""

    url: str
    chat: bool
    body: dict[str, Any]
    prompt_len: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RequestOutput:
    """The outcome of one request, in vLLM's ``RequestFuncOutput`` terms (seconds,
    ``time.perf_counter`` clock for ``start_time``)."""

    generated_text: str = ""
    success: bool = False
    latency: float = 0.0
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    prompt_len: int = 0
    error: str = ""
    start_time: float = 0.0
    client_queue_time: float = 0.0


class SSEReader:
    """Splits a byte stream into the ``data`` payloads of its server-sent events."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        """The payloads of the events completed by ``data`` (comments and other fields are
        dropped; several ``data`` lines of one event are joined with newlines)."""
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [p for p in (_payload(e) for e in events) if p is not None]

    def close(self) -> list[str]:
        """The payload of a last event the stream did not terminate with a blank line."""
        rest, self._buffer = self._buffer, b""
        payload = _payload(rest.rstrip(b"\r\n"))
        return [payload] if payload is not None else []


def _payload(event: bytes) -> str | None:
    data = [
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(data).decode("utf-8", errors="replace") if data else None


def _is_token_chunk(choice: dict[str, Any], chat: bool) -> bool:
    if not chat or choice.get("finish_reason") is not None:
        return True
    delta = choice.get("delta") or {}
    return any(delta.get(key) for key in _GENERATED_KEYS)




class _StreamState:
    """What one stream has shown so far."""

    def __init__(self, chat: bool, start: float) -> None:
        self.chat = chat
        self.start = start
        self.last = start
        self.first_seen = False
        self.done = False
        self.error = ""
        self.text: list[str] = []
        self.chunks = 0
        self.out = RequestOutput(start_time=start)

    def handle(self, payload: str, now: float) -> None:
        if payload.strip() == "[DONE]":
            self.done = True
            return
        data = json.loads(payload)
        if not isinstance(data, dict):
            return
        if data.get("error") is not None and not data.get("choices"):
            err = data["error"]
            message = err.get("message") if isinstance(err, dict) else err
            self.error = f"error in the stream: {message}"[:_MAX_ERROR]
            return
        choices = data.get("choices")
        if choices and isinstance(choices[0], dict):
            choice = choices[0]
            if _is_token_chunk(choice, self.chat):
                if not self.first_seen:
                    self.first_seen = True
                    self.out.ttft = now - self.start
                else:
                    self.out.itl.append(now - self.last)
                self.last = now
                self.chunks += 1
            piece = (choice.get("delta") or {}).get("content") if self.chat else choice.get("text")
            if isinstance(piece, str):
                self.text.append(piece)
        usage = data.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("completion_tokens"), int):
                self.out.output_tokens = usage["completion_tokens"]
            if isinstance(usage.get("prompt_tokens"), int):
                self.out.prompt_len = usage["prompt_tokens"]

    def finish(self) -> RequestOutput:
        out = self.out
        out.generated_text = "".join(self.text)
        out.latency = self.last - self.start
        if not out.output_tokens:
            out.output_tokens = self.chunks
        if self.error:
            out.error = self.error
        elif not self.first_seen:
            out.error = "no token came before the stream ended"
        elif not self.done:
            out.error = "the stream ended without [DONE]"
        out.success = not out.error
        return out


async def send_request(request: RequestInput, session: aiohttp.ClientSession) -> RequestOutput:
    """Send one streamed request and time it. Never raises for the request's own failures
    (they are in ``error``); cancellation propagates."""
    body = {**request.body, "stream": True}
    body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    start = time.perf_counter()
    state = _StreamState(request.chat, start)
    state.out.prompt_len = request.prompt_len
    try:
        async with session.post(request.url, json=body, headers=request.headers) as response:
            if response.status != 200:
                state.out.error = http_error(response.status, await response.read(),
                                             response.reason)[:_MAX_ERROR]
                return state.out
            reader = SSEReader()
            async for data in response.content.iter_any():
                now = time.perf_counter()
                for payload in reader.feed(data):
                    state.handle(payload, now)
            now = time.perf_counter()
            for payload in reader.close():
                state.handle(payload, now)
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
        state.out.error = ("the request timed out" if isinstance(exc, TimeoutError)
                           else exception_text(exc)[:_MAX_ERROR])
        return state.out
    return state.finish()
