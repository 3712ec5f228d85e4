"""Anthropic Messages API ⇄ the engines' vocabulary: pure translation, no HTTP.

Three pieces, mounted by the server on ``POST /v1/messages``:

* :func:`parse_messages_request` validates a request body and turns it into a
  :class:`~kimi_modes.server.wire.WireRequest` whose engine request has ``messages`` and
  ``tools`` in OpenAI's chat shape (what :class:`~kimi_modes.engines.base.ChatRequest` takes);
  :class:`AnthropicMessages` is the whole API as a wire format. Bad input raises
  :class:`AnthropicRequestError`, whose message names the offending field and how to fix it.
* :class:`MessageStreamEncoder` turns the engine's event stream into Anthropic's SSE frames
  (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``, ``ping``,
  ``error``); :func:`build_message_response` gives the non-streaming body. Both share one
  state machine, so a streamed answer accumulates (in the ``anthropic`` SDK) to exactly the
  body the non-streaming path returns.
* :func:`anthropic_error_body` gives Anthropic's error shape for an HTTP status.

Decisions a caller may rely on:

* **Temperature**: Anthropic's range is 0–1; like Moonshot's own Anthropic-compatible API,
  the engine runs at ``requested × 0.6`` (:data:`TEMPERATURE_SCALE`), so Anthropic's 1.0 is
  Kimi's recommended 0.6. The engine request's ``temperature`` already holds the mapped value.
* **Thinking switch**: ``{"type": "enabled"}`` → ``True``, ``{"type": "disabled"}`` →
  ``False``, absent or ``{"type": "adaptive"}`` → ``None`` (the mode decides);
  ``{"type": "between_tools"}`` → ``True``. ``budget_tokens`` is required with ``enabled``
  (as Anthropic's API does) but Kimi has no reasoning budget, so no engine uses it.
  ``display`` is ignored: reasoning is always returned.
* **Thinking signatures**: Kimi's reasoning is not signed. Thinking blocks carry the constant
  :data:`THINKING_SIGNATURE` so clients that require a non-empty signature work; it proves
  nothing and the gateway never checks signatures of thinking blocks sent back.
* **Tool-use ids** are the engine's ids as-is (Kimi writes ``functions.NAME:IDX``), so a
  ``tool_result`` sent back carries an id the Kimi prompt renderer accepts unchanged. Ids from
  elsewhere (``toolu_...``) are accepted too; the renderer normalises them.
* **Tool input**: a tool call's arguments are sent whole, as one ``input_json_delta``, when
  the call is complete — the SDK's accumulator raises on input that is not JSON, so the
  arguments must be checked first. Arguments that are not a JSON object become
  ``{"_raw_arguments": "<the text as written>"}`` (streamed and non-streamed alike), so an
  agent can tell the model its arguments did not parse.
"""

from __future__ import annotations

from kimi_modes.server.anthropic_api.errors import anthropic_error_body, anthropic_error_type
from kimi_modes.server.anthropic_api.request import (
    TEMPERATURE_SCALE,
    AnthropicRequestError,
    parse_count_request,
    parse_messages_request,
)
from kimi_modes.server.anthropic_api.response import (
    RAW_ARGUMENTS_KEY,
    THINKING_SIGNATURE,
    MessageStreamEncoder,
    build_message_response,
    tool_input,
)
from kimi_modes.server.anthropic_api.wire import AnthropicMessages

__all__ = [
    "RAW_ARGUMENTS_KEY",
    "TEMPERATURE_SCALE",
    "THINKING_SIGNATURE",
    "AnthropicMessages",
    "AnthropicRequestError",
    "MessageStreamEncoder",
    "anthropic_error_body",
    "anthropic_error_type",
    "build_message_response",
    "parse_count_request",
    "parse_messages_request",
    "tool_input",
]
