"""HTTP plumbing shared by the engines that talk to an upstream over the network.

One :class:`UpstreamClient` per upstream: a pooled ``aiohttp`` session, the upstream's name
and timeouts, ``post_stream`` that yields the ``data:`` payloads of an SSE response as parsed
JSON, and the mapping of every transport failure to an :class:`EngineError` subclass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from kimi_modes.endpoint import api_base, listed_model
from kimi_modes.engines.base import (
    EngineError,
    UpstreamFailed,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    Usage,
)

#: Upstream statuses that say the client's request was at fault; passed through as they are.
_CLIENT_FAULTS = frozenset({400, 413, 422})

_URL_HINT = "check the upstream url (does it end in /v1?)"
_KEY_HINT = "check the upstream api_key"
_HINTS = {
    401: _KEY_HINT,
    403: _KEY_HINT,
    404: _URL_HINT + " and its model name",
    405: _URL_HINT,
}


class UpstreamClient:
    """Talks HTTP to one upstream. Create it inside a running event loop."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        busy_status_as_is: bool = False,
    ) -> None:
        self.name = name
        self.base_url = api_base(base_url)
        #: Whether a 429 stays a 429 (a router shedding load: passed through as it is).
        self.busy_status_as_is = busy_status_as_is
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        #: Never repeated in an error: an upstream may echo the key it was sent.
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._model = model
        self._model_lock = asyncio.Lock()
        self._listing: dict[str, Any] | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=self._headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _model_entry(self) -> dict[str, Any]:
        """The upstream's /v1/models entry for our model (asked once, then remembered)."""
        if self._listing is None:
            async with self._model_lock:
                if self._listing is None:
                    entry = listed_model(await self.get_json("/models"), self._model)
                    if entry is None:
                        raise UpstreamFailed(self.name, "its /v1/models lists no model")
                    self._listing = entry
        return self._listing

    async def model_name(self) -> str:
        """The upstream's model name: the configured one, else the first in its /v1/models."""
        if self._model is None:
            self._model = str((await self._model_entry())["id"])
        return self._model

    async def max_model_len(self) -> int | None:
        """The context length the upstream reports (vLLM's ``max_model_len``), if any."""
        try:
            value = (await self._model_entry()).get("max_model_len")
        except EngineError:
            return None
        return int(value) if isinstance(value, int) and value > 0 else None

    async def get_json(self, path: str) -> Any:
        """GET ``base_url + path`` and return the parsed JSON body."""
        try:
            async with self._get_session().get(self.base_url + path) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise self._status_error(resp, body)
                return orjson.loads(body)
        except EngineError:
            raise
        except Exception as exc:
            raise self._transport_error(exc) from exc

    async def post_stream(
        self, path: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """POST ``body`` (with ``headers`` besides the client's own) and yield each SSE
        ``data:`` payload as a dict, until ``[DONE]``.

        Raises :class:`UpstreamFailed` when the stream ends without ``[DONE]`` (cut mid-way)
        or carries an error object. Closing the iterator closes the connection.
        """
        payload = orjson.dumps(body)
        try:
            async with await self._post(path, payload, headers) as resp:
                if resp.status >= 400:
                    raise self._status_error(resp, await resp.read())
                saw_done = False
                async for raw_line in resp.content:
                    line = raw_line.strip()
                    if not line.startswith(b"data:"):
                        continue  # comments, event names, blank separators
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        saw_done = True
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        raise UpstreamFailed(
                            self.name, f"sent an unreadable stream chunk: {data[:200]!r}"
                        ) from None
                    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                        raise UpstreamFailed(
                            self.name, f"error mid-stream: {self._redacted(_message(chunk))}")
                    yield chunk
                if not saw_done:
                    raise UpstreamFailed(self.name, "the stream ended before [DONE] (cut mid-way)")
        except EngineError:
            raise
        except Exception as exc:
            raise self._transport_error(exc) from exc

    async def _post(self, path: str, payload: bytes,
                    headers: Mapping[str, str] | None) -> aiohttp.ClientResponse:
        """POST ``payload``; sent once more when the pooled connection it went out on turns
        out closed before any answer (as curl does: llama-server closes its connection after
        a stream while announcing keep-alive, so a request right after one would fail)."""
        session, url = self._get_session(), self.base_url + path
        try:
            return await session.post(url, data=payload, headers=headers)
        except aiohttp.ClientConnectorError:
            raise  # no connection at all: nothing stale to replace
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            return await session.post(url, data=payload, headers=headers)

    def _redacted(self, text: str) -> str:
        """``text`` (what the upstream said) without the upstream's api_key in it."""
        if self._api_key and self._api_key in text:
            return text.replace(self._api_key, "[the upstream's api_key]")
        return text

    def _status_error(self, resp: aiohttp.ClientResponse, body: bytes) -> EngineError:
        """The error for an upstream answer with status >= 400.

        Only 400, 413 and 422 are the client's fault (a request the upstream found invalid or
        too large) and pass through as :class:`UpstreamRejected` with their own status. 429 and
        503 are :class:`UpstreamOverloaded` with the ``Retry-After`` they came with (a 503 to
        the client; a 429 stays one with ``busy_status_as_is``), 504 :class:`UpstreamTimeout`.
        Everything else is the gateway's configuration or the upstream failing: a 502
        :class:`UpstreamFailed` naming the URL, with a hint for the usual causes (401/403: the
        upstream's api_key; 404/405: a url without ``/v1`` or a wrong model name).
        """
        try:
            message = _message(orjson.loads(body))
        except orjson.JSONDecodeError:
            message = body[:300].decode("utf-8", "replace")
        message = self._redacted(message)
        status = resp.status
        text = f"HTTP {status}: {message}"
        if status in (429, 503):
            retry = resp.headers.get("Retry-After")
            try:
                retry_after = float(retry) if retry else None
            except ValueError:
                retry_after = None
            return UpstreamOverloaded(self.name, text, retry_after=retry_after,
                                      status=status if self.busy_status_as_is else None)
        if status == 504:
            return UpstreamTimeout(self.name, text)
        if status in _CLIENT_FAULTS:
            return UpstreamRejected(self.name, text, status=status)
        where = f"{resp.method} {resp.url}"
        hint = _HINTS.get(status)
        return UpstreamFailed(
            self.name, f"HTTP {status} from {where}: {message}" + (f"; {hint}" if hint else "")
        )

    def _transport_error(self, exc: BaseException) -> EngineError:
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return UpstreamTimeout(self.name, f"no answer from {self.base_url} in time")
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
            return UpstreamUnavailable(self.name, f"cannot reach {self.base_url}: {exc}")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamFailed(self.name, f"the stream broke: {exc}")
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamFailed(self.name, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, orjson.JSONDecodeError):
            return UpstreamFailed(self.name, "answered with unreadable JSON")
        return UpstreamFailed(self.name, f"{type(exc).__name__}: {exc}")


def _message(body: Any) -> str:
    """The human message inside an OpenAI/vLLM error body, or the body itself."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if "message" in body:
            return str(body["message"])
        if isinstance(err, str):
            return err
    return str(body)[:300]


def usage_from(raw: dict[str, Any]) -> Usage:
    """An OpenAI-style ``usage`` object (chat or completions) as our :class:`Usage`."""
    details = raw.get("completion_tokens_details") or {}
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        reasoning_tokens=int(reasoning) if reasoning is not None else None,
    )
