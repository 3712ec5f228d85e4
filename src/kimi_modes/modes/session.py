"""What a router in front of the engines keeps affinity on: one stable session id per
conversation and per sub-agent, with no state kept here.

What callers may rely on:

- :func:`conversation_session_id` is the same for every turn of one caller's conversation:
  it hashes the caller (``owner``) and the conversation's opening, every message up to and
  including the first user message, in the canonical form the reasoning memory keys on
  (:func:`~kimi_modes.modes.memory.canonical_message`: clients that re-serialise still
  match). Two callers never share an id; two conversations of one caller that open with the
  same words do, which costs nothing (they share their prompt's prefix as well).
- A sub-agent's session id is its run id (set by :mod:`kimi_modes.modes.swarm.workers`), kept
  by the run that resumes it.
- :class:`SessionEngine` stamps one session id and objective on every request of an agent
  run or sub-agent: each model call of the run carries them.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from kimi_modes.engines.base import ChatRequest, Engine, Event
from kimi_modes.modes.memory import canonical_message


def conversation_session_id(owner: str | None,
                            messages: Sequence[Mapping[str, Any]]) -> str:
    """The session id of ``owner``'s conversation that starts with ``messages`` (32 hex
    digits; see the module docstring)."""
    digest = hashlib.blake2b(orjson.dumps(owner), digest_size=16)
    for message in messages:
        digest.update(b"\x00" + canonical_message(message))
        if message.get("role") == "user":
            break
    return digest.hexdigest()


class SessionEngine:
    """``engine`` with ``session_id`` and ``objective`` set on every request it streams
    (``None`` leaves the request's own). It owns nothing: :meth:`aclose` closes nothing."""

    def __init__(self, engine: Engine, *, session_id: str | None,
                 objective: str | None) -> None:
        self.engine = engine
        self.name = engine.name
        self.session_id = session_id
        self.objective = objective

    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        return self.engine.stream(replace(
            request,
            session_id=self.session_id if self.session_id is not None else request.session_id,
            objective=self.objective if self.objective is not None else request.objective,
        ))

    async def aclose(self) -> None:
        """Nothing: the engine belongs to whoever built it."""
