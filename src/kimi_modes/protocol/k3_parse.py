"""The state machine for K3's ``xtml`` wire format (kimi-protocol.md §9).

Reached through :class:`~kimi_modes.protocol.StreamingParser` and
:func:`~kimi_modes.protocol.parse_output` with a K3 family. What a caller may rely on:

* Output starts inside the assistant message, in the think channel (thinking on: the prompt
  opened it) or the response channel (off). Text goes where the elements put it: ``think``
  → reasoning, ``response`` → content, ``tools`` → calls. Opening a channel ends the one
  that is open, so a response or tools channel that starts before ``<|close|>think<|sep|>``
  ends the reasoning. Text between channels is content unless it is only whitespace; text
  inside ``tools`` or ``call`` but outside their children is dropped; unknown elements are
  transparent (their text goes where their parent's goes).
* Texts are kept byte for byte (no stripping). Empty reasoning or content is ``None``.
* A call is ``<|open|>call tool="NAME" index="N"<|sep|>`` and its children. Each
  ``argument key="K" type="T"`` becomes a member of a JSON object (json.dumps' default
  separators, non-ASCII kept): a ``string`` (or untyped) value as written, any other type
  JSON-decoded (strict: no ``NaN``), or kept as a string if it does not decode, as vLLM's
  ``kimi_k3`` parser does. A raw ``json type="object"`` block is the arguments as written
  (vLLM drops it and returns ``{}``; we keep it, and validation says if it is no JSON
  object). A call without children has ``{}``. Attributes are unescaped (``&quot;``, then
  ``&amp;``). The id is invented, as K3 writes none: ``functions.NAME:IDX``, IDX counting
  the calls of this output from 0. Arguments are validated against the tool's schema
  (:func:`~kimi_modes.protocol.validate_tool_call`); a call cut off by the end of the
  output keeps what arrived and is marked invalid.
* ``<|close|>message<|sep|>``, ``<|end_of_msg|>`` and ``[EOS]`` end the output.
* No control-token string reaches reasoning, content, names or arguments: markers are
  structure or dropped, a header (``<|open|>`` ... ``<|sep|>``) that is cut off is dropped,
  one longer than :data:`HEADER_LIMIT` characters is ordinary text, and where dropping a
  marker would join text into a marker string a ZERO WIDTH SPACE goes at the join.

Streaming holds back only a possible partial marker, an element header until its
``<|sep|>``, whitespace between channels, and a non-string argument value until it closes.
"""

from __future__ import annotations

import json
import re

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.deltas import ContentDelta, Delta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.neutralize import ZERO_WIDTH_SPACE
from kimi_modes.protocol.output import ParsedOutput, ToolCall
from kimi_modes.protocol.scanner import MarkerScanner, MarkerSet, TextField
from kimi_modes.protocol.schema import ToolSet
from kimi_modes.protocol.xtml import parse_header

#: An element header longer than this many characters is not a header: it is text.
HEADER_LIMIT = 4096

_MARKER_SET = MarkerSet(T.XTML_CONTROL_TOKENS)
_STOPS = frozenset((T.XTML_END_OF_MSG, T.EOS))
_CHANNELS = frozenset(("think", "response", "tools"))
_TRANSPARENT = "?"  # an element we do not know, or one out of place
_MARKER_RE = re.compile("|".join(re.escape(m) for m in T.XTML_CONTROL_TOKENS))
_TRUNCATED = "the output ended inside this tool call (truncated)"


class _Call:
    __slots__ = ("error", "id", "index", "kind", "name", "parts")

    def __init__(self, index: int, name: str | None) -> None:
        self.index = index
        self.name = name
        self.id = f"functions.{name or ''}:{index}"
        self.error: str | None = None if name else "the call names no tool"
        self.kind: str | None = None  # "args" or "json" once the first child opened
        self.parts: list[str] = []


