"""What the modes remember between requests, kept in the run store's database: a table of
entries by ``(kind, key)``, shared by every process on that database (the workers of
``serve --workers N`` on one SQLite file, replicas on one PostgreSQL database).

The store knows nothing of what an entry means: :mod:`kimi_modes.modes.memory` makes the keys
(they name the caller and the conversation) and the values. What callers may rely on:

- **Entries never change.** The first value written under a key is the one kept; writing the
  key again stores nothing and returns that first value. So a copy of an entry cached in a
  process is never out of date while the entry exists.
- **Bounded by count.** Each kind keeps at most the ``limit`` given when writing; a write
  evicts the oldest entries of its kind (by when they were first written) beyond it.
- :meth:`Memories.remember` returns once the entry is committed, so a request on another
  process that starts after it returned finds the entry; :meth:`Memories.recall` reads the
  committed entries in one query, however many keys it asks for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from kimi_modes.runs.backend import RunsBackend
from kimi_modes.runs.events import dumps


class Memories:
    """The memory entries in ``backend``'s database (the open store's; every method raises
    :class:`~kimi_modes.runs.errors.RunStoreClosed` when it is not open)."""

    def __init__(self, backend: RunsBackend) -> None:
        self._backend = backend

    async def remember(self, kind: str, key: str, value: Any, *, limit: int) -> Any:
        """Keep ``value`` (JSON-serialisable) under ``(kind, key)`` unless an entry is there,
        evicting the oldest of ``kind`` beyond ``limit`` (at least 1); returns the value kept
        under the key, once committed."""
        stored = await self._backend.remember(kind, key, dumps(value), time.time(),
                                              max(1, limit))
        return orjson.loads(stored)

    async def recall(self, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        """The values ``kind`` holds for those of ``keys`` it has, by key (no query for no
        keys)."""
        if not keys:
            return {}
        found = await self._backend.recall(kind, list(dict.fromkeys(keys)))
        return {key: orjson.loads(value) for key, value in found.items()}
