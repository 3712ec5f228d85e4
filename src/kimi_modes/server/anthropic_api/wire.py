"""``POST /v1/messages`` as a :class:`~kimi_modes.server.wire.WireFormat`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kimi_modes.engines.base import Event
from kimi_modes.server.anthropic_api.answer import AnthropicError, Message
from kimi_modes.server.anthropic_api.errors import anthropic_error_body
from kimi_modes.server.anthropic_api.request import (
    AnthropicRequestError,
    MessagesBody,
    parse_messages_request,
)
from kimi_modes.server.anthropic_api.response import MessageStreamEncoder, build_message_response
from kimi_modes.server.errors import APIError
from kimi_modes.server.wire import WireRequest


class AnthropicMessages:
    """Anthropic's Messages API: bodies read by :func:`parse_messages_request`, answers
    written by :class:`MessageStreamEncoder` / :func:`build_message_response`."""

    label = "messages"
    id_prefix = "msg_"
    request_model: type[BaseModel] = MessagesBody
    answer_model: type[BaseModel] = Message
    error_model: type[BaseModel] = AnthropicError

    def parse(self, body: dict[str, Any]) -> WireRequest:
        try:
            return parse_messages_request(body)
        except AnthropicRequestError as exc:
            raise APIError(400, exc.message, param=exc.param) from None

    def encoder(self, answer_id: str, wire: WireRequest) -> MessageStreamEncoder:
        return MessageStreamEncoder(answer_id, wire.model, wire.prompt_estimate)

    def body(self, answer_id: str, wire: WireRequest, events: list[Event]) -> dict[str, Any]:
        return build_message_response(answer_id, wire.model, events,
                                      input_tokens_estimate=wire.prompt_estimate)

    def error_body(self, err: APIError) -> dict[str, Any]:
        return anthropic_error_body(err.status, err.message)
