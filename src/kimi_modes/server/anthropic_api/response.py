"""Engine events → Anthropic's answer: SSE frames (:class:`MessageStreamEncoder`) or a body.

Both go through one state machine, so a streamed answer accumulates (in the ``anthropic``
SDK) to exactly the body :func:`build_message_response` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from kimi_modes.engines.base import Event, Finish, Usage
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.server.anthropic_api.errors import anthropic_error_body
from kimi_modes.server.errors import APIError

__all__ = [
    "RAW_ARGUMENTS_KEY",
    "THINKING_SIGNATURE",
    "MessageStreamEncoder",
    "build_message_response",
    "tool_input",
]

THINKING_SIGNATURE = "kimi-modes-unsigned"
"""The ``signature`` of every thinking block: constant, public, and not verifiable."""

RAW_ARGUMENTS_KEY = "_raw_arguments"
"""Key of the ``input`` that carries tool-call arguments which are not a JSON object."""

_STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
}

_Frame = tuple[str, dict[str, Any]]


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's ``input``: the arguments as a JSON object, or the raw-arguments wrapper.

    Empty arguments give ``{}``; text that is not a JSON object gives
    ``{RAW_ARGUMENTS_KEY: arguments}``.
    """
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {RAW_ARGUMENTS_KEY: arguments}
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: arguments}


@dataclass(slots=True)
class _OpenBlock:
    kind: Literal["thinking", "text", "tool_use"]
    index: int | None  # wire index; None for a tool call not yet announced (no name yet)
    parts: list[str] = field(default_factory=list)
    tool_index: int = -1
    tool_id: str | None = None
    tool_name: str | None = None


