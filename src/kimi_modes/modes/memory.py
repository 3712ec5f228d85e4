"""What the gateway remembers between requests for clients that drop it, scoped to the
caller and the conversation.

With thinking on, Kimi expects every assistant message that carries tool calls to come back
with its ``reasoning_content`` (Moonshot's API answers 400 without it), and an Agent run that
paused on the client's tool calls must see its hidden steps again when the client continues.
Many clients drop the reasoning, and no client ever saw the hidden steps, so the gateway
remembers both.

What callers may rely on:

- **Scope.** An entry is found only by the same ``owner`` (the caller's tenant id, ``None``
  for an anonymous gateway) *and* the same conversation: the key covers every message before
  the remembered assistant message, plus that message itself. Kimi's tool-call ids
  (``functions.NAME:IDX``) repeat across conversations, so ids alone never match.
- **Certainty.** A lookup restores only on an exact match of that key; anything else restores
  nothing (the message goes on as the client sent it).
- **Canonical form.** Keys are computed on a canonical form of each message, so clients that
  re-serialise still match: tool-call arguments as canonical JSON (keys sorted, no spaces:
  LangChain's ``json.dumps`` with spaces and JavaScript's compact ``JSON.stringify`` agree),
  content as its text (a string, or the text parts of a list, joined), surrounding whitespace
  ignored, ``reasoning_content`` and unknown fields ignored.

Both memories are bounded (LRU) and live in this process; one event loop, no locking.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

_Hash = Any  # hashlib's blake2b object (no public type)


def canonical_arguments(arguments: Any) -> str:
    """Tool-call arguments as canonical JSON (sorted keys, compact); a string that is not
    JSON is kept as it is, stripped."""
    value = arguments
    if isinstance(arguments, str):
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments.strip()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _text(content: Any) -> Any:
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping)]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(str(t) for t in texts).strip()
    return content  # anything else (images, ...) as it is


def _calls(message: Mapping[str, Any]) -> list[tuple[Any, Any, str]]:
    out = []
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        out.append((call.get("id"), fn.get("name"), canonical_arguments(fn.get("arguments"))))
    return out


def canonical_message(message: Mapping[str, Any]) -> bytes:
    """The bytes a message contributes to a conversation key (see the module docstring)."""
    return orjson.dumps(
        [message.get("role"), _text(message.get("content")), _calls(message),
         message.get("tool_call_id"), message.get("name")],
        option=orjson.OPT_SORT_KEYS,
    )


def _start(owner: str | None) -> _Hash:
    h = hashlib.blake2b(digest_size=16)
    h.update(orjson.dumps(owner))
    return h


def _keys(owner: str | None, messages: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """For each message, the key of "this message after everything before it": one pass,
    the prefix hashed incrementally."""
    prefix = _start(owner)
    for message in messages:
        key = prefix.copy()
        key.update(b"\x00this:" + canonical_message(message))
        yield key.hexdigest()
        prefix.update(b"\x00" + canonical_message(message))


def _key_after(owner: str | None, history: Sequence[Mapping[str, Any]],
               message: Mapping[str, Any]) -> str:
    """The key of ``message`` following ``history``."""
    *_, last = _keys(owner, [*history, message])
    return last


class _Lru(OrderedDict[str, Any]):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


class ReasoningMemory:
    """Remembers ``reasoning_content`` of tool-calling answers; at most ``capacity`` kept."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._items = _Lru(capacity)

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, owner: str | None, history: Sequence[Mapping[str, Any]],
                 answer: Mapping[str, Any]) -> None:
        """Store the reasoning of ``answer`` (an assistant message with tool calls and
        reasoning), the reply of ``owner``'s request whose messages were ``history``."""
        reasoning = answer.get("reasoning_content")
        if not answer.get("tool_calls") or not reasoning:
            return
        self._items.put(_key_after(owner, history, {**answer, "role": "assistant"}), reasoning)

    def restore(self, owner: str | None,
                messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A copy of ``messages`` where each assistant tool-call message that lacks reasoning
        gets the one remembered for it in this owner's conversation; the input is not
        mutated, unmatched messages are left as they are."""
        out: list[dict[str, Any]] = []
        for message, key in zip(messages, _keys(owner, messages), strict=True):
            new = dict(message)
            if (new.get("role") == "assistant" and new.get("tool_calls")
                    and not new.get("reasoning_content")):
                found = self._items.get(key)
                if found is not None:
                    new["reasoning_content"] = found
            out.append(new)
        return out


class TranscriptMemory:
    """The hidden part of agent runs that paused on client tool calls.

    An agent run that calls a tool the client declared returns only those calls; the steps
    before them (server tool calls and their results) never reach the client. This remembers
    them, keyed by the owner, the client's messages of that request and the calls it
    returned, and splices them back in when the same owner continues the same conversation
    with its tool results, so Kimi sees the whole transcript. Bounded (LRU).
    """

    def __init__(self, capacity: int = 2_000) -> None:
        self._items = _Lru(capacity)

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, owner: str | None, history: Sequence[Mapping[str, Any]],
                 client_calls: Sequence[Mapping[str, Any]],
                 hidden: Sequence[Mapping[str, Any]]) -> None:
        """``history``: the client's messages of the request (as the client sent them);
        ``client_calls``: the calls returned to it; ``hidden``: the run's messages after the
        client's own (assistant steps and server tool results), ending with the step that
        made ``client_calls``."""
        if not client_calls:
            return
        standing_for = {"role": "assistant", "tool_calls": list(client_calls)}
        self._items.put(_key_after(owner, history, _calls_only(standing_for)),
                        [dict(m) for m in hidden])

    def restore(self, owner: str | None,
                messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A copy of ``messages`` where an assistant message carrying remembered client calls
        (in this owner's conversation) is replaced by the hidden transcript it stood for."""
        out: list[dict[str, Any]] = []
        prefix = _start(owner)
        for message in messages:
            if message.get("role") == "assistant" and message.get("tool_calls"):
                key = prefix.copy()
                key.update(b"\x00this:" + canonical_message(_calls_only(message)))
                hidden = self._items.get(key.hexdigest())
                if hidden is not None:
                    out.extend(dict(m) for m in hidden)
                    prefix.update(b"\x00" + canonical_message(message))
                    continue
            out.append(dict(message))
            prefix.update(b"\x00" + canonical_message(message))
        return out


def _calls_only(message: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an assistant message a transcript is keyed on: its tool calls (the text
    the client shows with them may be edited or dropped)."""
    return {"role": "assistant", "tool_calls": message.get("tool_calls")}
