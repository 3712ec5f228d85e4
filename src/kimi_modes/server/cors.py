"""Cross-origin access for browsers (CORS): off unless ``server.cors_allow_origins`` names
origins.

No cookies are involved (the API key travels in a header the page sets), so credentials stay
off, and a browser page on an allowed origin can do what any other client holding a key can.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

__all__ = ["cors_middleware"]

#: Request headers a page may send cross-origin, besides those CORS always allows: the API key
#: headers, content-type, and what the OpenAI and Anthropic SDKs add (``dangerouslyAllowBrowser``
#: / ``anthropic-dangerous-direct-browser-access``).
REQUEST_HEADERS = (
    "authorization",
    "x-api-key",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "idempotency-key",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-helper",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-read-timeout",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-stream-helper",
    "x-stainless-timeout",
)

#: Response headers a page may read: Retry-After, which says when to try an overloaded
#: upstream again.
EXPOSED_HEADERS = ("retry-after",)


def cors_middleware(origins: Sequence[str]) -> list[Middleware]:
    """The middleware answering preflights and adding CORS headers for ``origins`` (``"*"``:
    any); none when ``origins`` is empty, so responses then carry no CORS headers and a
    preflight is an ordinary unrouted OPTIONS (405)."""
    if not origins:
        return []
    return [Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=list(REQUEST_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
    )]
