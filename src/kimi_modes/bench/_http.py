"""What the measuring commands share over HTTP: the endpoint's URL, the bearer header, one
client session per run, reading an error body, and the model list of ``/models``.

Every command takes its endpoint as the ``openai`` SDK does (:func:`api_base`: ``/v1`` added
to a bare ``http://host:port``); :func:`server_root` is the same without ``/v1``, for the
commands that append ``/v1/...`` paths themselves (as vLLM's benchmark does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from kimi_modes import endpoint

#: How long listing the models may take, in seconds.
MODELS_TIMEOUT = 30.0


class EndpointError(Exception):
    """An endpoint cannot be used: unreachable, a refusal, no model list. The message is one
    line; ``status`` is the HTTP status when the server answered, else ``None``."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def check_http_url(url: str, option: str = "--base-url") -> None:
    """:class:`ValueError` (``<option> must be an http(s) URL, not '...'``) unless ``url`` is
    an ``http://`` or ``https://`` URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{option} must be an http(s) URL, not {url!r}")


def api_base(url: str) -> str:
    """``url`` as the ``openai`` SDK's ``base_url``: no trailing slash, ``/v1`` added when it
    has no path at all (``http://h:8000`` → ``http://h:8000/v1``; ``http://h/api`` stays)."""
    return endpoint.api_base(url, default_v1=True)


def server_root(url: str) -> str:
    """:func:`api_base` without its trailing ``/v1``: where ``/v1/...`` paths go."""
    return endpoint.server_root(url)


def bearer(api_key: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``api_key`` (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def client_session(*, limit: int = 0, timeout: aiohttp.ClientTimeout | None = None,
                   trust_env: bool = False) -> aiohttp.ClientSession:
    """The session of one run against one endpoint: at most ``limit`` connections (0: no
    limit), kept alive between requests, DNS answers cached. ``timeout`` defaults to no total
    limit and 30 s to connect (callers bound each request); ``trust_env`` honours the proxy
    variables as the ``openai`` SDK does. Use it as ``async with``."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=limit, ttl_dns_cache=300, keepalive_timeout=60,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector, trust_env=trust_env,
        timeout=timeout or aiohttp.ClientTimeout(total=None, sock_connect=30),
    )


def error_body_message(raw: bytes | str) -> str:
    """The message inside an error body — OpenAI's and vLLM's ``{"error": {"message"}}``,
    ``{"error": "..."}``, FastAPI's ``{"detail": "..."}``, a bare ``{"message"}`` — or the
    body's own text; on one line (whitespace collapsed), ``""`` for an empty body."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    message = text
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]
        elif isinstance(err, str):
            message = err
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
        elif isinstance(body.get("message"), str):
            message = body["message"]
    return " ".join(message.split())


def http_error(status: int, raw: bytes | str, reason: str | None = None) -> str:
    """``HTTP 404 Not Found: <the body's message>`` on one line (the reason phrase when given,
    the message when the body has one)."""
    message = error_body_message(raw)
    return f"HTTP {status} {reason or ''}".rstrip() + (f": {message}" if message else "")


def exception_text(exc: BaseException) -> str:
    """``ClientConnectorError: Cannot connect to host ...``: the exception's type and text on
    one line (the type alone when it has no text)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def list_models(session: aiohttp.ClientSession, base: str, headers: Mapping[str, str],
                      *, limit_s: float = MODELS_TIMEOUT) -> list[str]:
    """The model ids of ``GET {base}/models`` (``base`` as :func:`api_base` gives it; the
    request carries ``headers``, e.g. :func:`bearer`'s, and may take ``limit_s`` seconds), in
    the server's order; ``[]`` when the body lists none. :class:`EndpointError` when the
    server cannot be reached (``cannot reach ...``) or answers other than 200 (``cannot list
    the models at ...``, with its status)."""
    url = f"{base}/models"
    try:
        async with session.get(url, headers=dict(headers),
                               timeout=aiohttp.ClientTimeout(total=limit_s)) as resp:
            raw = await resp.read()
            status = resp.status
    except TimeoutError:
        raise EndpointError(f"cannot reach {url}: no answer within {limit_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise EndpointError(f"cannot reach {url}: {exception_text(exc)}") from None
    if status != 200:
        raise EndpointError(f"cannot list the models at {url}: {http_error(status, raw)}",
                            status)
    try:
        listing = json.loads(raw)
    except ValueError:
        return []
    return endpoint.listed_ids(listing)


async def first_model(session: aiohttp.ClientSession, base: str, headers: Mapping[str, str],
                      *, limit_s: float = MODELS_TIMEOUT) -> str:
    """The first id of :func:`list_models` (a bare vLLM serves one model: this is it);
    :class:`EndpointError` when there is none (``... lists no models``)."""
    models = await list_models(session, base, headers, limit_s=limit_s)
    if not models:
        raise EndpointError(f"{base}/models lists no models")
    return models[0]
