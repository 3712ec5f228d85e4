"""Errors in the shape each API uses, and the mapping from our exceptions to them.

Every failure the gateway reports goes through :class:`APIError`: a status, a message that
says what to fix, and optionally the offending parameter. :func:`openai_error_body` and the
Anthropic module render it; nothing else builds error bodies.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kimi_modes.engines.base import (
    EngineError,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from kimi_modes.modes.catalog import ModeError

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented_error",
}


class APIError(Exception):
    """A failure to report to the client with ``status`` and ``message``.

    ``detail`` is for the operator's log only (an upstream's URL, say) and never sent."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.detail = detail
        #: Seconds the client should wait (from an overloaded upstream), sent as Retry-After.
        self.retry_after = retry_after

    @classmethod
    def from_exception(cls, exc: BaseException) -> APIError:
        """Map a mode, engine or validation error to what the client is told."""
        if isinstance(exc, APIError):
            return exc
        if isinstance(exc, ModeError):
            return cls(exc.status, exc.message, param=exc.param, code=exc.code)
        if isinstance(exc, EngineError):
            return cls(exc.status, upstream_message(exc), code=exc.kind, param=exc.param,
                       retry_after=getattr(exc, "retry_after", None), detail=str(exc))
        if isinstance(exc, ValidationError):
            return cls(400, validation_message(exc), param=_first_loc(exc))
        return cls(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")


def upstream_message(exc: EngineError) -> str:
    """What a client is told about a failed upstream: its configured name and what went
    wrong, never its URL or address (those stay in ``str(exc)``, for the operator's log).

    A refusal (400/413/422) and "busy" (429/503) pass the upstream's own words on, since the
    client acts on them; an unreachable, silent or failing upstream is named only."""
    name = repr(exc.upstream)
    if isinstance(exc, UpstreamRejected | UpstreamOverloaded):
        return str(exc)
    if isinstance(exc, UpstreamUnavailable):
        return f"upstream {name} cannot be reached"
    if isinstance(exc, UpstreamTimeout):
        return f"upstream {name} did not answer in time"
    return f"upstream {name} failed; the gateway's log has the details"


def validation_message(exc: ValidationError) -> str:
    """Pydantic errors as one readable line: ``messages.1.role: Input should be ...``."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        parts.append(f"{loc or 'body'}: {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid request: " + "; ".join(parts)


def _first_loc(exc: ValidationError) -> str | None:
    errors = exc.errors()
    if not errors:
        return None
    return ".".join(str(p) for p in errors[0]["loc"]) or None


def openai_error_body(error: APIError) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    if error.status >= 500 and error.status != 501:
        kind = "upstream_error" if error.status in (502, 503, 504) else "server_error"
    else:
        kind = _OPENAI_TYPES.get(error.status, "invalid_request_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": error.param,
            "code": error.code if error.code is not None else str(error.status),
        }
    }
