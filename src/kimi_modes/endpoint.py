"""What every part says about an OpenAI-compatible endpoint, spelled once: where its API, its
root and its ``/metrics`` are (URL normalisation), and which model its ``/v1/models`` names.

Pure: no I/O, and it imports nothing of ours, so the engines, the benchmarks, the terminal
and the composition root all use it without an upward import. Callers fetch ``/v1/models``
with their own client (aiohttp, urllib) and error type; only the reading of the answer is here.

    >>> api_base("http://h:8000/")
    'http://h:8000'
    >>> api_base("http://h:8000", default_v1=True)
    'http://h:8000/v1'
    >>> server_root("http://h:8000/v1/")
    'http://h:8000'
    >>> metrics_url("https://h/vllm/v1")
    'https://h/vllm/metrics'
    >>> listed_model({"data": [{"id": "a"}, {"id": "b"}]}, "b")
    {'id': 'b'}
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def api_base(url: str, *, default_v1: bool = False) -> str:
    """``url`` without trailing slashes: the prefix ``/chat/completions`` and ``/models`` are
    appended to. With ``default_v1``, a URL with no path at all (``http://h:8000``) gets
    ``/v1``, as the ``openai`` SDK's users expect; any other path is kept as given."""
    url = url.rstrip("/")
    if default_v1 and urlsplit(url).path == "":
        return url + "/v1"
    return url


def server_root(url: str) -> str:
    """The server's root: ``url`` without trailing slashes and without a trailing ``/v1``
    (``http://h:8000/v1/`` → ``http://h:8000``; a path before it is kept:
    ``http://h/vllm/v1`` → ``http://h/vllm``). Where vLLM and SGLang serve ``/metrics``."""
    return api_base(url).removesuffix("/v1")


def metrics_url(url: str) -> str:
    """The Prometheus ``/metrics`` URL of the engine whose API is at ``url``."""
    return server_root(url) + "/metrics"


def listed_ids(listing: Any) -> list[str]:
    """The model ids of a parsed ``GET /v1/models`` body, in the server's order (entries
    that are not objects with a string ``id`` skipped; ``[]`` for any other body)."""
    return [e["id"] for e in _entries(listing)]


def _entries(listing: Any) -> list[dict[str, Any]]:
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return []
    return [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]


def listed_model(listing: Any, wanted: str | None = None) -> dict[str, Any] | None:
    """The entry of a parsed ``GET /v1/models`` body whose ``id`` is ``wanted``, else the
    first entry (what a bare vLLM serves by default); ``None`` when it lists no model.

    Entries that are not objects with a string ``id`` are skipped; a body that is not
    ``{"data": [...]}`` lists no model."""
    entries = _entries(listing)
    if not entries:
        return None
    return next((e for e in entries if e["id"] == wanted), entries[0])
