"""The seam between the run store and its database: :class:`RunsBackend`, which the SQLite
database (:mod:`kimi_modes.runs._db`, embedded, the default) and the PostgreSQL one
(:mod:`kimi_modes.runs.postgres`, shared by several processes or replicas) implement.

:class:`~kimi_modes.runs.store.RunStore` keeps everything that lives in one process (the
order of a live run's events, buffered text, cancel callbacks, the watchers) and hands the
backend what to store and what to read. A backend also keeps this process's claim on its
runs (a lock file, or a lease it renews), marks the runs of processes that are gone
``interrupted``, and passes on what other processes ask of this one (a cancel) or tell it (an
event was stored) through :class:`Signals`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from kimi_modes.runs.events import RunEvent
from kimi_modes.runs.records import RunRecord, RunSummary

#: Called on the event loop when a submitted write is done: ``(result, error)``.
Done = Callable[[Any, BaseException | None], None]

#: The error stored on a run whose process stopped (or whose lease lapsed) mid-run.
ABANDONED_ERROR: Final = "the gateway stopped while the run was in progress"


class NewRun(NamedTuple):
    """A run as first stored (JSON columns already encoded)."""

    id: str
    parent_id: str | None
    mode: str
    model: str
    status: str
    task: str
    messages: bytes
    params: bytes
    store_id: str
    owner: str | None
    created_at: float
    started_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class Signals:
    """What other processes tell this one, called on the event loop: ``stored(run_id)``: an
    event of a run owned elsewhere was stored (watchers re-read); ``cancel(run_id)``: someone
    asked a run owned here to stop."""

    stored: Callable[[str], None]
    cancel: Callable[[str], None]


class RunsBackend(Protocol):
    """Where a :class:`~kimi_modes.runs.store.RunStore` keeps its runs.

    Writes submitted with :meth:`submit_event` / :meth:`submit_finish` are committed in
    submission order and their ``done`` callbacks run on the event loop in that order (the
    store relies on it: a run's events are published in seq order). Every method but
    :meth:`open` raises :class:`~kimi_modes.runs.errors.RunStoreClosed` when the backend is
    not open.
    """

    #: The id of the store (process) this backend writes for; its runs carry it.
    store_id: str

    async def open(self, signals: Signals) -> None:
        """Connect, create or migrate the schema (refusing a newer one with
        :class:`~kimi_modes.runs.errors.RunStoreError`), claim this store's place and mark
        the active runs of stores that are gone ``interrupted``."""
        ...

    async def close(self) -> None:
        """Finish the submitted writes, give up this store's claim, disconnect. Idempotent."""
        ...

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        ...

    # -- writing ----------------------------------------------------------------------------

    async def insert_run(self, run: NewRun) -> str | None:
        """Store a new run (a run without an owner takes its parent's); returns the owner
        stored. :class:`ValueError` if the id exists."""
        ...

    def submit_event(self, event: RunEvent, done: Done) -> None:
        """Queue ``event`` for storing (with its run's counters, status and times)."""
        ...

    def submit_finish(self, event: RunEvent, final: Any, usage: dict[str, Any] | None,
                      done: Done) -> None:
        """Queue the ``finished`` ``event`` with the run's final state (from its data)."""
        ...

    async def patch_metrics(self, run_id: str, patch: Mapping[str, Any], now: float) -> bool:
        """JSON-merge-patch the run's metrics; ``False`` for an unknown run."""
        ...

    async def request_cancel(self, run_id: str) -> bool:
        """Ask the process owning an active run to cancel it; ``False`` if the run is not
        active."""
        ...

    async def delete_run(self, run_id: str, owner: str | None) -> bool:
        """Delete a finished run with its events (with ``owner``: only that owner's); ``False``
        when there is no such finished run."""
        ...

    async def heartbeat(self) -> list[str]:
        """Renew this store's claim, mark the active runs of stores that are gone
        ``interrupted``; returns the ids of this store's active runs that someone asked to
        cancel."""
        ...

    async def remember(self, kind: str, key: str, value: bytes, now: float,
                       limit: int) -> bytes:
        """Store ``value`` (encoded JSON) under ``(kind, key)`` unless an entry is there
        already, evict the oldest entries of ``kind`` beyond ``limit``; returns the value
        stored under the key (committed)."""
        ...

    # -- reading ----------------------------------------------------------------------------

    async def read_record(self, run_id: str, owner: str | None) -> RunRecord | None:
        """The whole run, or ``None`` (also when ``owner`` is given and it is not its)."""
        ...

    async def read_status(self, run_id: str, owner: str | None) -> str | None:
        """The run's status, or ``None`` (also when ``owner`` is given and it is not its)."""
        ...

    async def read_summaries(self, limit: int, offset: int,
                             filters: Mapping[str, str | None]) -> list[RunSummary]:
        """Runs newest first; ``filters`` maps a column to the value it must have."""
        ...

    async def read_events(self, run_id: str, after_seq: int,
                          limit: int | None) -> list[RunEvent]:
        """The run's events with seq > ``after_seq`` in seq order, at most ``limit``."""
        ...

    async def recall(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values (encoded JSON) of those of ``keys`` that ``kind`` holds."""
        ...


def is_postgres_url(location: str) -> bool:
    """Whether a store location names a PostgreSQL database rather than a SQLite file."""
    return location.startswith(("postgresql://", "postgres://"))
