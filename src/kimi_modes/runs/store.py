"""Persisted runs: one database holds every run and its events; live runs can be watched
and cancelled, from this process or any other on the same database.

The owner of a run (the agent loop, a swarm orchestrator) calls :meth:`RunStore.create_run`,
then :meth:`RunStore.emit` for every event and :meth:`RunStore.finish` once at the end;
watchers call :meth:`RunStore.subscribe`, :meth:`RunStore.get`, :meth:`RunStore.list_runs` and
:meth:`RunStore.events`. All methods are coroutines of the event loop that opened the store
(except :meth:`RunStore.register_cancel`, which is synchronous); none blocks it.

Where the runs are kept is the store's backend (:mod:`kimi_modes.runs.backend`): a SQLite file
(the default, nothing to install: the database lives on two threads of its own, one writer
that commits in groups and one reader, in WAL mode so readers never wait for the writer), or
a PostgreSQL database (``postgresql://...``, :mod:`kimi_modes.runs.postgres`) that several
gateway processes or replicas share.

Durability: ``create_run``, ``finish`` and every ``emit`` except ``message_delta`` return once
the row is committed. ``message_delta`` events are coalesced: consecutive deltas of one run,
step and kind are joined and stored as one event when ``delta_interval`` seconds have passed
since the first, when ``delta_max_chars`` characters are buffered, or as soon as any other event
of the run is emitted (so the order of the log is the order of emission). A crash can therefore
lose at most the last ``delta_interval`` seconds of streamed text; it never loses a finished
run. Live watchers see the coalesced events too, at most ``delta_interval`` seconds late: the
live feed and the stored log are the same sequence, so re-attaching after seq N is exact.

Several processes: a run belongs to the store (process) that created it. Each open store
keeps a claim on its runs: a lock file beside a SQLite database
(:mod:`kimi_modes.runs._locks`), a lease it renews every ``lease_seconds / 3`` seconds in
PostgreSQL. Every open store beats at that pace, and on each beat (and at :meth:`RunStore.open`)
marks ``interrupted`` (with a ``finished`` event) the ``queued`` or ``running`` runs of stores
whose claim is gone: a crashed process's runs are found within ``lease_seconds`` without
waiting for a restart; a finished run is never touched. A run owned elsewhere can be watched
(PostgreSQL pushes each stored event with NOTIFY; SQLite watchers poll every
``poll_interval``) and cancelled: :meth:`RunStore.cancel` leaves a request its owner acts on
(at once with PostgreSQL, on its next beat with SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kimi_modes.runs._db import SqliteDatabase
from kimi_modes.runs.backend import NewRun, RunsBackend, Signals, is_postgres_url
from kimi_modes.runs.errors import RunNotFound, RunStoreClosed, RunStoreError
from kimi_modes.runs.events import FINISHED, MESSAGE_DELTA, RunEvent, Subscription, dumps
from kimi_modes.runs.live import CancelCallback, LiveRun, LiveRuns, checked_data
from kimi_modes.runs.memories import Memories
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


class RunStore:
    """Every run and its events, in the database at ``path``: a SQLite file (``~`` expands;
    parent directories are made), ``":memory:"`` (SQLite in memory: tests), or a
    ``postgresql://`` URL (needs the ``postgres`` extra: psycopg).

    ``delta_interval`` / ``delta_max_chars``: how ``message_delta`` events are coalesced (see
    the module docstring). ``output_limit``: ``tool_result`` outputs longer than this many
    characters are stored shortened. ``queue_limit`` and ``poll_interval``: see
    :class:`~kimi_modes.runs.events.Subscription`. ``lease_seconds``: how long after this
    process stops renewing its claim others mark its runs interrupted (PostgreSQL); the store
    beats every third of it.

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
        lease_seconds: float = 15.0,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        raw = os.fspath(path)
        self.output_limit = output_limit
        self.queue_limit = queue_limit
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        #: This store's id: the runs it starts carry it; its lock file or lease is named by it.
        self.store_id = uuid.uuid4().hex
        #: The SQLite file (``None`` in memory or on PostgreSQL).
        self.path: Path | None = None
        self._db: RunsBackend
        if is_postgres_url(raw):
            from kimi_modes.runs.postgres import PostgresDatabase  # psycopg: an extra

            self._db = PostgresDatabase(raw, self.store_id, lease_seconds=lease_seconds)
        else:
            self.path = None if raw == ":memory:" else Path(raw).expanduser()
            self._db = SqliteDatabase(self.path, self.store_id)
        #: What the modes remember between requests, in the same database
        #: (:mod:`kimi_modes.runs.memories`).
        self.memories = Memories(self._db)
        self._live = LiveRuns(delta_interval=delta_interval, delta_max_chars=delta_max_chars,
                              store_event=self._store_event)
        self._state = "new"  # new → open → closing → closed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the database, and mark the runs that a stopped process
        left ``queued`` or ``running`` as ``interrupted`` (each gets a ``finished`` event);
        then beat every ``lease_seconds / 3`` seconds (see the module docstring). Raises
        :class:`RunStoreError` for a database made by a newer version."""
        if self._state != "new":
            raise RunStoreError("a RunStore can be opened once")
        self._loop = asyncio.get_running_loop()
        try:
            await self._db.open(Signals(stored=self._live.poke, cancel=self._cancel_here))
        except BaseException:
            self._state = "closed"
            raise
        self._state = "open"
        self._beat = asyncio.create_task(self._beating(), name="runs-heartbeat")

    async def close(self) -> None:
        """Interrupt the runs still live here (status ``interrupted``, a ``finished`` event,
        and their cancel callbacks called), end every subscription once it has handed out
        what it holds, then close the database. Idempotent. After it, :meth:`finish` returns
        ``False`` and the other methods raise :class:`RunStoreClosed`."""
        if self._state in ("closing", "closed"):
            return
        was_open = self._state == "open"
        self._state = "closing"
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None
        try:
            if was_open:
                live_runs = self._live.unfinished()
                for live in live_runs:
                    self._live.call_cancel(live)
                await asyncio.gather(*(
                    self._finish(live, INTERRUPTED, "interrupted", None, None,
                                 error="the gateway shut down while the run was in progress",
                                 metrics=None)
                    for live in live_runs), return_exceptions=True)
                if live_runs:
                    log.info("%d runs interrupted by shutdown", len(live_runs))
            self._live.end_watchers()
        finally:
            await self._db.close()
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

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` has begun (or :meth:`open` failed)."""
        return self._state in ("closing", "closed")

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
        owner: str | None = None,
    ) -> RunRecord:
        """Store a new run and make it live in this process; returns it once committed.

        ``status`` is ``queued`` (the default: the ``run_started`` event moves it to
        ``running``) or ``running``. ``run_id`` defaults to ``run_`` + 32 hex digits (usable
        as a directory name). ``parent_id`` links a sub-agent to its orchestrator's run.
        ``owner`` is who the run belongs to (the caller's id, see
        :attr:`~kimi_modes.runs.records.RunSummary.owner`); a run given none takes its
        parent's.
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
        row = NewRun(run_id, parent_id, mode, model, status, record.task, dumps(message_list),
                     dumps(param_dict), self.store_id, owner, now, record.started_at, now)
        stored_owner = await self._db.insert_run(row)
        self._live.add(run_id)
        return dataclasses.replace(record, owner=stored_owner)

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
        payload = checked_data(event_type, data, self.output_limit)
        if event_type == MESSAGE_DELTA:
            self._live.buffer_text(live, payload)
            return
        self._live.flush_text(live)
        event = live.sequence(event_type, payload, time.time())
        if not wait:
            self._store_event(event)
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
        if self.is_closed:
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
        if not await self._db.patch_metrics(run_id, metrics, time.time()):
            raise RunNotFound(run_id)

    # -- cancelling ----------------------------------------------------------------------

    def register_cancel(self, run_id: str, callback: CancelCallback) -> None:
        """Set what :meth:`cancel` calls for a live run (one callback per run; a new one
        replaces the old). If the run was cancelled before its callback was registered, the
        callback is called now. Raises :class:`RunNotFound` when the run is not live here."""
        live = self._live.get(run_id)
        if live is None or live.finishing:
            raise RunNotFound(run_id)
        self._live.set_cancel(live, callback)

    async def cancel(self, run_id: str) -> bool:
        """Ask a run to stop: call its cancel callback (now, or when one is registered), or,
        for a run owned by another process, leave a request that process acts on. Returns
        ``True`` if the run was queued or running, ``False`` if it had finished. The owner
        still calls :meth:`finish` (with ``cancelled``): use :meth:`wait` to see it happen.
        Raises :class:`RunNotFound` for an unknown run."""
        self._check_open()
        live = self._live.get(run_id)
        if live is not None:
            if live.finishing:
                return False
            self._live.request_cancel(live)
            return True
        status = await self._status(run_id)
        if status is None:
            raise RunNotFound(run_id)
        if status in TERMINAL_STATUSES:
            return False
        return await self._db.request_cancel(run_id)

    async def delete(self, run_id: str, *, owner: str | None = None) -> bool:
        """Delete a finished run and its events (with ``owner``: only if it is that owner's;
        a stored response is deleted this way). Returns whether a run was deleted; a run still
        queued or running is not (cancel it first)."""
        self._check_open()
        if self._live.get(run_id) is not None:
            return False
        return await self._db.delete_run(run_id, owner)

    # A bool answer rather than a TimeoutError: "not finished yet" is a normal outcome.
    async def wait(self, run_id: str, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until a run has finished (its ``finished`` event committed), at most
        ``timeout`` seconds. Returns whether it is finished. A run owned by another process
        is followed through the database (woken by its events, else every
        ``poll_interval``). Raises :class:`RunNotFound` for an unknown run."""
        self._check_open()
        live = self._live.get(run_id)
        if live is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.done.wait(), timeout)
            return live.done.is_set()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        with self._live.waking(run_id) as wake:
            while True:
                wake.clear()
                status = await self._status(run_id)
                if status is None:
                    raise RunNotFound(run_id)
                if status in TERMINAL_STATUSES:
                    return True
                pause = self.poll_interval
                if deadline is not None:
                    pause = min(pause, deadline - loop.time())
                    if pause <= 0:
                        return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), pause)

    def is_live(self, run_id: str) -> bool:
        """True while the run is live in this process (created here, not finished)."""
        return self._live.is_live(run_id)

    @property
    def live_run_ids(self) -> list[str]:
        """The ids of the runs live in this process."""
        return self._live.ids()

    # -- the watchers' side --------------------------------------------------------------

    async def get(self, run_id: str, *, owner: str | None = None) -> RunRecord | None:
        """The run as stored (committed state), or ``None`` for an unknown id. With
        ``owner``, a run that is not that owner's is ``None`` too."""
        self._check_open()
        return await self._db.read_record(run_id, owner)

    async def status(self, run_id: str, *, owner: str | None = None) -> str | None:
        """The run's stored status, or ``None`` for an unknown id (a cheap existence
        check). With ``owner``, a run that is not that owner's is ``None`` too."""
        self._check_open()
        return await self._db.read_status(run_id, owner)

    async def list_runs(
        self,
        limit: int = 20,
        offset: int = 0,
        *,
        status: str | None = None,
        mode: str | None = None,
        parent_id: str | None = None,
        owner: str | None = None,
    ) -> list[RunSummary]:
        """Runs newest first (by creation time), ``limit`` of them after skipping ``offset``;
        only those with ``status`` / ``mode`` / ``parent_id`` / ``owner`` when given."""
        self._check_open()
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {sorted(STATUSES)}")
        filters = {"status": status, "mode": mode, "parent_id": parent_id, "owner": owner}
        return await self._db.read_summaries(max(0, limit), max(0, offset), filters)

    async def events(self, run_id: str, after_seq: int = 0,
                     limit: int | None = None) -> list[RunEvent]:
        """The run's stored events with seq > ``after_seq``, in seq order (at most
        ``limit``). Buffered text not yet stored is not included. ``[]`` for an unknown
        run."""
        self._check_open()
        return await self._db.read_events(run_id, after_seq, limit)

    async def subscribe(self, run_id: str, after_seq: int = 0) -> Subscription:
        """Watch a run: the returned :class:`~kimi_modes.runs.events.Subscription` replays
        the stored events after ``after_seq``, then follows the live ones, and ends after
        ``finished``. Close it (``async with`` or ``aclose()``) when done. Raises
        :class:`RunNotFound` for an unknown run."""
        self._check_open()
        if self._live.get(run_id) is None and not await self._exists(run_id):
            raise RunNotFound(run_id)

        async def fetch(after: int, limit: int) -> list[RunEvent]:
            return await self.events(run_id, after, limit)

        async def status() -> str | None:
            return await self._status(run_id)

        return self._live.watch(run_id, after_seq, fetch=fetch, status=status,
                                queue_limit=self.queue_limit,
                                poll_interval=self.poll_interval)

    def subscriber_count(self, run_id: str | None = None) -> int:
        """How many subscriptions are open (on ``run_id``, or in all)."""
        return self._live.subscriber_count(run_id)

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RunStoreClosed(f"the run store is {self._state}, not open")

    async def _exists(self, run_id: str) -> bool:
        return await self._status(run_id) is not None

    async def _status(self, run_id: str) -> str | None:
        return await self._db.read_status(run_id, None)

    def _cancel_here(self, run_id: str) -> None:
        """Another process asked for a run of ours to be cancelled (once is enough)."""
        live = self._live.get(run_id)
        if live is not None and not live.finishing and not live.cancel_requested:
            log.info("run %s: cancelled from another process", run_id)
            self._live.request_cancel(live)

    async def _beating(self) -> None:
        """Renew this store's claim, interrupt the runs of stores that are gone, and act on
        cancel requests, every third of the lease, until the store closes."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                for run_id in await self._db.heartbeat():
                    self._cancel_here(run_id)
            except RunStoreClosed:
                return
            except Exception:
                log.exception("run store heartbeat failed; retrying")

    def _store_event(self, event: RunEvent) -> None:
        """Write ``event`` without waiting; publish it once stored (a failure is logged)."""
        if not self._db.is_open:
            return

        def done(_: Any, error: BaseException | None) -> None:
            if error is not None:
                log.error("run %s: event %d (%s) not stored: %s", event.run_id, event.seq,
                          event.type, error)
                return
            self._live.publish(event)

        self._db.submit_event(event, done)

    async def _persist(self, event: RunEvent) -> None:
        """Write ``event``, publish it and return once committed (or raise the failure)."""
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()

        def done(_: Any, error: BaseException | None) -> None:
            if error is None:
                self._live.publish(event)
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(None)

        self._db.submit_event(event, done)
        await future

    async def _finish(self, live: LiveRun, status: str, stop_reason: str | None, final: Any,
                      usage: Mapping[str, Any] | None, *, error: str | None,
                      metrics: Mapping[str, Any] | None) -> None:
        live.finishing = True
        self._live.flush_text(live)
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
        event = live.sequence(FINISHED, data, time.time())
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()

        def done(_: Any, err: BaseException | None) -> None:
            if err is not None:
                log.error("run %s: finish not stored: %s", live.run_id, err)
            # Watchers learn the run is over even if the write failed.
            self._live.ended(live, event)
            if not future.done():
                if err is not None:
                    future.set_exception(err)
                else:
                    future.set_result(None)

        self._db.submit_finish(event, final, usage_dict, done)
        await future
