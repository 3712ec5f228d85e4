"""The ``response`` object: built for a finished answer, for one in progress, and for one
read back from the run store.

Every response the gateway shows (in a stream's ``response.*`` events, as a whole body, from
``GET /v1/responses/{id}``) is made by :func:`response_object`, so the three agree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kimi_modes.engines.base import Usage

#: The request settings a response repeats when the request gave none.
DEFAULT_ECHO: dict[str, Any] = {
    "instructions": None, "metadata": {}, "tools": [], "tool_choice": "auto",
    "parallel_tool_calls": True, "temperature": None, "top_p": None,
    "max_output_tokens": None, "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None}, "text": {"format": {"type": "text"}},
    "store": True, "background": False, "top_logprobs": None,
}


class ResponseObject(BaseModel):
    """The ``response`` object as the OpenAPI document describes it (what
    :func:`response_object` builds; further fields as OpenAI's)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["response"]
    created_at: float
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class DeletedResponse(BaseModel):
    """The answer of ``DELETE /v1/responses/{id}``."""

    id: str
    object: Literal["response.deleted"]
    deleted: bool


class InputItems(BaseModel):
    """The answer of ``GET /v1/responses/{id}/input_items``."""

    model_config = ConfigDict(extra="allow")
    object: Literal["list"]
    data: list[dict[str, Any]]
    has_more: bool


def response_object(
    response_id: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    *,
    echo: Mapping[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    created_at: float | None = None,
    error: dict[str, Any] | None = None,
    incomplete: str | None = None,
) -> dict[str, Any]:
    """A ``response`` object. ``status``: ``queued``, ``in_progress``, ``completed``,
    ``incomplete`` (``incomplete`` gives the reason), ``failed`` (``error``: code and
    message) or ``cancelled``; ``echo``: the request's settings (:data:`DEFAULT_ECHO` for
    what it lacks)."""
    created = int(created_at if created_at is not None else time.time())
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete is not None else None,
        "model": model,
        "output": output,
        "usage": usage,
        "truncation": "disabled",
        "user": None,
        "completed_at": int(time.time()) if status == "completed" else None,
    }
    body.update(DEFAULT_ECHO)
    if echo is not None:
        body.update({k: v for k, v in echo.items() if k in DEFAULT_ECHO})
    return body


def usage_body(prompt: int, completion: int, reasoning: int | None) -> dict[str, Any]:
    """The Responses usage object (``reasoning_tokens`` 0 when the engine did not say)."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": prompt + completion,
    }


def usage_of(usage: Usage | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """:func:`usage_body` for an engine's :class:`Usage` or a run's stored usage dict."""
    if usage is None:
        return None
    if isinstance(usage, Usage):
        return usage_body(usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens)
    return usage_body(int(usage.get("prompt_tokens") or 0),
                      int(usage.get("completion_tokens") or 0), usage.get("reasoning_tokens"))


def ending(finish: str | None) -> tuple[str, str | None]:
    """The status and incomplete reason of an answer that finished with ``finish``."""
    if finish == "length":
        return "incomplete", "max_output_tokens"
    return "completed", None


def error_object(code: str | None, message: str) -> dict[str, Any]:
    """A response's ``error``: OpenAI's codes where one fits, else ``server_error``."""
    known = {"rate_limit_exceeded", "invalid_prompt", "server_error"}
    mapped = code if code in known else (
        "rate_limit_exceeded" if code == "upstream_overloaded" else "server_error")
    return {"code": mapped, "message": message}
