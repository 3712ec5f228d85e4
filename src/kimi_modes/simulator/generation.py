"""From the text a reply makes the model write to the tokens an engine generates and the
deltas it streams.

:func:`generate` tokenizes the raw text, applies the request's limits the way vLLM does
(``max_tokens``, ``ignore_eos``, ``stop`` strings, ``skip_special_tokens``) and classifies the
tokens into the shared deltas of :mod:`kimi_modes.protocol.deltas` as vLLM's reasoning and
tool parsers would (``kimi_k2`` for the K2.x families; for K3's XTML, ``kimi_k3``, stood in
for by protocol's own K3 parser), or leaves everything as content (no parsers; and
``/v1/completions``, where :data:`RAW` is used). One :class:`Generation` step per generated
token, the stop token included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import cycle, islice

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.deltas import ContentDelta, Delta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.families import WireFormat, family_info
from kimi_modes.protocol.parse import StreamingParser
from kimi_modes.simulator.tokenize import HIDDEN_TOKENS, count_tokens, tokenize

#: What ``ignore_eos`` generates after the answer (and its stop token), cycled.
FILLER = tokenize(" The lighthouse keeper counted the waves again, one by one, all night.")
_ID_RE = re.compile(r"(.+:\d+)")
_SECTION_BEGINS = (T.TOOL_CALLS_SECTION_BEGIN, T.TOOL_CALL_SECTION_BEGIN_SINGULAR)
_CALL_END = f"{T.XTML_CLOSE}call{T.XTML_SEP}"  # what ends a K3 call
_MESSAGE_END = f"{T.XTML_CLOSE}message{T.XTML_SEP}"  # and its answer


@dataclass(slots=True, frozen=True)
class Limits:
    """A request's generation limits; ``max_tokens`` counts the stop token too."""

    max_tokens: int
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    include_stop_str: bool = False
    skip_special_tokens: bool = True


@dataclass(slots=True, frozen=True)
class Parsing:
    """How tokens become deltas. ``thinks``: the output begins inside the reasoning block;
    ``reasoning``/``tools``: vLLM's reasoning / tool-call parser is on; ``named_tool``: the
    request forced one function (its finish reason stays ``stop``). ``family``: the family
    served, whose wire format picks the parsers (``None``: a K2.x one)."""

    thinks: bool = False
    reasoning: bool = False
    tools: bool = False
    named_tool: bool = False
    family: str | None = None

    @property
    def wire_format(self) -> WireFormat:
        return family_info(self.family).wire_format if self.family is not None else "k2"


RAW = Parsing()


@dataclass(slots=True)
class FinishedCall:
    id: str
    name: str
    arguments: str = ""
    complete: bool = False


class Generation:
    """The tokens of one answer, classified lazily: :meth:`steps` yields one tuple of deltas
    per generated token (the stop token included) and is meant to be consumed once, as the
    answer is sent, so that a burst of requests costs little before their first tokens.
    ``completion_tokens`` is known at once; the sums (``finish_reason``, ``reasoning``,
    ``content``, ``tool_calls``, ``reasoning_tokens``) are final once the steps are consumed.
    ``tool_calls`` holds the calls whose end marker was generated (what vLLM's non-streaming
    parser returns). ``tokens`` are the generated tokens as text, one per step (hidden ones
    and the stop token included), for their logprobs."""

    def __init__(self, texts: list[str], reached_eos: bool, finish: str,
                 stop_reason: str | None, parsing: Parsing, tokens: list[str]) -> None:
        self._texts = texts
        self.tokens = tokens
        self._reached_eos = reached_eos
        self._finish = finish
        self.stop_reason = stop_reason
        self._named = parsing.named_tool
        self._classifier: _Classifier | _XtmlClassifier = (
            _XtmlClassifier(parsing)
            if parsing.wire_format == "xtml" and (parsing.reasoning or parsing.tools)
            else _Classifier(parsing)
        )
        self.completion_tokens = len(texts) + reached_eos

    def steps(self) -> Iterator[tuple[Delta, ...]]:
        classifier = self._classifier
        last = len(self._texts) - 1
        for i, text in enumerate(self._texts):
            deltas = classifier.feed(text)
            yield deltas + classifier.close() if i == last and not self._reached_eos else deltas
        if self._reached_eos:
            yield classifier.close()

    def run(self) -> Generation:
        """Consume the steps at once (for a non-streaming answer); returns ``self``."""
        for _ in self.steps():
            pass
        return self

    @property
    def finish_reason(self) -> str:
        if self._classifier.calls and self._finish == "stop" and not self._named:
            return "tool_calls"
        return self._finish

    @property
    def reasoning_tokens(self) -> int:
        return self._classifier.reasoning_tokens

    @property
    def reasoning(self) -> str:
        return "".join(self._classifier.reasoning_parts)

    @property
    def content(self) -> str:
        return "".join(self._classifier.content_parts)

    @property
    def tool_calls(self) -> list[FinishedCall]:
        return [c for c in self._classifier.calls if c.complete]


