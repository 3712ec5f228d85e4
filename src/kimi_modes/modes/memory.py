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
- **Shared.** Built on a run store (:mod:`kimi_modes.runs.memories`), a memory is the same
  for every process on that store: an entry written while one worker or replica answered is
  found by the next request wherever it lands. An entry is committed before the answer that
  produced it ends. Built without one (a process with no run store), it lives in this process.
- **Immutable, bounded by count.** The first entry written under a key is kept (a second
  identical turn of the same conversation keeps the first reasoning); each memory keeps at
  most its ``limit`` entries, the oldest (by first write) evicted. A process caches the
  entries it wrote or read (a write-through cache: entries never change); a key it does not
  hold is always looked up in the store, so an entry written elsewhere is found.
- **Cheap when there is nothing to restore.** A request with no assistant tool-call message
  lacking its reasoning (Thinking), or no assistant tool-call message at all (Agent),
  computes no key and never reaches the store; the rest costs one query for all its keys.
- **Best effort.** A store that fails (down, closed) is logged and restores nothing, like an
  evicted entry; a write that fails is logged and kept in this process only.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import orjson

from kimi_modes.runs import Memories

log = logging.getLogger("kimi_modes.memory")

#: The kinds of entry in the run store's memories.
REASONING: Final = "reasoning"
TRANSCRIPT: Final = "transcript"

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


class _Entries:
    """The entries of one ``kind``: in ``store`` when given (at most ``limit``, the oldest
    evicted), with the ``cache`` newest entries this process wrote or read in front; else in
    this process only (at most ``limit``, the oldest evicted)."""

    def __init__(self, kind: str, limit: int, store: Memories | None, cache: int) -> None:
        if limit < 1:
            raise ValueError("a memory keeps at least one entry")
        self.kind = kind
        self.limit = limit
        self._store = store
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = min(cache, limit) if store is not None else limit

    async def get(self, keys: Sequence[str]) -> dict[str, Any]:
        """The entries of those of ``keys`` that exist (one query for those not cached)."""
        found = {key: self._cache[key] for key in keys if key in self._cache}
        missing = [key for key in keys if key not in found]
        if missing and self._store is not None:
            try:
                fetched = await self._store.recall(self.kind, missing)
            except Exception as exc:
                log.warning("%s memory: the store could not be read (%s); nothing restored",
                            self.kind, exc)
                fetched = {}
            for key, value in fetched.items():
                self._keep(key, value)
            found.update(fetched)
        return found

    async def put(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key`` unless an entry is there (committed on return)."""
        if self._store is None:
            if key not in self._cache:
                self._keep(key, value)
            return
        try:
            value = await self._store.remember(self.kind, key, value, limit=self.limit)
        except Exception as exc:
            log.warning("%s memory: the store could not be written (%s); kept in this "
                        "process only", self.kind, exc)
        self._keep(key, value)

    def _keep(self, key: str, value: Any) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


class ReasoningMemory:
    """Remembers ``reasoning_content`` of tool-calling answers: in ``store`` (shared by the
    processes on it) or, without one, in this process; at most ``limit`` entries."""

    def __init__(self, store: Memories | None = None, *, limit: int = 10_000,
                 cache: int = 1_024) -> None:
        self._entries = _Entries(REASONING, limit, store, cache)

    async def remember(self, owner: str | None, history: Sequence[Mapping[str, Any]],
                       answer: Mapping[str, Any]) -> None:
        """Store the reasoning of ``answer`` (an assistant message with tool calls and
        reasoning), the reply of ``owner``'s request whose messages were ``history``;
        anything else stores nothing."""
        reasoning = answer.get("reasoning_content")
        if not answer.get("tool_calls") or not reasoning:
            return
        await self._entries.put(_key_after(owner, history, {**answer, "role": "assistant"}),
                                reasoning)

    async def restore(self, owner: str | None,
                      messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A copy of ``messages`` where each assistant tool-call message that lacks reasoning
        gets the one remembered for it in this owner's conversation; the input is not
        mutated, unmatched messages are left as they are."""
        out = [dict(m) for m in messages]
        wanting = [i for i, m in enumerate(messages)
                   if _has_calls(m) and not m.get("reasoning_content")]
        if not wanting:
            return out
        keys = list(_keys(owner, messages[:wanting[-1] + 1]))
        found = await self._entries.get([keys[i] for i in wanting])
        for i in wanting:
            reasoning = found.get(keys[i])
            if reasoning is not None:
                out[i]["reasoning_content"] = reasoning
        return out


class TranscriptMemory:
    """The hidden part of agent runs that paused on client tool calls.

    An agent run that calls a tool the client declared returns only those calls; the steps
    before them (server tool calls and their results) never reach the client. This remembers
    them, keyed by the owner, the client's messages of that request and the calls it
    returned, and splices them back in when the same owner continues the same conversation
    with its tool results, so Kimi sees the whole transcript. In ``store`` (shared by the
    processes on it) or, without one, in this process; at most ``limit`` entries.
    """

    def __init__(self, store: Memories | None = None, *, limit: int = 2_000,
                 cache: int = 256) -> None:
        self._entries = _Entries(TRANSCRIPT, limit, store, cache)

    async def remember(self, owner: str | None, history: Sequence[Mapping[str, Any]],
                       client_calls: Sequence[Mapping[str, Any]],
                       hidden: Sequence[Mapping[str, Any]]) -> None:
        """``history``: the client's messages of the request (as the client sent them);
        ``client_calls``: the calls returned to it; ``hidden``: the run's messages after the
        client's own (assistant steps and server tool results), ending with the step that
        made ``client_calls``."""
        if not client_calls:
            return
        standing_for = {"role": "assistant", "tool_calls": list(client_calls)}
        await self._entries.put(_key_after(owner, history, _calls_only(standing_for)),
                                [dict(m) for m in hidden])

    async def restore(self, owner: str | None,
                      messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A copy of ``messages`` where an assistant message carrying remembered client calls
        (in this owner's conversation) is replaced by the hidden transcript it stood for."""
        if not any(_has_calls(m) for m in messages):
            return [dict(m) for m in messages]
        candidates: dict[int, str] = {}
        prefix = _start(owner)
        for i, message in enumerate(messages):
            if _has_calls(message):
                key = prefix.copy()
                key.update(b"\x00this:" + canonical_message(_calls_only(message)))
                candidates[i] = key.hexdigest()
            prefix.update(b"\x00" + canonical_message(message))
        found = await self._entries.get(list(candidates.values()))
        out: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            hidden = found.get(candidates.get(i, ""))
            if hidden is not None:
                out.extend(dict(m) for m in hidden)
            else:
                out.append(dict(message))
        return out


def _calls_only(message: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an assistant message a transcript is keyed on: its tool calls (the text
    the client shows with them may be edited or dropped)."""
    return {"role": "assistant", "tool_calls": message.get("tool_calls")}


def _has_calls(message: Mapping[str, Any]) -> bool:
    return message.get("role") == "assistant" and bool(message.get("tool_calls"))
