"""Parse what a Kimi model writes into reasoning, content and tool calls (kimi-protocol.md §5).

:class:`StreamingParser` and :func:`parse_output` serve every family; this module holds the
``k2`` wire format's state machine (K2 to K2.7-Code), :mod:`kimi_modes.protocol.k3_parse`
the ``xtml`` one (K3). One state machine serves both entry points: :class:`StreamingParser`
is fed chunks and returns deltas as soon as they are certain; :func:`parse_output` feeds it
the whole text at once. So the one-shot result and the streamed one cannot drift apart.

What a caller may rely on (the spec's rules, plus the decisions it leaves open):

* Reasoning (``k2-thinking``, ``k2.7-code``; ``k2.5``, ``k2.6`` unless ``thinking=False``)
  runs from the start (a leading ``<think>`` is skipped) to ``</think>``, or to the first
  tool-call marker (K2-Thinking and later sometimes open tool calls inside their thinking,
  as vLLM's ``kimi_k25`` reasoning parser allows for); with neither, the whole output is
  reasoning. Other families and modes have no reasoning.
* Content is everything outside reasoning and tool calls, verbatim, except that a stretch of
  content that is only whitespace, or only the ``(no content)`` placeholder with whitespace
  around it, is dropped. The stretches are: before the tool section, and after it.
* A tool section is opened by ``<|tool_calls_section_begin|>`` (or the singular spelling) or
  by a bare ``<|tool_call_begin|>``. Text in a section outside calls is dropped, unless the
  section holds no call (then it is content), the output ends there (content), or it grows
  past :data:`SECTION_LIMIT` characters without a call marker (abandoned: it and what follows
  are content). A call whose id grows past that limit is abandoned the same way.
* A call ends at ``<|tool_call_end|>``, the next ``<|tool_call_begin|>``, the section end or
  the end of the output; a call cut off keeps what it has. A call without id or arguments
  (two call markers in a row) is no call. Calls are never dropped for bad arguments: they
  carry an ``error`` instead (:func:`~kimi_modes.protocol.validate_tool_call`).
* ``<|im_end|>`` and ``[EOS]`` end the output: what follows them is ignored.
* No control-token string reaches reasoning, content, ids, names or arguments: stray markers
  are removed, and where removing one would join the text around it into a marker string, a
  ZERO WIDTH SPACE is put at the join.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.deltas import (
    ContentDelta,
    Delta,
    ReasoningDelta,
    ToolCallDelta,
    coalesce,
)
from kimi_modes.protocol.families import family_info
from kimi_modes.protocol.ids import function_name_from_id
from kimi_modes.protocol.k3_parse import XtmlParser
from kimi_modes.protocol.output import ParsedOutput, ToolCall
from kimi_modes.protocol.scanner import MarkerScanner, MarkerSet, TextField
from kimi_modes.protocol.schema import ToolSet

#: A tool section (or a call id) longer than this many characters without a call marker is
#: not a tool section after all: it is returned as content.
SECTION_LIMIT = 8192

_MARKERS = frozenset(T.CONTROL_TOKENS)
_MARKER_SET = MarkerSet(_MARKERS)
_SECTION_BEGINS = frozenset((T.TOOL_CALLS_SECTION_BEGIN, T.TOOL_CALL_SECTION_BEGIN_SINGULAR))
_STOPS = frozenset((T.IM_END, T.EOS))
_PLACEHOLDER = T.NO_CONTENT_PLACEHOLDER

_REASONING, _CONTENT, _SECTION, _CALL_ID, _CALL_ARGS, _DONE = range(6)


def parse_output(
    text: str,
    family: str,
    *,
    thinking: bool | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> ParsedOutput:
    """Parse a complete output (without the prompt; the stop token may be there or not).

    ``thinking`` is the switch the prompt was rendered with (``None``: the family's
    default); ``tools`` the request's tools, used to name calls whose id is a bare number
    and to validate arguments. ``ValueError`` for an unknown family; never raises on the
    text itself.
    """
    parser = StreamingParser(family, thinking=thinking, tools=tools)
    parser.feed(text)
    parser.close()
    return parser.result()


class _Machine(Protocol):
    def feed(self, chunk: str) -> list[Delta]: ...
    def close(self) -> list[Delta]: ...
    def result(self) -> ParsedOutput: ...


class StreamingParser:
    """Incremental parser of one Kimi output, for every family.

    Feed chunks of any size with :meth:`feed`, then call :meth:`close` once; each returns the
    deltas that became certain. Concatenated, the deltas give :meth:`result` field by field:
    the reasoning, the content, and per tool-call ``index`` the arguments; a call's first
    delta carries its ``id`` (and its ``name`` when known then; a name that only the
    arguments can tell comes with the call's last delta). Each character is looked at a
    bounded number of times, however the text is chunked, and the result does not depend on
    the chunking.

    The rules are the family's wire format's: this module's docstring for ``k2`` (K2 to
    K2.7-Code), :mod:`kimi_modes.protocol.k3_parse` for ``xtml`` (K3). For ``k2`` only text
    that could still turn out to be a marker, whitespace that may be stripped, a possible
    ``(no content)`` placeholder, and tool-section text (up to :data:`SECTION_LIMIT`
    characters) are held back.

    ``reasoning=False``: the text holds no reasoning block whatever the family and switch (an
    engine's reasoning parser took the reasoning out and this is the content it left), so it
    is read from where the reasoning would have ended.
    """

    def __init__(
        self,
        family: str,
        *,
        thinking: bool | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        reasoning: bool = True,
    ) -> None:
        info = family_info(family)
        thinks, toolset = reasoning and info.thinks(thinking), ToolSet(tools)
        self._machine: _Machine = (
            XtmlParser(thinks, toolset)
            if info.wire_format == "xtml"
            else _K2Parser(thinks, toolset)
        )
        self._closed = False

    def feed(self, chunk: str) -> list[Delta]:
        """Parse the next chunk; return the deltas it made certain (possibly none)."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        return coalesce(self._machine.feed(chunk))

    def close(self) -> list[Delta]:
        """End the stream: return the deltas still held back; :meth:`result` is ready after."""
        if self._closed:
            raise RuntimeError("close() called twice")
        self._closed = True
        return coalesce(self._machine.close())

    def result(self) -> ParsedOutput:
        """The parsed answer; equal to :func:`parse_output` of all text fed. After close()."""
        if not self._closed:
            raise RuntimeError("result() before close()")
        return self._machine.result()


class _Call:
    __slots__ = ("args", "args_started", "deferred", "error", "id", "index", "name", "pending")

    def __init__(self, index: int, call_id: str) -> None:
        self.index = index
        self.id = call_id
        self.name: str | None = None
        self.error: str | None = None
        self.deferred = False  # named from its arguments once they are complete
        self.args = TextField(_MARKER_SET)
        self.args_started = False
        self.pending: list[str] = []  # trailing whitespace that may yet be stripped


class _K2Parser:
    """The state machine for the ``k2`` wire format (the module docstring's rules)."""

    def __init__(self, thinks: bool, tools: ToolSet) -> None:
        self._tools = tools
        self._scanner = MarkerScanner(_MARKER_SET)
        self._state = _REASONING if thinks else _CONTENT
        self._markers = 0
        self._out: list[Delta] = []
        self._reasoning = TextField(_MARKER_SET)
        self._reasoning_started = False
        self._reasoning_ws: list[str] = []
        self._content = TextField(_MARKER_SET)
        self._piece = 0  # -1: content stretch decided; k >= 0: blank or k chars of placeholder
        self._piece_held: list[str] = []
        self._section = TextField(_MARKER_SET)
        self._section_len = 0
        self._section_calls = 0
        self._call_id = TextField(_MARKER_SET)
        self._call_id_len = 0
        self._calls: list[_Call] = []
        self._call: _Call | None = None
        self._result = ParsedOutput()

    def feed(self, chunk: str) -> list[Delta]:
        if self._state == _DONE:
            return []
        for event in self._scanner.feed(chunk):
            if event in _MARKERS:
                self._marker(event)
                if self._state == _DONE:
                    break
            else:
                self._text(event)
        return self._take()

    def close(self) -> list[Delta]:
        """End the stream: return the deltas still held back; :meth:`result` is ready after."""
        if self._state != _DONE:
            for text in self._scanner.flush():
                self._text(text)
            self._finish()
        self._result = ParsedOutput(
            reasoning_content=self._reasoning.text() or None,
            content=self._content.text() or None,
            tool_calls=[self._tool_call(call) for call in self._calls],
        )
        return self._take()

    def result(self) -> ParsedOutput:
        return self._result

    # -- events ---------------------------------------------------------------------------

    def _text(self, text: str) -> None:
        state = self._state
        if state == _CONTENT:
            self._content_text(text)
        elif state == _REASONING:
            self._reasoning_text(text)
        elif state == _CALL_ARGS:
            self._args_text(text)
        elif state == _SECTION:
            self._section_text(text)
        elif state == _CALL_ID:
            self._call_id_text(text)

    def _marker(self, marker: str) -> None:
        self._handle_marker(marker)
        # Counted after handling: text a handler files away (an abandoned section) came
        # before this marker.
        self._markers += 1

    def _handle_marker(self, marker: str) -> None:
        state = self._state
        if marker in _STOPS:
            self._finish()
        elif state == _REASONING:
            if marker == T.THINK_BEGIN and not self._reasoning_started:
                self._reasoning_ws.clear()  # the model opened the block itself (k2-thinking)
            elif marker == T.THINK_END:
                self._enter_content()
            elif marker in _SECTION_BEGINS:
                self._open_section()
            elif marker == T.TOOL_CALL_BEGIN:
                self._begin_call()
        elif state == _CONTENT:
            if marker in _SECTION_BEGINS:
                self._end_piece()
                self._open_section()
            elif marker == T.TOOL_CALL_BEGIN:
                self._end_piece()
                self._begin_call()
        elif state == _SECTION:
            if marker == T.TOOL_CALL_BEGIN:
                self._begin_call()
            elif marker == T.TOOL_CALLS_SECTION_END:
                if self._section_calls:
                    self._enter_content()
                else:
                    self._abandon_section()
        elif state in (_CALL_ID, _CALL_ARGS):
            if marker == T.TOOL_CALL_ARGUMENT_BEGIN and state == _CALL_ID:
                self._open_call()
            elif marker == T.TOOL_CALL_END:
                self._end_call()
                self._open_section(calls=self._section_calls)
            elif marker == T.TOOL_CALL_BEGIN:
                self._end_call()
                self._begin_call()
            elif marker == T.TOOL_CALLS_SECTION_END:
                self._end_call()
                self._enter_content()
        # Any other marker is stray here and is dropped.

    def _finish(self) -> None:
        state = self._state
        if state == _CONTENT:
            self._end_piece()
        elif state == _SECTION:
            self._abandon_section()
            self._end_piece()
        elif state in (_CALL_ID, _CALL_ARGS):
            self._end_call()
        self._state = _DONE

    # -- reasoning and content -------------------------------------------------------------

    def _reasoning_text(self, text: str) -> None:
        if not self._reasoning_started:
            if text.isspace():
                self._reasoning_ws.append(text)
                return
            self._reasoning_started = True
            if self._reasoning_ws:
                text = "".join(self._reasoning_ws) + text
                self._reasoning_ws.clear()
        self._out.append(ReasoningDelta(self._append(self._reasoning, text)))

    def _enter_content(self) -> None:
        self._state = _CONTENT
        self._piece = 0
        self._piece_held = []

    def _content_text(self, text: str) -> None:
        k = self._piece
        if k < 0:
            self._out.append(ContentDelta(self._append(self._content, text)))
            return
        # Undecided: so far only whitespace and (part of) the placeholder. Walk on until a
        # character decides; each character is walked at most once per stretch.
        full = len(_PLACEHOLDER)
        for char in text:
            if k == 0 and char.isspace():
                continue
            if k < full and char == _PLACEHOLDER[k]:
                k += 1
                continue
            if k == full and char.isspace():
                continue
            self._piece = -1
            held = "".join(self._piece_held)
            self._piece_held = []
            self._out.append(ContentDelta(self._append(self._content, held + text)))
            return
        self._piece = k
        self._piece_held.append(text)

    def _end_piece(self) -> None:
        """End a content stretch: an undecided one is dropped unless it is a partial placeholder."""
        if 0 < self._piece < len(_PLACEHOLDER):
            held = "".join(self._piece_held)
            self._out.append(ContentDelta(self._append(self._content, held)))
        self._piece = -1
        self._piece_held = []

    # -- tool section and calls ------------------------------------------------------------

    def _open_section(self, calls: int = 0) -> None:
        self._state = _SECTION
        self._section = TextField(_MARKER_SET)
        self._section_len = 0
        self._section_calls = calls

    def _section_text(self, text: str) -> None:
        self._section_len += len(text)
        self._append(self._section, text)
        if self._section_len > SECTION_LIMIT:
            self._abandon_section()

    def _abandon_section(self) -> None:
        text = self._section.text()
        self._section = TextField(_MARKER_SET)
        self._enter_content()
        if text:
            self._content_text(text)

    def _begin_call(self) -> None:
        self._state = _CALL_ID
        self._section_calls += 1
        self._call_id = TextField(_MARKER_SET)
        self._call_id_len = 0

    def _call_id_text(self, text: str) -> None:
        self._append(self._call_id, text)
        self._call_id_len += len(text)
        if self._call_id_len > SECTION_LIMIT:
            self._enter_content()
            self._content_text(self._call_id.text())

    def _open_call(self) -> None:
        call = _Call(len(self._calls), self._call_id.text().strip())
        call.name = function_name_from_id(call.id) or None
        if call.name is None:
            if self._tools.ambiguous:
                call.deferred = True
            else:
                call.name, call.error = self._tools.resolve_unnamed("")
        self._calls.append(call)
        self._call = call
        self._state = _CALL_ARGS
        self._out.append(ToolCallDelta(index=call.index, id=call.id, name=call.name))

    def _args_text(self, text: str) -> None:
        call = self._call
        assert call is not None
        if not call.args_started:
            text = text.lstrip()
            if not text:
                return
            call.args_started = True
        body = text.rstrip()
        if not body:
            call.pending.append(text)
            return
        piece = body
        if call.pending:
            piece = "".join(call.pending) + body
            call.pending = []
        if len(body) < len(text):  # trailing whitespace: stripped if the call ends here
            call.pending.append(text[len(body) :])
        piece = self._append(call.args, piece)
        self._out.append(ToolCallDelta(index=call.index, arguments=piece))

    def _end_call(self) -> None:
        if self._state == _CALL_ID:
            if not self._call_id.text().strip():
                return  # nothing was written: no call
            self._open_call()
        call = self._call
        assert call is not None
        self._call = None
        if call.deferred:
            call.name, call.error = self._tools.resolve_unnamed(call.args.text())
            if call.name is not None:
                self._out.append(ToolCallDelta(index=call.index, name=call.name))

    def _tool_call(self, call: _Call) -> ToolCall:
        arguments = call.args.text()
        error = call.error or self._tools.validate(call.name, arguments)
        return ToolCall(id=call.id, name=call.name, arguments=arguments, error=error)

    # -- output ----------------------------------------------------------------------------

    def _append(self, field: TextField, text: str) -> str:
        return field.append(text, self._markers)

    def _take(self) -> list[Delta]:
        out, self._out = self._out, []
        return out