class _MessageAssembler:
    """The state machine behind the stream encoder and the non-streaming body.

    It turns engine events into Anthropic stream events (as ``(name, payload)`` frames) and
    keeps the message those frames accumulate to.
    """

    def __init__(self, message_id: str, model: str, input_tokens_estimate: int) -> None:
        self.message_id = message_id
        self.model = model
        self.input_tokens_estimate = input_tokens_estimate
        self.content: list[dict[str, Any]] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        #: The client's stop sequence that ended the answer, if one did.
        self.stop_sequence: str | None = None
        self.started = False
        self.done = False
        self._open: _OpenBlock | None = None
        self._closed_tools: set[int] = set()
        self._saw_tool = False

    # -- frames ------------------------------------------------------------------------------

    def start(self) -> list[_Frame]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens_estimate, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def feed(self, event: Event) -> list[_Frame]:
        if self.done:
            raise RuntimeError("the message is already finished; no more events can be fed")
        frames = self.start()
        if isinstance(event, ReasoningDelta | ContentDelta):
            if event.text:
                kind: Literal["thinking", "text"] = (
                    "thinking" if isinstance(event, ReasoningDelta) else "text"
                )
                if self._open is None or self._open.kind != kind:
                    frames += self._close()
                    frames += self._open_block(_OpenBlock(kind, None))
                assert self._open is not None
                self._open.parts.append(event.text)
                delta = (
                    {"type": "thinking_delta", "thinking": event.text}
                    if kind == "thinking"
                    else {"type": "text_delta", "text": event.text}
                )
                frames.append(self._delta(delta))
        elif isinstance(event, ToolCallDelta):
            frames += self._feed_tool(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish_reason = event.reason
            self.stop_sequence = event.stop_sequence
        return frames

    def finish(self) -> list[_Frame]:
        if self.done:
            return []
        frames = self.start()
        frames += self._close()
        self.done = True
        delta_usage: dict[str, Any] = {"output_tokens": self._output_tokens()}
        if self.usage is not None:
            delta_usage["input_tokens"] = self.usage.prompt_tokens
        details = self._output_details()
        if details is not None:
            delta_usage["output_tokens_details"] = details
        frames.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason(),
                              "stop_sequence": self._fired()},
                    "usage": delta_usage,
                },
            )
        )
        frames.append(("message_stop", {"type": "message_stop"}))
        return frames

    # -- the message -------------------------------------------------------------------------

    def _fired(self) -> str | None:
        return self.stop_sequence if self.stop_reason() == "stop_sequence" else None

    def stop_reason(self) -> str:
        reason = self.finish_reason
        if reason == "stop" and self.stop_sequence is not None:
            return "stop_sequence"
        if self._saw_tool and reason in (None, "stop", "tool_calls"):
            return "tool_use"
        if reason is None:
            return "end_turn"
        return _STOP_REASONS.get(reason, "end_turn")

    def message(self) -> dict[str, Any]:
        """The message the frames so far accumulate to (``stop_reason`` once finished)."""
        usage: dict[str, Any] = {
            "input_tokens": (
                self.usage.prompt_tokens if self.usage is not None else self.input_tokens_estimate
            ),
            "output_tokens": self._output_tokens(),
        }
        details = self._output_details()
        if details is not None:
            usage["output_tokens_details"] = details
        content = [dict(block) for block in self.content]
        block = self._open
        if block is not None and block.index is not None and block.kind != "tool_use":
            # The open block's text so far; a tool's input is only sent when it closes.
            content[block.index][block.kind] = "".join(block.parts)
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason() if self.done else None,
            "stop_sequence": self._fired() if self.done else None,
            "usage": usage,
        }

    # -- internals ---------------------------------------------------------------------------

    def _output_tokens(self) -> int:
        return self.usage.completion_tokens if self.usage is not None else 0

    def _output_details(self) -> dict[str, Any] | None:
        if self.usage is None or self.usage.reasoning_tokens is None:
            return None
        return {"thinking_tokens": self.usage.reasoning_tokens}

    def _delta(self, delta: dict[str, Any]) -> _Frame:
        assert self._open is not None and self._open.index is not None
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._open.index, "delta": delta},
        )

    def _open_block(self, block: _OpenBlock) -> list[_Frame]:
        self._open = block
        if block.kind == "tool_use" and block.tool_name is None:
            return []  # announced once its name is known, or when it closes
        return self._announce(block)

    def _announce(self, block: _OpenBlock) -> list[_Frame]:
        block.index = len(self.content)
        start: dict[str, Any]
        if block.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        elif block.kind == "text":
            start = {"type": "text", "text": ""}
        else:
            if block.tool_id is None:
                # Kimi's own id form, so a tool_result sent back renders unchanged.
                block.tool_id = f"functions.{block.tool_name or ''}:{block.tool_index}"
            start = {
                "type": "tool_use",
                "id": block.tool_id,
                "name": block.tool_name or "",
                "input": {},
            }
        self.content.append(dict(start))
        return [
            (
                "content_block_start",
                {"type": "content_block_start", "index": block.index, "content_block": start},
            )
        ]

    def _feed_tool(self, event: ToolCallDelta) -> list[_Frame]:
        frames: list[_Frame] = []
        block = self._open
        if block is None or block.kind != "tool_use" or block.tool_index != event.index:
            if event.index in self._closed_tools:
                raise ValueError(
                    f"tool call {event.index} got more deltas after another block started; "
                    "engines must emit tool calls one after another"
                )
            frames += self._close()
            block = _OpenBlock("tool_use", None, tool_index=event.index)
            self._saw_tool = True
            frames += self._open_block(block)
        if block.index is None:
            block.tool_id = block.tool_id or event.id
            block.tool_name = block.tool_name or event.name
            if block.tool_name is not None:
                frames += self._announce(block)
        if event.arguments:
            block.parts.append(event.arguments)
        return frames

    def _close(self) -> list[_Frame]:
        block = self._open
        if block is None:
            return []
        frames: list[_Frame] = []
        if block.index is None:
            frames += self._announce(block)
        assert block.index is not None
        text = "".join(block.parts)
        snapshot = self.content[block.index]
        if block.kind == "thinking":
            frames.append(self._delta({"type": "signature_delta", "signature": THINKING_SIGNATURE}))
            snapshot.update(thinking=text, signature=THINKING_SIGNATURE)
        elif block.kind == "text":
            snapshot["text"] = text
        else:
            value = tool_input(text)
            if value:
                frames.append(
                    self._delta(
                        {"type": "input_json_delta", "partial_json": orjson.dumps(value).decode()}
                    )
                )
            snapshot["input"] = value
            self._closed_tools.add(block.tool_index)
        frames.append(("content_block_stop", {"type": "content_block_stop", "index": block.index}))
        self._open = None
        return frames


