"""Engine events as the Responses API's typed stream events, and the output they add up to.

:class:`ResponseEncoder` turns the engine's deltas into output items in the order they come:
reasoning becomes a ``reasoning`` item, text a ``message`` item, each tool call a
``function_call`` item (``call_id``: Kimi's id); when the kind changes, the open item is
closed and the next one opened (an Agent run alternates reasoning and text over its steps).
Each item goes out as ``response.output_item.added``, its part (``content_part.added`` or
``reasoning_summary_part.added``), the deltas, the ``.done`` events and
``response.output_item.done``; the stream opens with ``response.created`` and
``response.in_progress`` and ends with ``response.completed`` (``response.incomplete`` when
the answer hit ``max_output_tokens``) or ``response.failed``. Every event has a
``sequence_number``, counting from 0.

The same encoder folds a whole (non-streamed) answer: :meth:`ResponseEncoder.response` is the
response object either way.

With ``logprobs`` (the request's ``include: ["message.output_text.logprobs"]`` or
``top_logprobs``), the tokens' logprobs that come before a piece of text go with it: on its
``response.output_text.delta`` and on the ``output_text`` part. Those of reasoning and of tool
calls have no place in the Responses API's output and are not shown.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from kimi_modes.engines.base import Event, Finish, InvalidToolCall, Logprobs, TokenLogprob, Usage
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.server.errors import APIError
from kimi_modes.server.responses_api import items as it
from kimi_modes.server.responses_api.body import (
    ending,
    error_object,
    response_object,
    usage_of,
)


class ResponseEncoder:
    """The stream of response ``resp_<key>`` (see the module docstring). ``summary``: the
    reasoning is streamed as a summary (the client asked for one) rather than as
    ``reasoning_text``; ``echo``: the request's settings the response repeats."""

    def __init__(self, key: str, model: str, echo: dict[str, Any], *,
                 summary: bool = False, logprobs: bool = False) -> None:
        self.key = key
        self.response_id = "resp_" + key
        self.model = model
        self.echo = echo
        self.summary = summary
        self.created_at = time.time()
        #: The finished output items, in order.
        self.output: list[dict[str, Any]] = []
        self.usage: Usage | None = None
        self.finish: str | None = None
        self._seq = 0
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text: list[str] = []
        self._call_index: int | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._delta_head = self._delta_tail = self._delta_end = b""
        self.logprobs = logprobs
        self._pending: list[TokenLogprob] = []  # logprobs of text yet to come
        self._item_logprobs: list[TokenLogprob] = []  # of the open message's text

    # -- the stream ----------------------------------------------------------------------

    def start(self) -> bytes:
        head = self.response("in_progress")
        return (self._event("response.created", {"response": head})
                + self._event("response.in_progress", {"response": head}))

    def feed(self, event: Event) -> bytes:
        """The events for one engine event (none for usage and the finish)."""
        if isinstance(event, ContentDelta):
            out = b"" if self._is_open("message") else self._open_message()
            self._text.append(event.text)
            if self.logprobs:
                return out + self._delta_with_logprobs(event.text)
            return out + self._delta(event.text)
        if isinstance(event, ReasoningDelta):
            out = b"" if self._is_open("reasoning") else self._open_reasoning()
            self._text.append(event.text)
            self._pending.clear()
            return out + self._delta(event.text)
        if isinstance(event, ToolCallDelta):
            self._pending.clear()
            out = b""
            if self._call_index != event.index or not self._is_open("function_call"):
                out = self._open_call(event)
            if event.arguments:
                self._text.append(event.arguments)
                out += self._event("response.function_call_arguments.delta", {
                    "item_id": self._id(), "output_index": len(self.output),
                    "delta": event.arguments})
            return out
        if isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, InvalidToolCall):
            call = self._calls.get(event.index)
            if call is not None:  # the chat API's mark, on the item (clients ignore it)
                call["error"] = event.error
        elif isinstance(event, Finish):
            self.finish = event.reason
        elif isinstance(event, Logprobs):
            self._pending.extend(event.content)
        return b""

    def end(self) -> bytes:
        out = self._close()
        status, reason = ending(self.finish)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": self.response(status, incomplete=reason)})

    def error(self, err: APIError) -> bytes:
        out = self._close(status="incomplete")
        failed = self.response("failed", error=error_object(err.code, err.message))
        return out + self._event("response.failed", {"response": failed})

    # -- the object ----------------------------------------------------------------------

    def response(self, status: str, *, incomplete: str | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response object now (the output items finished so far)."""
        return response_object(self.response_id, self.model, status, list(self.output),
                               echo=self.echo, usage=usage_of(self.usage),
                               created_at=self.created_at, error=error, incomplete=incomplete)

    def fold(self, events: list[Event]) -> dict[str, Any]:
        """The whole response for a finished list of events (nothing is streamed)."""
        for event in events:
            self.feed(event)
        self._close()
        status, reason = ending(self.finish)
        return self.response(status, incomplete=reason)

    # -- items ---------------------------------------------------------------------------

    def _is_open(self, kind: str) -> bool:
        return self._open is not None and self._open["type"] == kind

    def _id(self) -> str:
        assert self._open is not None
        return str(self._open["id"])

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.key}_{len(self.output)}"

    def _added(self, item: dict[str, Any]) -> bytes:
        self._open, self._text = item, []
        # The text deltas of this item differ only in sequence number and text: their
        # frames are built from two pieces made once (the hot path of a stream).
        kind, where = {"message": ("response.output_text.delta", {"content_index": 0}),
                       "reasoning": self._reasoning_where()}.get(item["type"], ("", {}))
        if kind:
            kind = kind if kind.endswith(".delta") else kind + ".delta"
            head = orjson.dumps({"item_id": item["id"], "output_index": len(self.output),
                                 **where})
            self._delta_head = (b"event: " + kind.encode() + b'\ndata: {"type":"' + kind.encode()
                                + b'","sequence_number":')
            self._delta_tail = b"," + head[1:-1] + b',"delta":'
            self._delta_end = (b',"logprobs":[]}\n\n' if item["type"] == "message"
                               else b"}\n\n")
        return self._event("response.output_item.added",
                           {"output_index": len(self.output), "item": item})

    def _open_message(self) -> bytes:
        out = self._close()
        item = {"id": self._item_id("msg"), "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        out += self._added(item)
        return out + self._event("response.content_part.added", {
            "item_id": item["id"], "output_index": len(self.output), "content_index": 0,
            "part": it.output_text("")})

    def _open_reasoning(self) -> bytes:
        out = self._close()
        item = {"id": self._item_id("rs"), "type": "reasoning", "summary": [],
                "status": "in_progress"}
        out += self._added(item)
        where = {"item_id": item["id"], "output_index": len(self.output)}
        if self.summary:
            return out + self._event("response.reasoning_summary_part.added", {
                **where, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        return out + self._event("response.content_part.added", {
            **where, "content_index": 0, "part": {"type": "reasoning_text", "text": ""}})

    def _reasoning_where(self) -> tuple[str, dict[str, int]]:
        if self.summary:
            return "response.reasoning_summary_text", {"summary_index": 0}
        return "response.reasoning_text", {"content_index": 0}

    def _open_call(self, event: ToolCallDelta) -> bytes:
        out = self._close()
        self._call_index = event.index
        item = it.function_call_item(self._item_id("fc"), event.id or "", event.name or "", "",
                                     status="in_progress")
        self._calls[event.index] = item
        return out + self._added(item)

    def _close(self, status: str = "completed") -> bytes:
        """Finish the open item: its ``.done`` events, then ``output_item.done``."""
        item = self._open
        if item is None:
            return b""
        self._open = None
        text = "".join(self._text)
        where = {"item_id": item["id"], "output_index": len(self.output)}
        out = b""
        if item["type"] == "message":
            logprobs, self._item_logprobs = self._item_logprobs, []
            part = it.output_text(text, logprobs)
            out += self._event("response.output_text.done", {
                **where, "content_index": 0, "text": text, "logprobs": logprobs})
            out += self._event("response.content_part.done",
                               {**where, "content_index": 0, "part": part})
            done = it.message_item(item["id"], text, status=status, logprobs=logprobs)
        elif item["type"] == "reasoning":
            kind, index = self._reasoning_where()
            out += self._event(kind + ".done", {**where, **index, "text": text})
            if self.summary:
                out += self._event("response.reasoning_summary_part.done", {
                    **where, **index, "part": {"type": "summary_text", "text": text}})
            else:
                out += self._event("response.content_part.done", {
                    **where, **index, "part": {"type": "reasoning_text", "text": text}})
            done = it.reasoning_item(item["id"], text, summary=self.summary, status=status)
        else:
            item["arguments"], item["status"] = text, status
            out += self._event("response.function_call_arguments.done",
                               {**where, "name": item["name"], "arguments": text})
            done = item
        self.output.append(done)
        return out + self._event("response.output_item.done",
                                 {"output_index": where["output_index"], "item": done})

    def _delta(self, text: str) -> bytes:
        seq = self._seq
        self._seq += 1
        return (self._delta_head + str(seq).encode() + self._delta_tail + orjson.dumps(text)
                + self._delta_end)

    def _delta_with_logprobs(self, text: str) -> bytes:
        """A text delta carrying the logprobs that came before it."""
        logprobs, self._pending = self._pending, []
        self._item_logprobs.extend(logprobs)
        seq = self._seq
        self._seq += 1
        return (self._delta_head + str(seq).encode() + self._delta_tail + orjson.dumps(text)
                + b',"logprobs":' + orjson.dumps(logprobs) + b"}\n\n")

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