def generate(raw: str, limits: Limits, parsing: Parsing = RAW,
             stop_token: str = T.IM_END) -> Generation:
    """Generate ``raw`` (the model's text without its stop token) under ``limits``;
    ``stop_token`` is the family's (what ``ignore_eos`` generates past)."""
    tokens = tokenize(raw)
    if limits.ignore_eos:
        tokens.append(stop_token)
        tokens.extend(islice(cycle(FILLER), max(0, limits.max_tokens - len(tokens))))
    reached_eos = not limits.ignore_eos and len(tokens) < limits.max_tokens
    del tokens[limits.max_tokens:]
    generated = list(tokens)
    if limits.skip_special_tokens:
        texts = ["" if tok in HIDDEN_TOKENS else tok for tok in tokens]
    else:
        texts = tokens
    finish, stop_reason = ("stop" if reached_eos else "length"), None
    if limits.stop:
        stop_reason = _apply_stop(texts, limits.stop, limits.include_stop_str)
        if stop_reason is not None:
            finish, reached_eos = "stop", False
            del generated[len(texts):]
    if reached_eos:
        generated.append(stop_token)
    return Generation(texts, reached_eos, finish, stop_reason, parsing, generated)


def _apply_stop(texts: list[str], stops: tuple[str, ...], include: bool) -> str | None:
    """Cut ``texts`` (in place) at the first stop string; return it, or ``None``."""
    longest = max(len(s) for s in stops)
    joined = ""
    for i, text in enumerate(texts):
        start = max(0, len(joined) - longest + 1)
        joined += text
        hits = [(pos, s) for s in stops if s and (pos := joined.find(s, start)) >= 0]
        if hits:
            pos, stop = min(hits)
            keep = joined[: pos + len(stop) if include else pos]
            del texts[i + 1:]
            offset = 0
            for j, piece in enumerate(texts):
                texts[j] = keep[offset: offset + len(piece)]
                offset += len(piece)
            return stop
    return None