class _Value:
    """The argument or raw json block being read."""

    __slots__ = ("is_string", "text")

    def __init__(self, is_string: bool) -> None:
        self.is_string = is_string
        self.text = TextField(_MARKER_SET)


class XtmlParser:
    """Incremental parser of one K3 output; see the module docstring for the rules."""

    def __init__(self, thinks: bool, tools: ToolSet) -> None:
        self._tools = tools
        self._scanner = MarkerScanner(_MARKER_SET)
        self._stack = ["message", "think" if thinks else "response"]
        self._header: TextField | None = None
        self._header_closes = False
        self._header_len = 0
        self._markers = 0
        self._done = False
        self._out: list[Delta] = []
        self._reasoning = TextField(_MARKER_SET)
        self._content = TextField(_MARKER_SET)
        self._loose: list[str] = []  # whitespace between channels, not yet known to be content
        self._loose_kept = False  # the current stretch between channels holds more than that
        self._calls: list[_Call] = []
        self._call: _Call | None = None
        self._value: _Value | None = None
        self._result = ParsedOutput()

    def feed(self, chunk: str) -> list[Delta]:
        """The deltas ``chunk`` made certain."""
        for event in [] if self._done else self._scanner.feed(chunk):
            if event in _MARKER_SET.markers:
                self._marker(event)
                self._markers += 1
                if self._done:
                    break
            elif self._header is not None:
                self._header_text(event)
            else:
                self._text(event)
        return self._take()

    def close(self) -> list[Delta]:
        """End the stream; the deltas still held back."""
        if not self._done:
            for text in self._scanner.flush():
                if self._header is not None:
                    self._header_text(text)
                else:
                    self._text(text)
            if self._call is not None:
                self._call.error = _TRUNCATED
        self._result = ParsedOutput(
            reasoning_content=self._reasoning.text() or None,
            content=self._content.text() or None,
            tool_calls=[self._tool_call(call) for call in self._calls],
        )
        return self._take()

    def result(self) -> ParsedOutput:
        """The parsed answer (after :meth:`close`)."""
        return self._result

    # -- markers and headers ---------------------------------------------------------------

    def _marker(self, marker: str) -> None:
        self._loose.clear()
        self._loose_kept = False
        if marker in _STOPS:
            self._done = True
        elif marker in (T.XTML_OPEN, T.XTML_CLOSE):
            self._header = TextField(_MARKER_SET)  # a header cut by another one is dropped
            self._header_closes = marker == T.XTML_CLOSE
            self._header_len = 0
        elif marker == T.XTML_SEP and self._header is not None:
            header, self._header = self._header.text(), None
            if self._header_closes:
                self._close(header.strip())
            else:
                self._open(*parse_header(header))
        # [BOS], or <|sep|> outside a header: stray, dropped.

    def _header_text(self, text: str) -> None:
        assert self._header is not None
        self._header.append(text, self._markers)
        self._header_len += len(text)
        if self._header_len > HEADER_LIMIT:  # no header after all: text
            header, self._header = self._header.text(), None
            self._text(header)

    def _open(self, tag: str, attributes: dict[str, str]) -> None:
        if tag in _CHANNELS:
            self._pop_to("message")
            self._stack.append(tag)
        elif tag == "call":
            if "tools" in self._stack:
                self._pop_to("tools")
            else:  # a call outside a tools channel: the channel's opener went missing
                self._pop_to("message")
                self._stack.append("tools")
            self._stack.append("call")
            self._begin_call(attributes.get("tool") or None)
        elif tag in ("argument", "json") and "call" in self._stack:
            self._pop_to("call")
            self._begin_value(tag, attributes)
        else:
            self._stack.append(_TRANSPARENT)

    def _close(self, tag: str) -> None:
        if tag not in self._stack:
            return  # stray
        self._pop_to(tag)
        self._end_element(self._stack.pop())
        if tag == "message":
            self._done = True

    def _pop_to(self, tag: str) -> None:
        """End the elements above the innermost ``tag`` (all of them if there is none)."""
        while self._stack and self._stack[-1] != tag:
            self._end_element(self._stack.pop())

    def _end_element(self, tag: str) -> None:
        if tag in ("argument", "json"):
            self._end_value()
        elif tag == "call":
            self._end_call()

    # -- text ------------------------------------------------------------------------------

    def _text(self, text: str) -> None:
        where = next((tag for tag in reversed(self._stack) if tag != _TRANSPARENT), "message")
        if where == "think":
            self._out.append(ReasoningDelta(self._reasoning.append(text, self._markers)))
        elif where == "response":
            self._out.append(ContentDelta(self._content.append(text, self._markers)))
        elif where in ("argument", "json"):
            self._value_text(text)
        elif where == "message":  # between channels: content unless only whitespace
            if not self._loose_kept:
                if text.isspace():
                    self._loose.append(text)
                    return
                text = "".join(self._loose) + text
                self._loose.clear()
                self._loose_kept = True
            self._out.append(ContentDelta(self._content.append(text, self._markers)))
        # inside tools or call, outside their children: dropped

    # -- calls -----------------------------------------------------------------------------

    def _begin_call(self, name: str | None) -> None:
        call = _Call(len(self._calls), name)
        self._calls.append(call)
        self._call = call
        self._out.append(ToolCallDelta(index=call.index, id=call.id, name=call.name))

    def _begin_value(self, tag: str, attributes: dict[str, str]) -> None:
        call = self._call
        assert call is not None
        kind = "json" if tag == "json" else "args"
        if call.kind not in (None, kind):  # a raw block mixed with arguments: ignored
            call.error = "the call mixes a raw json block with argument elements"
            self._stack.append(_TRANSPARENT)
            return
        self._stack.append(tag)
        if kind == "json":
            call.kind = "json"
            self._value = _Value(is_string=True)
            return
        is_string = attributes.get("type", "string") == "string"
        key = json.dumps(attributes.get("key", ""), ensure_ascii=False)
        opener = ("{" if call.kind is None else ", ") + key + ": " + ('"' if is_string else "")
        call.kind = "args"
        self._value = _Value(is_string)
        self._emit_arguments(opener)

    def _value_text(self, text: str) -> None:
        value = self._value
        assert value is not None and self._call is not None
        piece = value.text.append(text, self._markers)
        if self._call.kind == "json":
            self._emit_arguments(piece)
        elif value.is_string:
            self._emit_arguments(json.dumps(piece, ensure_ascii=False)[1:-1])

    def _end_value(self) -> None:
        value, self._value = self._value, None
        if value is None or self._call is None or self._call.kind == "json":
            return
        if value.is_string:
            self._emit_arguments('"')
            return
        raw = value.text.text()
        try:
            decoded = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            decoded = raw
        self._emit_arguments(_break_markers(json.dumps(decoded, ensure_ascii=False)))

    def _end_call(self) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        if call.kind is None:
            self._emit_arguments("{}", call)
        elif call.kind == "args":
            self._emit_arguments("}", call)

    def _emit_arguments(self, text: str, call: _Call | None = None) -> None:
        call = call or self._call
        if call is not None and text:
            call.parts.append(text)
            self._out.append(ToolCallDelta(index=call.index, arguments=text))

    def _tool_call(self, call: _Call) -> ToolCall:
        arguments = "".join(call.parts)
        error = call.error or self._tools.validate(call.name, arguments)
        return ToolCall(id=call.id, name=call.name, arguments=arguments, error=error)

    def _take(self) -> list[Delta]:
        out, self._out = self._out, []
        return out


def _reject_constant(constant: str) -> object:
    raise ValueError(f"{constant} is not allowed")


def _break_markers(text: str) -> str:
    """A decoded value may spell a marker (``"\\u003c|open|>"``): break it as a join is."""
    return _MARKER_RE.sub(lambda m: m.group()[0] + ZERO_WIDTH_SPACE + m.group()[1:], text)
