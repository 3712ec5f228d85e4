"""Persisted runs: one SQLite file holds every run and its events; live runs can be watched
and cancelled.

The owner of a run (the agent loop, a swarm orchestrator) calls :meth:`RunStore.create_run`,
then :meth:`RunStore.emit` for every event and :meth:`RunStore.finish` once at the end;
watchers call :meth:`RunStore.subscribe`, :meth:`RunStore.get`, :meth:`RunStore.list` and
:meth:`RunStore.events`. All methods are coroutines of the event loop that opened the store
(except :meth:`RunStore.register_cancel`, which is synchronous); none blocks it: the database
lives on two threads of its own (one writer that commits in groups, one reader), in WAL mode so
readers never wait for the writer.

Durability: ``create_run``, ``finish`` and every ``emit`` except ``message_delta`` return once
the row is committed. ``message_delta`` events are coalesced: consecutive deltas of one run,
step and kind are joined and stored as one event when ``delta_interval`` seconds have passed
since the first, when ``delta_max_chars`` characters are buffered, or as soon as any other event
of the run is emitted (so the order of the log is the order of emission). A crash can therefore
lose at most the last ``delta_interval`` seconds of streamed text; it never loses a finished
run. Live watchers see the coalesced events too, at most ``delta_interval`` seconds late: the
live feed and the stored log are the same sequence, so re-attaching after seq N is exact.

Restarts: a run that was ``queued`` or ``running`` when its process stopped is marked
``interrupted`` (with a ``finished`` event) by the next :meth:`RunStore.open`. Several
processes may share one file (the gateway and a ``kimi-modes run`` in a terminal): each open
store holds a lock of its own, and ``open`` only interrupts the runs of stores whose lock is
gone. Cancelling and live following work within the process that owns a run; other processes
watch it by polling.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import inspect
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from kimi_modes.runs._db import DatabaseThread
from kimi_modes.runs.events import (
    FINISHED,
    MESSAGE_DELTA,
    RESERVED_KEYS,
    RUN_STARTED,
    STEP,
    TOOL_CALL,
    TOOL_RESULT,
    LiveBroker,
    RunEvent,
    Subscription,
    dumps,
)
from kimi_modes.runs.records import (
    ACTIVE_STATUSES,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STATUSES,
    TERMINAL_STATUSES,
    RunRecord,
    RunSummary,
    final_text,
    task_preview,
)

log = logging.getLogger("kimi_modes.runs")

SCHEMA_VERSION: Final = 1

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    parent_id       TEXT,
    mode            TEXT NOT NULL,
    model           TEXT NOT NULL,
    status          TEXT NOT NULL,
    stop_reason     TEXT,
    error           TEXT,
    task            TEXT NOT NULL DEFAULT '',
    messages        TEXT NOT NULL,
    params          TEXT NOT NULL DEFAULT '{}',
    final           TEXT,
    final_text      TEXT,
    usage           TEXT,
    metrics         TEXT NOT NULL DEFAULT '{}',
    step_count      INTEGER NOT NULL DEFAULT 0,
    tool_call_count INTEGER NOT NULL DEFAULT 0,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    owner           TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id, created_at);
CREATE TABLE IF NOT EXISTS events (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time    REAL NOT NULL,
    type    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

_SUMMARY_COLUMNS: Final = (
    "id, mode, model, status, stop_reason, error, parent_id, task, usage, metrics, "
    "step_count, tool_call_count, last_seq, created_at, started_at, updated_at, finished_at"
)

_INTERRUPTED_ERROR: Final = "the gateway stopped while the run was in progress"

#: A cancel callback: called with no arguments; may return an awaitable (it is then run as
#: a task).
CancelCallback = Callable[[], object]


class RunStoreError(Exception):
    """Base of the run store's errors."""