class _Classifier:
    """vLLM's ``kimi_k2`` parsers, token by token: reasoning until ``</think>`` (or the tool
    section), content until the tool section, then per call the id (name after the last
    ``.``, before ``:IDX``) and the argument pieces. Text after the section is dropped; a call
    whose id is not ``…:DIGITS`` stops all further tool output, as in vLLM."""

    def __init__(self, parsing: Parsing) -> None:
        self.parsing = parsing
        self.state = "reasoning" if parsing.thinks and parsing.reasoning else "content"
        self.reasoning_tokens = 0
        self.reasoning_parts: list[str] = []
        self.content_parts: list[str] = []
        self.calls: list[FinishedCall] = []
        self._id_parts: list[str] = []

    def feed(self, text: str) -> tuple[Delta, ...]:
        state = self.state
        if state == "reasoning" and text not in (T.THINK_BEGIN, T.THINK_END):
            self.reasoning_tokens += 1
        if not text:
            return ()
        if state in ("reasoning", "content"):
            if self.parsing.tools and text in _SECTION_BEGINS:
                self.state = "section"
            elif state == "reasoning" and text in (T.THINK_BEGIN, T.THINK_END):
                self.state = "content" if text == T.THINK_END else state
            elif state == "reasoning":
                self.reasoning_parts.append(text)
                return (ReasoningDelta(text),)
            else:
                self.content_parts.append(text)
                return (ContentDelta(text),)
        elif state == "section":
            if text == T.TOOL_CALL_BEGIN:
                self.state, self._id_parts = "id", []
            elif text == T.TOOL_CALLS_SECTION_END:
                self.state = "after"
        elif state == "id":
            if text != T.TOOL_CALL_ARGUMENT_BEGIN:
                self._id_parts.append(text)
                return ()
            match = _ID_RE.match("".join(self._id_parts).strip())
            if match is None:
                self.state = "blocked"
                return ()
            call_id = match.group(1).strip()
            call = FinishedCall(call_id, call_id.split(":")[0].split(".")[-1])
            self.calls.append(call)
            self.state = "args"
            return (ToolCallDelta(len(self.calls) - 1, call.id, call.name),)
        elif state == "args":
            if text == T.TOOL_CALL_END:
                self.calls[-1].complete = True
                self.state = "section"
            elif text == T.TOOL_CALL_BEGIN:
                self.state, self._id_parts = "id", []
            else:
                self.calls[-1].arguments += text
                return (ToolCallDelta(len(self.calls) - 1, arguments=text),)
        return ()

    def close(self) -> tuple[Delta, ...]:
        """Nothing is held back: every token was classified as it came."""
        return ()


class _XtmlClassifier:
    """vLLM's ``kimi_k3`` parsers, stood in for by protocol's K3 parser fed token by token:
    reasoning in the think channel, content in the response channel, calls in the tools
    channel (ids ``functions.NAME:IDX``, as K3 writes none). A call counts as complete (for
    the non-streaming answer, as vLLM's parser decodes complete call blocks only) once its
    ``<|close|>call<|sep|>`` is generated. Without the tool parser (no tools declared, or
    ``tool_choice`` ``none``) the calls the model writes are dropped. What ``ignore_eos``
    generates past ``<|close|>message<|sep|>`` is content, as for K2."""

    def __init__(self, parsing: Parsing) -> None:
        self.parsing = parsing
        assert parsing.family is not None  # an XTML wire format comes from a family
        self._parser = StreamingParser(parsing.family, thinking=parsing.thinks)
        self.reasoning_parts: list[str] = []
        self.content_parts: list[str] = []
        self.calls: list[FinishedCall] = []
        self._tail = ""  # the end of the text fed, for the two markers above
        self._ended = False

    @property
    def reasoning_tokens(self) -> int:
        return count_tokens("".join(self.reasoning_parts))

    def feed(self, text: str) -> tuple[Delta, ...]:
        if self._ended:
            return self._take([ContentDelta(text)]) if text else ()
        if not text:
            return ()
        self._tail = (self._tail + text)[-len(_MESSAGE_END):]
        deltas = self._take(self._parser.feed(text))
        if self._tail.endswith(_CALL_END) and self.calls:
            self.calls[-1].complete = True
        elif self._tail.endswith(_MESSAGE_END):
            self._ended = True
            deltas += self._take(self._parser.close())
        return deltas

    def close(self) -> tuple[Delta, ...]:
        if self._ended:
            return ()
        self._ended = True
        return self._take(self._parser.close())

    def _take(self, deltas: list[Delta]) -> tuple[Delta, ...]:
        out: list[Delta] = []
        for d in deltas:
            if isinstance(d, ReasoningDelta):
                self.reasoning_parts.append(d.text)
            elif isinstance(d, ContentDelta):
                self.content_parts.append(d.text)
            elif not self.parsing.tools:
                continue
            elif d.id is not None:  # the header, sent on its own as vLLM does
                self.calls.append(FinishedCall(d.id, d.name or ""))
                out.append(ToolCallDelta(d.index, d.id, d.name))
                if d.arguments:
                    self.calls[d.index].arguments += d.arguments
                    out.append(ToolCallDelta(d.index, arguments=d.arguments))
                continue
            else:
                self.calls[d.index].arguments += d.arguments
            out.append(d)
        return tuple(out)
