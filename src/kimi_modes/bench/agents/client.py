"""HTTP for ``kimi-modes bench agents``: one streamed chat request, and the gateway's runs API.

:func:`chat` sends a chat completion with ``stream: true`` (and ``include_usage``) and reads
the SSE stream to its end: the response id, the content, the finish reason, the usage, or the
error. A server that answers with a plain JSON completion instead is read too. The caller
bounds the time (cancelling closes the connection, which cancels an Agent or Swarm run on the
gateway).

:class:`RunsClient` reads ``GET {base}/runs/{id}`` and ``GET {base}/runs?parent_id=``; its
:meth:`~RunsClient.available` probe tells a gateway from an endpoint without runs (a bare vLLM
or Moonshot's API answer 404 there).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from kimi_modes.bench._http import EndpointError, error_body_message

#: Run statuses after which a run record no longer changes.
TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})
_RESPONSE_ID = re.compile(r"^chatcmpl-([0-9A-Za-z]+)$")
_MAX_ERROR = 300


@dataclass(slots=True)
class ChatOutcome:
    """What one chat request gave. ``error`` is ``None`` when the answer arrived whole."""

    response_id: str | None = None
    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    status: int | None = None
    chunks: int = 0


def run_id_of(response_id: str | None) -> str | None:
    """The gateway's run id for an Agent/Swarm response id (``chatcmpl-<hex>`` →
    ``run_<hex>``), or ``None`` for an id of another shape."""
    match = _RESPONSE_ID.match(response_id or "")
    return f"run_{match.group(1)}" if match else None


async def chat(session: aiohttp.ClientSession, base: str, body: dict[str, Any],
               headers: dict[str, str], outcome: ChatOutcome) -> None:
    """Stream ``body`` to ``{base}/chat/completions``, filling ``outcome`` as the answer
    arrives (so a caller that times out still has the id and the text so far)."""
    payload = {**body, "stream": True,
               "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
    try:
        async with session.post(f"{base}/chat/completions", json=payload,
                                headers=headers) as resp:
            outcome.status = resp.status
            if resp.status != 200:
                outcome.error = f"HTTP {resp.status}: {_error_text(await resp.read())}"
                return
            if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                _read_completion(await resp.read(), outcome)
                return
            await _read_stream(resp, outcome)
    except aiohttp.ClientError as exc:
        outcome.error = f"connection failed: {_one_line(str(exc) or type(exc).__name__)}"


async def _read_stream(resp: aiohttp.ClientResponse, outcome: ChatOutcome) -> None:
    buffer = b""
    content: list[str] = []
    done = False
    async for data in resp.content.iter_any():
        buffer = (buffer + data).replace(b"\r\n", b"\n")
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            text = line[5:].strip()
            if text == b"[DONE]":
                done = True
                continue
            try:
                chunk = json.loads(text)
            except ValueError:
                continue
            if _take_chunk(chunk, outcome, content):
                outcome.content = "".join(content)
    outcome.content = "".join(content)
    if outcome.error is None and not done:
        outcome.error = "the stream ended without [DONE]"


def _take_chunk(chunk: Any, outcome: ChatOutcome, content: list[str]) -> bool:
    """Read one chunk into ``outcome``; whether content grew."""
    if not isinstance(chunk, dict):
        return False
    if "error" in chunk:
        outcome.error = "stream error: " + _error_text(json.dumps(chunk).encode())
        return False
    outcome.chunks += 1
    if outcome.response_id is None and isinstance(chunk.get("id"), str):
        outcome.response_id = chunk["id"]
    if isinstance(chunk.get("usage"), dict):
        outcome.usage = chunk["usage"]
    grew = False
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str) and delta["content"]:
            content.append(delta["content"])
            grew = True
        if choice.get("finish_reason"):
            outcome.finish_reason = choice["finish_reason"]
    return grew


def _read_completion(raw: bytes, outcome: ChatOutcome) -> None:
    try:
        body = json.loads(raw)
        outcome.response_id = body.get("id")
        choice = body["choices"][0]
        outcome.content = choice["message"].get("content") or ""
        outcome.finish_reason = choice.get("finish_reason")
        outcome.usage = body.get("usage")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        outcome.error = "the answer is neither an SSE stream nor a chat completion"


class RunsClient:
    """The gateway's runs API at ``{base}/runs``."""

    def __init__(self, session: aiohttp.ClientSession, base: str,
                 headers: dict[str, str]) -> None:
        self.session = session
        self.base = base
        self.headers = headers

    async def available(self) -> bool:
        """Whether ``GET {base}/runs`` answers as the runs API (any other answer but an
        auth refusal means no runs API)."""
        try:
            async with self.session.get(f"{self.base}/runs", params={"limit": "1"},
                                        headers=self.headers) as resp:
                if resp.status in (401, 403):
                    raise EndpointError(f"{self.base}/runs refused the API key "
                                        f"(HTTP {resp.status})")
                if resp.status != 200:
                    return False
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, ValueError):
            return False
        return isinstance(body, dict) and body.get("object") == "list"

    async def get(self, run_id: str) -> dict[str, Any] | None:
        """The run record, or ``None`` when the gateway does not know the id."""
        async with self.session.get(f"{self.base}/runs/{run_id}",
                                    headers=self.headers) as resp:
            if resp.status == 404:
                return None
            resp.raise_for_status()
            body = await resp.json(content_type=None)
            return body if isinstance(body, dict) else None

    async def finished(self, run_id: str, wait: float = 10.0) -> dict[str, Any] | None:
        """The run record once it has ended (or as it is after ``wait`` seconds): the
        response can end a moment before the run records its figures."""
        deadline = time.monotonic() + wait
        while True:
            record = await self.get(run_id)
            if record is None or record.get("status") in TERMINAL \
                    or time.monotonic() >= deadline:
                return record
            await asyncio.sleep(0.05)

    async def children(self, run_id: str) -> list[dict[str, Any]]:
        """Every sub-agent run of the swarm run ``run_id`` (all pages)."""
        found: list[dict[str, Any]] = []
        while True:
            params = {"parent_id": run_id, "limit": "100", "offset": str(len(found))}
            async with self.session.get(f"{self.base}/runs", params=params,
                                        headers=self.headers) as resp:
                resp.raise_for_status()
                body = await resp.json(content_type=None)
            page = body.get("data") or []
            found.extend(page)
            if not body.get("has_more") or not page:
                return found

    async def cancel(self, run_id: str) -> None:
        """Ask the gateway to cancel ``run_id`` (best effort: it may have ended already)."""
        try:
            async with self.session.delete(f"{self.base}/runs/{run_id}",
                                           headers=self.headers) as resp:
                await resp.read()
        except aiohttp.ClientError:
            pass


def _error_text(raw: bytes) -> str:
    return _one_line(error_body_message(raw)) or "(empty body)"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + " …"
