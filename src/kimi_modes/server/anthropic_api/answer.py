"""The models of what ``POST /v1/messages`` answers: the message and Anthropic's error body.
They describe the answers in the OpenAPI document (:mod:`kimi_modes.server.openapi`); the
writers in :mod:`.response` and :mod:`.errors` produce the same shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class _MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class Message(BaseModel):
    """A whole answer: ``content`` holds ``thinking``, ``text`` and ``tool_use`` blocks in the
    order the model wrote them."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: _MessageUsage


class TokenCount(BaseModel):
    """``POST /v1/messages/count_tokens``: the prompt's size; ``estimated`` (not Anthropic's)
    is true when the engine could not count it exactly."""

    input_tokens: int
    estimated: bool


class _AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}}``."""

    type: Literal["error"]
    error: _AnthropicErrorDetail
