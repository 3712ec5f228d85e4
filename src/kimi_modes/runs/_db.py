"""The store's database: SQLite connections each owned by one dedicated thread, fed jobs from
the event loop, and :class:`RunsDatabase`, the pair of them a store opens.

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
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from kimi_modes.runs import _sql
from kimi_modes.runs._locks import StoreLock
from kimi_modes.runs.errors import RunStoreClosed

log = logging.getLogger("kimi_modes.runs")

T = TypeVar("T")

#: A unit of work: runs on the database thread with its connection.
Work = Callable[[sqlite3.Connection], Any]
#: Called on the event loop when the work is done: ``(result, error)``.
Done = Callable[[Any, BaseException | None], None]

_BATCH = 512
_INTERRUPTED_ERROR: Final = "the gateway stopped while the run was in progress"


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


class RunsDatabase:
    """The database of one store: a writer thread and a reader thread on the file at
    ``path`` (one thread for both when ``path`` is ``None``: in memory), and the store's lock
    (:mod:`kimi_modes.runs._locks`) beside the file, held by ``store_id``."""

    def __init__(self, path: Path | None, store_id: str) -> None:
        self.path = path
        self.store_id = store_id
        self._lock = (None if path is None else
                      StoreLock(path.with_name(path.name + ".stores"), store_id))
        self._writer: DatabaseThread | None = None
        self._reader: DatabaseThread | None = None

    async def open(self) -> None:
        """Take the lock, open both connections (the schema made or checked), and mark the
        active runs of stores that are gone ``interrupted``. Raises what failed, with
        everything opened so far closed again."""
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
    def writer(self) -> DatabaseThread:
        """The writer thread; :class:`RunStoreClosed` when the database is not open."""
        if self._writer is None:
            raise RunStoreClosed("the run store is not open")
        return self._writer

    @property
    def reader(self) -> DatabaseThread:
        """The reader thread; :class:`RunStoreClosed` when the database is not open."""
        if self._reader is None:
            raise RunStoreClosed("the run store is not open")
        return self._reader

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self._writer is not None

    async def _interrupt_abandoned(self) -> None:
        stores = await self.writer.call(_sql.active_stores)
        lock = self._lock
        if lock is None:
            dead = [s for s in stores if s != self.store_id]
        else:
            dead = [s for s in stores if not await asyncio.to_thread(lock.alive, s)]
        if dead:
            interrupted = await self.writer.call(
                _sql.interrupt(dead, time.time(), _INTERRUPTED_ERROR))
            if interrupted:
                log.warning("marked %d runs left by a stopped gateway as interrupted",
                            interrupted)
        if lock is not None:
            await asyncio.to_thread(lock.sweep)