class RunNotFound(RunStoreError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunStoreClosed(RunStoreError):
    """The store is not open (not yet, or any more)."""


@dataclass
class _Delta:
    step: Any
    kind: str
    time: float
    extra: dict[str, Any]
    parts: builtins.list[str] = field(default_factory=list)
    chars: int = 0


@dataclass
class _Live:
    """What the store keeps in memory about a run live in this process."""

    run_id: str
    seq: int = 0
    finishing: bool = False
    cancel: CancelCallback | None = None
    cancel_requested: bool = False
    delta: _Delta | None = None
    timer: asyncio.TimerHandle | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RunStore:
    """Every run and its events, in the SQLite file at ``path`` (``~`` expands; parent
    directories are made). ``":memory:"`` keeps them in memory (tests).

    ``delta_interval`` / ``delta_max_chars``: how ``message_delta`` events are coalesced (see
    the module docstring). ``output_limit``: ``tool_result`` outputs longer than this many
    characters are stored shortened. ``queue_limit`` and ``poll_interval``: see
    :class:`~kimi_modes.runs.events.Subscription`.

    Use ``await store.open()`` … ``await store.close()``, or ``async with RunStore(path) as
    store``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        delta_interval: float = 0.2,
        delta_max_chars: int = 8192,
        output_limit: int = 16_000,
        queue_limit: int = 1000,
        poll_interval: float = 0.5,
    ) -> None:
        raw = os.fspath(path)
        self.path: Path | None = None if raw == ":memory:" else Path(raw).expanduser()
        self.delta_interval = delta_interval
        self.delta_max_chars = delta_max_chars
        self.output_limit = output_limit
        self.queue_limit = queue_limit
        self.poll_interval = poll_interval
        self.owner = uuid.uuid4().hex
        self._writer: DatabaseThread | None = None
        self._reader: DatabaseThread | None = None
        self._lock_fd: int | None = None
        self._live: dict[str, _Live] = {}
        self._broker = LiveBroker()
        self._subs: set[Subscription] = set()
        self._state = "new"  # new → open → closing → closed
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the database, and mark the runs that a stopped process
        left ``queued`` or ``running`` as ``interrupted`` (each gets a ``finished`` event).
        Raises :class:`RunStoreError` for a database made by a newer version."""
        if self._state != "new":
            raise RunStoreError("a RunStore can be opened once")
        self._loop = asyncio.get_running_loop()
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = await asyncio.to_thread(_take_lock, self._owners_dir(), self.owner)
        try:
            self._writer = DatabaseThread(target, "runs-writer", writer=True,
                                          setup=_setup_writer)
            await self._writer.start()
            if self.path is None:
                self._reader = self._writer
            else:
                self._reader = DatabaseThread(target, "runs-reader", writer=False,
                                              setup=_setup_reader)
                await self._reader.start()
            owners = await self._writer.call(_active_owners)
            dead = [o for o in owners if not await asyncio.to_thread(self._owner_alive, o)]
            if dead:
                interrupted = await self._writer.call(
                    lambda conn: _interrupt(conn, dead, time.time(), _INTERRUPTED_ERROR))
                if interrupted:
                    log.warning("marked %d runs left by a stopped gateway as interrupted",
                                interrupted)
            if self.path is not None:
                await asyncio.to_thread(_sweep_locks, self._owners_dir(), self.owner)
        except BaseException:
            await self._stop_threads()
            self._release_lock()
            self._state = "closed"
            raise
        self._state = "open"

    async def close(self) -> None:
        """Interrupt the runs still live here (status ``interrupted``, a ``finished`` event,
        and their cancel callbacks called), end every subscription once it has handed out
        what it holds, then close the database. Idempotent. After it, :meth:`finish` returns
        ``False`` and the other methods raise :class:`RunStoreClosed`."""
        if self._state in ("closing", "closed"):
            return
        was_open = self._state == "open"
        self._state = "closing"
        try:
            if was_open:
                live_runs = [live for live in self._live.values() if not live.finishing]
                for live in live_runs:
                    self._call_cancel(live)
                await asyncio.gather(*(
                    self._finish(live, INTERRUPTED, "interrupted", None, None,
                                 error="the gateway shut down while the run was in progress",
                                 metrics=None)
                    for live in live_runs), return_exceptions=True)
                if live_runs:
                    log.info("%d runs interrupted by shutdown", len(live_runs))
            self._broker.detach_all()
            for sub in builtins.list(self._subs):
                sub.detach()
            self._subs.clear()
        finally:
            await self._stop_threads()
            self._release_lock()
            self._state = "closed"

    async def __aenter__(self) -> RunStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._state == "open"

    # -- the owner's side ----------------------------------------------------------------

    async def create_run(
        self,
        mode: str,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any] | None = None,
        *,
        parent_id: str | None = None,
        status: str = QUEUED,
        run_id: str | None = None,
    ) -> RunRecord:
        """Store a new run and make it live in this process; returns it once committed.

        ``status`` is ``queued`` (the default: the ``run_started`` event moves it to
        ``running``) or ``running``. ``run_id`` defaults to ``run_`` + 32 hex digits (usable
        as a directory name). ``parent_id`` links a sub-agent to its orchestrator's run.
        """
        self._check_open()
        if status not in ACTIVE_STATUSES:
            raise ValueError(f"a new run is queued or running, not {status!r}")
        run_id = run_id or "run_" + uuid.uuid4().hex
        now = time.time()
        message_list = [dict(m) for m in messages]
        param_dict = dict(params or {})
        record = RunRecord(
            id=run_id, mode=mode, model=model, status=status, stop_reason=None, error=None,
            parent_id=parent_id, task=task_preview(message_list), usage=None, metrics={},
            step_count=0, tool_call_count=0, last_seq=0, created_at=now,
            started_at=now if status == RUNNING else None, updated_at=now, finished_at=None,
            messages=message_list, params=param_dict, final=None,
        )
        row = (run_id, parent_id, mode, model, status, record.task, dumps(message_list),
               dumps(param_dict), self.owner, now, record.started_at, now)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (id, parent_id, mode, model, status, task, messages, params,"
                " owner, created_at, started_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

        try:
            await self._writer_().call(insert)
        except sqlite3.IntegrityError:
            raise ValueError(f"a run with id {run_id!r} exists already") from None
        self._live[run_id] = _Live(run_id)
        return record

    async def emit(self, run_id: str, event_type: str,
                   data: Mapping[str, Any] | None = None, *, wait: bool = True) -> None:
        """Record an event of a live run and hand it to its watchers.

        Returns once the event is committed, except ``message_delta`` (buffered, see the
        module docstring) and events emitted with ``wait=False`` (progress reports that must
        not hold their emitter up), which return at once: their place in the run's order is
        fixed by the call, they are committed in that order, and a failed write is logged.
        ``data`` holds the type's fields (see :mod:`kimi_modes.runs.events`); it is copied,
        must be JSON-serialisable (other values are stored as their ``str()``) and may not use
        the keys ``run_id``, ``seq``, ``time`` or ``type``. ``message_delta`` needs ``kind``
        (``reasoning``/``content``) and ``text``.
        ``finished`` is not emitted but written by :meth:`finish`. ``run_started`` moves a
        queued run to ``running``.

        An event for a run that has finished is dropped (a late event of a cancelled run is
        no error). Raises :class:`RunNotFound` for an unknown run, :class:`ValueError` for a
        malformed event, :class:`RunStoreClosed` when the store is not open, and what the
        database raised if the write failed.
        """
        self._check_open()
        live = self._live.get(run_id)
        if live is None or live.finishing:
            if live is None and not await self._exists(run_id):
                raise RunNotFound(run_id)
            log.debug("run %s: %s event after the run finished, dropped", run_id, event_type)
            return
        payload = self._validated(event_type, data)
        if event_type == MESSAGE_DELTA:
            self._buffer_delta(live, payload)
            return
        self._flush_delta(live)
        event = self._sequence(live, event_type, payload, time.time())
        if not wait:
            self._writer_().submit(_insert_event_work(event), self._publish_when_stored(event))
            return
        await self._persist(event)

    async def finish(
        self,
        run_id: str,
        status: str,
        stop_reason: str | None,
        final: Any = None,
        usage: Mapping[str, Any] | None = None,
        *,
        error: str | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> bool:
        """End a live run: flush its buffered text, write the ``finished`` event and the
        run's final state, wake its watchers and forget its cancel callback.

        ``status`` is one of ``completed``, ``failed``, ``cancelled``, ``interrupted``
        (:class:`ValueError` otherwise). ``stop_reason`` is free text; the loop's values are
        listed in :data:`~kimi_modes.runs.records.STOP_REASONS`. ``final`` is what the run
        ended with (the last assistant message, or a string), ``usage`` its token counts,
        ``error`` a message for failures, ``metrics`` is merged into the run's metrics
        (JSON merge-patch: a ``None`` value removes a key).

        Returns ``True`` once committed; ``False`` if the run had already finished (or was
        interrupted by :meth:`close`): nothing changes then, so calling it from a ``finally``
        is always safe. Raises :class:`RunNotFound` for an id this store never knew.
        """
        if status not in TERMINAL_STATUSES:
            raise ValueError(
                f"a run finishes as one of {sorted(TERMINAL_STATUSES)}, not {status!r}")
        if self._state in ("closing", "closed"):
            return False
        self._check_open()
        live = self._live.get(run_id)
        if live is None:
            if not await self._exists(run_id):
                raise RunNotFound(run_id)
            return False
        if live.finishing:
            await live.done.wait()
            return False
        await self._finish(live, status, stop_reason, final, usage, error=error,
                           metrics=metrics)
        return True

    async def update_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> None:
        """Merge ``metrics`` into the run's metrics (JSON merge-patch, committed on return).
        Works on finished runs too (metrics computed afterwards). Raises
        :class:`RunNotFound` for an unknown run."""
        self._check_open()
        patch = dumps(dict(metrics))
        now = time.time()

        def update(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE runs SET metrics = json_patch(metrics, ?), updated_at = ? WHERE id = ?",
                (patch, now, run_id))
            return cur.rowcount

        if not await self._writer_().call(update):
            raise RunNotFound(run_id)

    # -- cancelling ----------------------------------------------------------------------

    def register_cancel(self, run_id: str, callback: CancelCallback) -> None:
        """Set what :meth:`cancel` calls for a live run (one callback per run; a new one
        replaces the old). If the run was cancelled before its callback was registered, the
        callback is called now. Raises :class:`RunNotFound` when the run is not live here."""
        live = self._live.get(run_id)
        if live is None or live.finishing:
            raise RunNotFound(run_id)
        live.cancel = callback
        if live.cancel_requested:
            self._call_cancel(live)

    async def cancel(self, run_id: str) -> bool:
        """Ask a live run to stop: call its cancel callback (now, or when one is registered).
        Returns ``True`` if the run was queued or running here, ``False`` if it had finished
        (or runs in another process). The owner still calls :meth:`finish` (with
        ``cancelled``): use :meth:`wait` to see it happen. Raises :class:`RunNotFound` for an
        unknown run."""
        self._check_open()
        live = self._live.get(run_id)
        if live is None or live.finishing:
            if not await self._exists(run_id):
                raise RunNotFound(run_id)
            return False
        live.cancel_requested = True
        self._call_cancel(live)
        return True

    # A bool answer rather than a TimeoutError: "not finished yet" is a normal outcome.
    async def wait(self, run_id: str, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until a run live here has finished (its ``finished`` event committed), at
        most ``timeout`` seconds. Returns whether it is finished: for a run not live here,
        whether its stored status is terminal, without waiting. Raises :class:`RunNotFound`
        for an unknown run."""
        self._check_open()
        live = self._live.get(run_id)
        if live is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.done.wait(), timeout)
            return live.done.is_set()
        status = await self._status(run_id)
        if status is None:
            raise RunNotFound(run_id)
        return status in TERMINAL_STATUSES

    def is_live(self, run_id: str) -> bool:
        """True while the run is live in this process (created here, not finished)."""
        live = self._live.get(run_id)
        return live is not None and not live.finishing

    @property
    def live_run_ids(self) -> builtins.list[str]:
        """The ids of the runs live in this process."""
        return [r for r, live in self._live.items() if not live.finishing]

    # -- the watchers' side --------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        """The run as stored (committed state), or ``None`` for an unknown id."""
        self._check_open()

        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else _record(row)

        return await self._reader_().call(read)

    async def status(self, run_id: str) -> str | None:
        """The run's stored status, or ``None`` for an unknown id (a cheap existence
        check)."""
        self._check_open()
        return await self._status(run_id)

    async def list(
        self,
        limit: int = 20,
        offset: int = 0,
        *,
        status: str | None = None,
        mode: str | None = None,
        parent_id: str | None = None,
    ) -> builtins.list[RunSummary]:
        """Runs newest first (by creation time), ``limit`` of them after skipping ``offset``;
        only those with ``status`` / ``mode`` / ``parent_id`` when given."""
        self._check_open()
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {sorted(STATUSES)}")
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        for column, value in (("status", status), ("mode", mode), ("parent_id", parent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        args += [max(0, limit), max(0, offset)]

        def read(conn: sqlite3.Connection) -> builtins.list[RunSummary]:
            return [_summary(row) for row in conn.execute(sql, args)]

        return await self._reader_().call(read)

    async def events(self, run_id: str, after_seq: int = 0,
                     limit: int | None = None) -> builtins.list[RunEvent]:
        """The run's stored events with seq > ``after_seq``, in seq order (at most
        ``limit``). Buffered text not yet stored is not included. ``[]`` for an unknown
        run."""
        self._check_open()
        sql = "SELECT seq, time, type, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
        args: builtins.list[Any] = [run_id, after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)

        def read(conn: sqlite3.Connection) -> builtins.list[RunEvent]:
            return [RunEvent(run_id, seq, at, kind, orjson.loads(data))
                    for seq, at, kind, data in conn.execute(sql, args)]

        return await self._reader_().call(read)

    async def subscribe(self, run_id: str, after_seq: int = 0) -> Subscription:
        """Watch a run: the returned :class:`~kimi_modes.runs.events.Subscription` replays
        the stored events after ``after_seq``, then follows the live ones, and ends after
        ``finished``. Close it (``async with`` or ``aclose()``) when done. Raises
        :class:`RunNotFound` for an unknown run."""
        self._check_open()
        if run_id not in self._live and not await self._exists(run_id):
            raise RunNotFound(run_id)
        live = run_id in self._live

        async def fetch(after: int, limit: int) -> builtins.list[RunEvent]:
            return await self.events(run_id, after, limit)

        async def status() -> str | None:
            return await self._status(run_id)

        sub = Subscription(run_id, after_seq, fetch=fetch, status=status, live=live,
                           queue_limit=self.queue_limit, poll_interval=self.poll_interval,
                           on_close=self._forget)
        if live:
            self._broker.attach(sub)
        self._subs.add(sub)
        return sub

    def subscriber_count(self, run_id: str | None = None) -> int:
        """How many subscriptions are open (on ``run_id``, or in all)."""
        if run_id is None:
            return len(self._subs)
        return sum(1 for s in self._subs if s.run_id == run_id)

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RunStoreClosed(f"the run store is {self._state}, not open")

    def _writer_(self) -> DatabaseThread:
        if self._writer is None:
            raise RunStoreClosed("the run store is not open")
        return self._writer

    def _reader_(self) -> DatabaseThread:
        if self._reader is None:
            raise RunStoreClosed("the run store is not open")
        return self._reader

    async def _exists(self, run_id: str) -> bool:
        return await self._status(run_id) is not None

    async def _status(self, run_id: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else str(row[0])

        return await self._reader_().call(read)

    def _validated(self, event_type: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("an event type is a non-empty string")
        if event_type == FINISHED:
            raise ValueError("'finished' is written by RunStore.finish(), not emitted")
        payload = dict(data or {})
        clash = RESERVED_KEYS & payload.keys()
        if clash:
            raise ValueError(f"event data may not use the keys {sorted(clash)}")
        if event_type == MESSAGE_DELTA:
            if payload.get("kind") not in ("reasoning", "content"):
                raise ValueError("a message_delta has kind 'reasoning' or 'content'")
            if not isinstance(payload.get("text"), str):
                raise ValueError("a message_delta has a string 'text'")
        elif event_type == TOOL_RESULT:
            output = payload.get("output")
            if isinstance(output, str) and len(output) > self.output_limit:
                payload["output"] = (output[: self.output_limit]
                                     + f"\n[… {len(output) - self.output_limit} more "
                                       "characters not stored]")
                payload["output_truncated"] = True
                payload["output_chars"] = len(output)
        return payload

    def _sequence(self, live: _Live, event_type: str, data: dict[str, Any],
                  at: float) -> RunEvent:
        live.seq += 1
        return RunEvent(live.run_id, live.seq, at, event_type, data)

    def _buffer_delta(self, live: _Live, data: dict[str, Any]) -> None:
        text: str = data["text"]
        if not text:
            return
        step, kind = data.get("step"), data["kind"]
        pending = live.delta
        if pending is not None and (pending.step, pending.kind) != (step, kind):
            self._flush_delta(live)
            pending = None
        if pending is None:
            extra = {k: v for k, v in data.items() if k != "text"}
            pending = live.delta = _Delta(step, kind, time.time(), extra)
            assert self._loop is not None
            live.timer = self._loop.call_later(self.delta_interval, self._flush_delta, live)
        pending.parts.append(text)
        pending.chars += len(text)
        if pending.chars >= self.delta_max_chars:
            self._flush_delta(live)

    def _flush_delta(self, live: _Live) -> None:
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        pending, live.delta = live.delta, None
        if pending is None or self._writer is None:
            return
        event = self._sequence(live, MESSAGE_DELTA,
                               {**pending.extra, "text": "".join(pending.parts)}, pending.time)
        self._writer.submit(_insert_event_work(event), self._publish_when_stored(event))

    def _publish_when_stored(self, event: RunEvent) -> Callable[[Any, BaseException | None],
                                                                  None]:
        def done(_: Any, error: BaseException | None) -> None:
            if error is not None:
                log.error("run %s: event %d (%s) not stored: %s", event.run_id, event.seq,
                          event.type, error)
                return
            self._broker.publish(event)

        return done

    async def _persist(self, event: RunEvent) -> None:
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()

        def done(_: Any, error: BaseException | None) -> None:
            if error is None:
                self._broker.publish(event)
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(None)

        self._writer_().submit(_insert_event_work(event), done)
        await future

    async def _finish(self, live: _Live, status: str, stop_reason: str | None, final: Any,
                      usage: Mapping[str, Any] | None, *, error: str | None,
                      metrics: Mapping[str, Any] | None) -> None:
        live.finishing = True
        self._flush_delta(live)
        now = time.time()
        usage_dict = dict(usage) if usage is not None else None
        data = {
            "status": status,
            "stop_reason": stop_reason,
            "final": final,
            "final_answer": final_text(final),
            "usage": usage_dict,
            "error": error,
            "metrics": dict(metrics or {}),
        }
        event = self._sequence(live, FINISHED, data, now)
        insert = _insert_event_work(event)
        row = (status, stop_reason, error, None if final is None else dumps(final),
               final_text(final), None if usage_dict is None else dumps(usage_dict),
               dumps(dict(metrics or {})), now, now, live.run_id)

        def work(conn: sqlite3.Connection) -> None:
            insert(conn)
            conn.execute(
                "UPDATE runs SET status = ?, stop_reason = ?, error = ?, final = ?,"
                " final_text = ?, usage = ?, metrics = json_patch(metrics, ?),"
                " finished_at = ?, updated_at = ? WHERE id = ?", row)

        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()

        def done(_: Any, err: BaseException | None) -> None:
            if err is not None:
                log.error("run %s: finish not stored: %s", live.run_id, err)
            # Watchers learn the run is over even if the write failed.
            self._broker.publish(event)
            self._broker.end_run(live.run_id)
            self._live.pop(live.run_id, None)
            live.cancel = None
            live.done.set()
            if not future.done():
                if err is not None:
                    future.set_exception(err)
                else:
                    future.set_result(None)

        self._writer_().submit(work, done)
        await future

    def _call_cancel(self, live: _Live) -> None:
        callback = live.cancel
        if callback is None:
            return
        try:
            result = callback()
        except Exception:
            log.exception("run %s: cancel callback failed", live.run_id)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(_log_task_error)

    def _forget(self, sub: Subscription) -> None:
        self._broker.detach(sub)
        self._subs.discard(sub)

    async def _stop_threads(self) -> None:
        for thread in (self._reader, self._writer):
            if thread is not None:
                with contextlib.suppress(Exception):
                    await thread.stop()
        self._reader = self._writer = None

    def _owners_dir(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".owners")

    def _owner_alive(self, owner: str | None) -> bool:
        if owner is None or self.path is None:
            return False
        if owner == self.owner:
            return True
        return _lock_held(self._owners_dir() / f"{owner}.lock")

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self._owners_dir() / f"{self.owner}.lock")
        os.close(self._lock_fd)
        self._lock_fd = None


# -- database work (runs on the database threads) -------------------------------------------


def _setup_writer(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode not in ("wal", "memory"):
        log.warning("runs database is in %s mode, not WAL", mode)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RunStoreError(
            f"the runs database has schema version {version}; this kimi-modes knows "
            f"{SCHEMA_VERSION}: upgrade kimi-modes or point it at another file")
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _setup_reader(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA query_only = ON")


def _insert_event_work(event: RunEvent) -> Callable[[sqlite3.Connection], None]:
    data = dumps(event.data)
    step = event.data.get("step") if event.type == STEP else None
    steps = step if isinstance(step, int) else 0
    calls = 1 if event.type == TOOL_CALL else 0
    started = 1 if event.type == RUN_STARTED else 0
    args = (event.time, event.seq, steps, calls, started, started, event.time, event.run_id)

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (run_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)",
                     (event.run_id, event.seq, event.time, event.type, data))
        conn.execute(
            "UPDATE runs SET updated_at = ?, last_seq = ?,"
            " step_count = MAX(step_count, ?), tool_call_count = tool_call_count + ?,"
            " status = CASE WHEN ? AND status = 'queued' THEN 'running' ELSE status END,"
            " started_at = CASE WHEN ? AND started_at IS NULL THEN ? ELSE started_at END"
            " WHERE id = ?", args)

    return work


def _active_owners(conn: sqlite3.Connection) -> builtins.list[str | None]:
    placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
    rows = conn.execute(f"SELECT DISTINCT owner FROM runs WHERE status IN ({placeholders})",
                        sorted(ACTIVE_STATUSES))
    return [row[0] for row in rows]


def _interrupt(conn: sqlite3.Connection, owners: Sequence[str | None], now: float,
               error: str) -> int:
    """Mark the active runs of ``owners`` interrupted, each with a ``finished`` event."""
    placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
    rows = conn.execute(
        f"SELECT id, owner, usage, metrics FROM runs WHERE status IN ({placeholders})",
        sorted(ACTIVE_STATUSES)).fetchall()
    count = 0
    for run_id, owner, usage, metrics in rows:
        if owner not in owners:
            continue
        last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?",
                            (run_id,)).fetchone()[0]
        data = {
            "status": INTERRUPTED, "stop_reason": "interrupted", "final": None,
            "final_answer": None, "usage": orjson.loads(usage) if usage else None,
            "error": error, "metrics": orjson.loads(metrics) if metrics else {},
        }
        conn.execute("INSERT INTO events (run_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)",
                     (run_id, last + 1, now, FINISHED, dumps(data)))
        conn.execute(
            "UPDATE runs SET status = ?, stop_reason = 'interrupted', error = ?, last_seq = ?,"
            " finished_at = ?, updated_at = ? WHERE id = ?",
            (INTERRUPTED, error, last + 1, now, now, run_id))
        count += 1
    return count


def _summary_fields(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"], "mode": row["mode"], "model": row["model"], "status": row["status"],
        "stop_reason": row["stop_reason"], "error": row["error"],
        "parent_id": row["parent_id"], "task": row["task"],
        "usage": orjson.loads(row["usage"]) if row["usage"] else None,
        "metrics": orjson.loads(row["metrics"]) if row["metrics"] else {},
        "step_count": row["step_count"], "tool_call_count": row["tool_call_count"],
        "last_seq": row["last_seq"], "created_at": row["created_at"],
        "started_at": row["started_at"], "updated_at": row["updated_at"],
        "finished_at": row["finished_at"],
    }


def _summary(row: sqlite3.Row) -> RunSummary:
    return RunSummary(**_summary_fields(row))


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        **_summary_fields(row),
        messages=orjson.loads(row["messages"]),
        params=orjson.loads(row["params"]),
        final=orjson.loads(row["final"]) if row["final"] is not None else None,
    )


# -- owner locks: which processes still hold their runs ---------------------------------------


def _take_lock(directory: Path, owner: str) -> int:
    """Create and lock ``<owner>.lock``; held until :meth:`RunStore.close` (or the process
    ends, when the kernel lets go of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{owner}.lock"
    for _ in range(10):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A sweeping store may have removed the file between open and flock: the lock
            # must be on the file that is at the path.
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except OSError:
            os.close(fd)
            raise
        os.close(fd)
    raise RunStoreError(f"could not take the lock {path}")


def _lock_held(path: Path) -> bool:
    """Whether another open store holds the lock file at ``path``."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _sweep_locks(directory: Path, owner: str) -> None:
    """Remove the lock files of stores that are gone."""
    for path in directory.glob("*.lock"):
        if path.stem != owner and not _lock_held(path):
            with contextlib.suppress(OSError):
                path.unlink()


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a cancel callback failed: %r", task.exception())
