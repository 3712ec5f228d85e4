"""The embedded backend: SQLite connections each owned by one dedicated thread, fed jobs from
the event loop, and :class:`SqliteDatabase`, the pair of them a store opens (the
:class:`~kimi_modes.runs.backend.RunsBackend` of a file or ``:memory:``).

The writer runs every job queued while it was busy in one transaction (group commit), so many
concurrent runs cost one commit per batch rather than one per event; a job that fails is
retried alone, so one bad job never takes its batch-mates down. Completion is reported back on
the event loop in submission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kimi_modes.runs import _sql
from kimi_modes.runs._locks import StoreLock
from kimi_modes.runs.backend import ABANDONED_ERROR, Done, NewRun, Signals
from kimi_modes.runs.errors import RunStoreClosed
from kimi_modes.runs.events import RunEvent, dumps
from kimi_modes.runs.records import RunRecord, RunSummary

log = logging.getLogger("kimi_modes.runs")

T = TypeVar("T")

#: A unit of work: runs on the database thread with its connection.
Work = Callable[[sqlite3.Connection], Any]

_BATCH = 512


@dataclass(slots=True)
class _Job:
    work: Work
    done: Done | None


class DatabaseThread:
    """One connection to ``path`` used only by a thread of its own.

    ``submit`` may be called from the event loop that :meth:`start` ran on; ``done`` callbacks
    run on that loop, in submission order. ``writer`` batches jobs into transactions;
    otherwise each job gets a read transaction of its own.
    """

    def __init__(self, path: str, name: str, *, writer: bool,
                 setup: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self.name = name
        self.writer = writer
        self._setup = setup
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the connection on the thread (raises what opening it raised)."""
        self._loop = asyncio.get_running_loop()
        ready: ThreadFuture[None] = ThreadFuture()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=self.name,
                                        daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)

    def submit(self, work: Work, done: Done | None = None) -> None:
        """Queue ``work``; ``done(result, error)`` runs on the loop afterwards."""
        self._jobs.put(_Job(work, done))

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` and return its result (committed, for the writer)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.submit(work, done)
        return await future

    async def stop(self) -> None:
        """Finish the queued jobs, close the connection, end the thread."""
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- on the thread ---------------------------------------------------------------------

    def _main(self, ready: ThreadFuture[None]) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            self._setup(conn)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while self.writer and len(batch) < _BATCH:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._report(batch, self._run(conn, batch))
                if stop:
                    return
        finally:
            conn.close()

    def _run(self, conn: sqlite3.Connection,
             batch: list[_Job]) -> list[tuple[Any, BaseException | None]]:
        if len(batch) > 1:
            try:
                conn.execute("BEGIN IMMEDIATE")
                results = [job.work(conn) for job in batch]
                conn.execute("COMMIT")
                return [(r, None) for r in results]
            except Exception:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        return [self._run_one(conn, job) for job in batch]

    def _run_one(self, conn: sqlite3.Connection,
                 job: _Job) -> tuple[Any, BaseException | None]:
        try:
            conn.execute("BEGIN IMMEDIATE" if self.writer else "BEGIN")
            result = job.work(conn)
            conn.execute("COMMIT")
            return result, None
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return None, exc

    def _report(self, batch: list[_Job],
                results: list[tuple[Any, BaseException | None]]) -> None:
        loop = self._loop
        assert loop is not None
        calls = [(job.done, r, e) for job, (r, e) in zip(batch, results, strict=True)
                 if job.done is not None or e is not None]
        if not calls:
            return

        def deliver() -> None:
            for done, result, error in calls:
                if done is None:
                    log.error("%s: a database write failed: %s", self.name, error)
                    continue
                try:
                    done(result, error)
                except Exception:
                    log.exception("%s: completion callback failed", self.name)

        # A closed loop: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver)


class SqliteDatabase:
    """The database of one store: a writer thread and a reader thread on the file at
    ``path`` (one thread for both when ``path`` is ``None``: in memory), and the store's lock
    (:mod:`kimi_modes.runs._locks`) beside the file, held by ``store_id``.

    Liveness comes from the locks, not a lease: a process that ends lets go of its lock at
    once, so :meth:`heartbeat` finds its runs on the next beat. Nothing is pushed between
    processes: watchers of another process's run poll, and a cancel from another process is
    a flag the owner reads on its next :meth:`heartbeat`.
    """

    def __init__(self, path: Path | None, store_id: str) -> None:
        self.path = path
        self.store_id = store_id
        self._lock = (None if path is None else
                      StoreLock(path.with_name(path.name + ".stores"), store_id))
        self._writer: DatabaseThread | None = None
        self._reader: DatabaseThread | None = None

    async def open(self, signals: Signals) -> None:
        """Take the lock, open both connections (the schema made or checked), and mark the
        active runs of stores that are gone ``interrupted``. Raises what failed, with
        everything opened so far closed again. (``signals``: nothing comes from other
        processes here.)"""
        target = ":memory:" if self.path is None else str(self.path)
        try:
            if self.path is not None and self._lock is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(self._lock.take)
            self._writer = DatabaseThread(target, "runs-writer", writer=True,
                                          setup=_sql.setup_writer)
            await self._writer.start()
            if self.path is None:
                self._reader = self._writer
            else:
                self._reader = DatabaseThread(target, "runs-reader", writer=False,
                                              setup=_sql.setup_reader)
                await self._reader.start()
            await self._interrupt_abandoned()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish the queued work, close the connections, let go of the lock. Idempotent."""
        for thread in (self._reader, self._writer):
            if thread is not None:
                with contextlib.suppress(Exception):
                    await thread.stop()
        self._reader = self._writer = None
        if self._lock is not None:
            self._lock.release()

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self._writer is not None

    # -- writing ----------------------------------------------------------------------------

    async def insert_run(self, run: NewRun) -> str | None:
        """See :meth:`RunsBackend.insert_run <kimi_modes.runs.backend.RunsBackend.insert_run>`."""
        try:
            return await self._writing.call(_sql.insert_run(run))
        except sqlite3.IntegrityError:
            raise ValueError(f"a run with id {run.id!r} exists already") from None

    def submit_event(self, event: RunEvent, done: Done) -> None:
        """Queue ``event`` on the writer."""
        self._writing.submit(_sql.insert_event(event), done)

    def submit_finish(self, event: RunEvent, final: Any, usage: dict[str, Any] | None,
                      done: Done) -> None:
        """Queue the ``finished`` event and the run's final state on the writer."""
        self._writing.submit(_sql.finish_run(event, final, usage), done)

    async def patch_metrics(self, run_id: str, patch: Mapping[str, Any], now: float) -> bool:
        """Merge ``patch`` with SQLite's ``json_patch``."""
        return bool(await self._writing.call(_sql.patch_metrics(run_id, dumps(dict(patch)),
                                                                now)))

    async def delete_run(self, run_id: str, owner: str | None) -> bool:
        """Delete the finished run and its events on the writer."""
        return bool(await self._writing.call(_sql.delete_run(run_id, owner)))

    async def request_cancel(self, run_id: str) -> bool:
        """Flag the run; its process reads the flag on its next heartbeat."""
        return await self._writing.call(_sql.request_cancel(run_id))

    async def remember(self, kind: str, key: str, value: bytes, now: float,
                       limit: int) -> bytes:
        """Store the entry on the writer (with the others queued); the value kept."""
        return await self._writing.call(_sql.remember(kind, key, value, now, limit))

    async def heartbeat(self) -> list[str]:
        """Interrupt the runs of stores whose lock is free; the cancel flags of ours."""
        await self._interrupt_abandoned()
        return await self._reading.call(_sql.cancel_requests(self.store_id))

    # -- reading ----------------------------------------------------------------------------

    async def read_record(self, run_id: str, owner: str | None) -> RunRecord | None:
        """The whole run, or ``None``."""
        return await self._reading.call(_sql.read_record(run_id, owner))

    async def read_status(self, run_id: str, owner: str | None) -> str | None:
        """The run's status, or ``None``."""
        return await self._reading.call(_sql.read_status(run_id, owner))

    async def read_summaries(self, limit: int, offset: int,
                             filters: Mapping[str, str | None]) -> list[RunSummary]:
        """Runs newest first."""
        return await self._reading.call(_sql.read_summaries(limit, offset, dict(filters)))

    async def read_events(self, run_id: str, after_seq: int,
                          limit: int | None) -> list[RunEvent]:
        """The run's events after ``after_seq``."""
        return await self._reading.call(_sql.read_events(run_id, after_seq, limit))

    async def recall(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored entries of ``keys``."""
        return await self._reading.call(_sql.recall(kind, keys))

    # -- internals --------------------------------------------------------------------------

    @property
    def _writing(self) -> DatabaseThread:
        if self._writer is None:
            raise RunStoreClosed("the run store is not open")
        return self._writer

    @property
    def _reading(self) -> DatabaseThread:
        if self._reader is None:
            raise RunStoreClosed("the run store is not open")
        return self._reader

    async def _interrupt_abandoned(self) -> None:
        stores = await self._writing.call(_sql.active_stores)
        lock = self._lock
        if lock is None:
            dead = [s for s in stores if s != self.store_id]
        else:
            dead = [s for s in stores if not await asyncio.to_thread(lock.alive, s)]
        if dead:
            interrupted = await self._writing.call(
                _sql.interrupt(dead, time.time(), ABANDONED_ERROR))
            if interrupted:
                log.warning("marked %d runs left by a stopped gateway as interrupted",
                            interrupted)
        if lock is not None:
            await asyncio.to_thread(lock.sweep)
