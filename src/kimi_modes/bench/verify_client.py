"""One non-streaming chat-completion request of the tool-call verifier, with retries.

A request is retried (at most ``max_retries`` more times) when the answer is worth waiting
for: HTTP 408, 409, 429 or any 5xx, a connection error, a broken or truncated body, or no
answer within ``timeout`` seconds. The wait before retry *n* (1-based) is ``backoff × 2^(n-1)``
seconds, jittered down to half of that and capped at 60 s; a ``Retry-After`` header (seconds)
on a 429/503 is honoured when longer (also capped at 60 s). Other 4xx answers are not retried:
the request itself is wrong for that server.

A request succeeds when the final answer is HTTP 200 with a JSON object that has a non-empty
``choices`` list; anything else is a failure whose ``error`` says why in one line.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kimi_modes.bench._errors import error_body_message
from kimi_modes.endpoint import api_base, listed_model

_RETRY_STATUSES = frozenset({408, 409, 429})
_MAX_WAIT = 60.0
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An OpenAI-compatible server: ``base_url`` as the ``openai`` SDK takes it (ending in
    ``/v1`` for most servers; a bare ``http://host:port`` gets ``/v1``), the model and key."""

    base_url: str
    model: str | None = None
    api_key: str | None = None

    @property
    def root(self) -> str:
        """The base URL without a trailing slash, ``/v1`` added when it has no path."""
        return api_base(self.base_url, default_v1=True)

    @property
    def chat_url(self) -> str:
        return self.root + "/chat/completions"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(slots=True)
class Outcome:
    """What came of one request after its retries. ``status`` is K2VV's: ``"success"`` or
    ``"failed"``; ``response`` is the parsed body of a success; ``duration_ms`` covers all
    attempts and waits."""

    status: str
    response: dict[str, Any] | None
    error: str | None
    http_status: int | None
    attempts: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long one attempt may take and how often and how patiently to retry."""

    timeout: float = 600.0
    max_retries: int = 3
    backoff: float = 1.0

    def wait(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        delay = min(_MAX_WAIT, self.backoff * 2.0 ** (retry - 1)) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(_MAX_WAIT, retry_after))
        return delay


Sleep = Callable[[float], Awaitable[None]]


async def post_chat(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    body: Mapping[str, Any],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
) -> Outcome:
    """POST ``body`` to ``endpoint``'s chat completions, retrying as the module says."""
    start = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        retryable, retry_after, outcome = await _attempt(session, endpoint, body,
                                                         limit_s=policy.timeout)
        if outcome.status == "success" or not retryable or attempts > policy.max_retries:
            outcome.attempts = attempts
            outcome.duration_ms = int((time.perf_counter() - start) * 1000)
            return outcome
        await sleep(policy.wait(attempts, retry_after))


async def _attempt(
    session: aiohttp.ClientSession, endpoint: Endpoint, body: Mapping[str, Any], *,
    limit_s: float,
) -> tuple[bool, float | None, Outcome]:
    """One try: (worth retrying, Retry-After seconds, outcome)."""
    try:
        async with session.post(
            endpoint.chat_url, json=body, headers=endpoint.headers,
            timeout=aiohttp.ClientTimeout(total=limit_s),
        ) as resp:
            raw = await resp.read()
            status = resp.status
            retry_after = _retry_after(resp.headers.get("Retry-After"))
    except TimeoutError:
        return True, None, _failed(f"no answer within {limit_s:g} s")
    except aiohttp.ClientError as exc:
        return True, None, _failed(_exception_text(exc))
    if status != 200:
        retry = status in _RETRY_STATUSES or status >= 500
        return retry, retry_after, _failed(_http_error(status, raw), status)
    try:
        parsed = json.loads(raw)
    except ValueError:
        return True, None, _failed("HTTP 200 but the body is not JSON", status)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict | str):
        return False, None, _failed(_http_error(status, raw), status)
    if not isinstance(parsed, dict) or not parsed.get("choices") or not isinstance(
        parsed["choices"], list
    ):
        return False, None, _failed("HTTP 200 but the body has no choices", status)
    return False, None, Outcome("success", parsed, None, status, 0, 0)


def _failed(error: str, http_status: int | None = None) -> Outcome:
    return Outcome("failed", None, error[:_MAX_ERROR], http_status, 0, 0)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from inference servers, the backoff applies


def _http_error(status: int, raw: bytes) -> str:
    message = error_body_message(raw)
    return f"HTTP {status}" + (f": {message}" if message else "")


def _exception_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def first_model(session: aiohttp.ClientSession, endpoint: Endpoint,
                      limit_s: float = 30.0) -> str:
    """The first model id of ``GET /models`` (raises :class:`LookupError` saying why not)."""
    try:
        async with session.get(endpoint.root + "/models", headers=endpoint.headers,
                               timeout=aiohttp.ClientTimeout(total=limit_s)) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise LookupError(f"{endpoint.root}/models: {_http_error(resp.status, raw)}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else _exception_text(exc)
        raise LookupError(f"cannot list the models of {endpoint.root}: {why}") from None
    try:
        entry = listed_model(json.loads(raw))
    except ValueError:
        entry = None
    if entry is None:
        raise LookupError(f"{endpoint.root}/models lists no model; give --model")
    return str(entry["id"])