def _sse(frames: list[_Frame]) -> bytes:
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        for name, payload in frames
    )


class MessageStreamEncoder:
    """Engine events → the SSE bytes of an Anthropic ``stream: true`` answer.

    Call :meth:`start` once, :meth:`feed` for each engine event, then :meth:`end` (or
    :meth:`error` when the engine fails mid-stream). Every method returns complete SSE frames
    (``event: NAME\\ndata: JSON\\n\\n``), possibly none (``b""``), ready to write.

    Blocks open and close as the kind of delta changes: reasoning → a ``thinking`` block
    (closed with a ``signature_delta`` of :data:`THINKING_SIGNATURE`), content → a ``text``
    block, each tool call → a ``tool_use`` block announced with the engine's id and name and
    an empty ``input``, whose input follows whole in one ``input_json_delta`` when the call is
    complete (see the module docstring). ``feed`` before ``start`` starts the message first;
    ``end`` and ``error`` after the end return ``b""``; ``feed`` after the end raises
    :class:`RuntimeError`, and a tool call whose deltas resume after another block began
    raises :class:`ValueError`.
    """

    def __init__(self, message_id: str, model: str, input_tokens_estimate: int) -> None:
        self._assembler = _MessageAssembler(message_id, model, input_tokens_estimate)

    @property
    def finished(self) -> bool:
        """Whether ``end`` or ``error`` has ended the stream."""
        return self._assembler.done

    def start(self, *, ping: bool = True) -> bytes:
        """``message_start`` (usage: the input-token estimate, 0 output), then a ``ping``."""
        frames = self._assembler.start()
        if frames and ping:
            frames.append(("ping", {"type": "ping"}))
        return _sse(frames)

    def ping(self) -> bytes:
        """A ``ping`` frame: a keep-alive the SDK skips; send it while the engine is silent."""
        return _sse([("ping", {"type": "ping"})])

    def feed(self, event: Event) -> bytes:
        """Frames for one engine event (``Usage`` and ``Finish`` are remembered, give none)."""
        return _sse(self._assembler.feed(event))

    def end(self) -> bytes:
        """Close the open block; ``message_delta`` (stop_reason, usage); ``message_stop``.

        ``stop_reason``: ``tool_use`` when a tool was called (unless the answer was cut at
        ``max_tokens``), else from the engine's finish reason: ``stop`` → ``end_turn``,
        ``length`` → ``max_tokens``, none → ``end_turn``. ``usage.output_tokens`` is the
        engine's completion tokens (0 when it reported no usage); ``input_tokens`` is sent
        too when the engine reported it.
        """
        return _sse(self._assembler.finish())

    def error(self, err: APIError) -> bytes:
        """An ``event: error`` frame (see :func:`anthropic_error_body`); ends the stream.

        The SDK raises it as an ``APIStatusError`` whose ``type`` and ``api_message`` are
        these. Use it for failures after the response has started; before that, answer
        with an HTTP error status and :func:`anthropic_error_body`.
        """
        if self._assembler.done:
            return b""
        self._assembler.done = True
        return _sse([("error", anthropic_error_body(err.status, err.message))])

    def message(self) -> dict[str, Any]:
        """The message the frames so far accumulate to (the non-streaming body's shape)."""
        return self._assembler.message()


def build_message_response(
    message_id: str, model: str, events: Iterable[Event], *, input_tokens_estimate: int = 0
) -> dict[str, Any]:
    """The non-streaming ``/v1/messages`` body for a complete list of engine events.

    Content blocks come in the order the engine produced them (``thinking`` with
    :data:`THINKING_SIGNATURE`, ``text``, ``tool_use`` with its parsed ``input``, see
    :func:`tool_input`); ``stop_reason`` and ``usage`` as :meth:`MessageStreamEncoder.end`
    reports them (``input_tokens`` falls back to ``input_tokens_estimate`` when the engine
    reported no usage). It equals what the SDK accumulates from the streamed answer.
    """
    assembler = _MessageAssembler(message_id, model, input_tokens_estimate)
    for event in events:
        assembler.feed(event)
    assembler.finish()
    return assembler.message()
