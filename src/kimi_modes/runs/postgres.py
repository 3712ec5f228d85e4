"""The shared backend: the runs in a PostgreSQL database that several gateway processes or
replicas use at once (``[store] url = "postgresql://..."``; needs the ``postgres`` extra,
psycopg 3).

:class:`PostgresDatabase` holds three kinds of connection: one writer (a task that commits
every write queued while it was busy in one transaction, in submission order, and retries a
failed batch one write at a time, like the SQLite writer thread), a small pool of readers, and
one listener (``LISTEN`` on the events and cancel channels of :mod:`kimi_modes.runs._pgsql`).

Leases: the store registers in ``stores`` at :meth:`~PostgresDatabase.open` with a lease of
``lease_seconds`` (database time, so clocks of the replicas do not matter), renewed on every
heartbeat; each heartbeat also marks ``interrupted`` the active runs of stores whose lease has
lapsed. A process killed mid-run therefore has its runs interrupted by any survivor within
``lease_seconds`` plus one beat; nothing it finished is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from kimi_modes.runs import _pgsql
from kimi_modes.runs.backend import ABANDONED_ERROR, Done, NewRun, Signals
from kimi_modes.runs.errors import RunStoreClosed
from kimi_modes.runs.events import RunEvent
from kimi_modes.runs.records import RunRecord, RunSummary

log = logging.getLogger("kimi_modes.runs")

T = TypeVar("T")

_BATCH = 512
_RECONNECT_DELAY = 1.0


@dataclass(slots=True)
class _Job:
    work: _pgsql.Work
    done: Done | None


class _Writer:
    """One connection that runs queued work in submission order, in group transactions."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._conn: _pgsql.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        self._task = asyncio.create_task(self._main(), name="runs-pg-writer")

    def submit(self, work: _pgsql.Work, done: Done | None = None) -> None:
        self._jobs.put_nowait(_Job(work, done))

    async def call(self, work: Callable[[_pgsql.Connection], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

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
        """Finish the queued work, then close the connection."""
        if self._task is not None:
            self._jobs.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _main(self) -> None:
        while True:
            job = await self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < _BATCH and not self._jobs.empty():
                more = self._jobs.get_nowait()
                if more is None:
                    stop = True
                    break
                batch.append(more)
            _report(batch, await self._run(batch))
            if stop:
                return

    async def _run(self, batch: list[_Job]) -> list[tuple[Any, BaseException | None]]:
        conn = await self._connection()
        if len(batch) > 1:
            try:
                async with conn.transaction():
                    results = [await job.work(conn) for job in batch]
                return [(r, None) for r in results]
            except Exception:  # retried one at a time: one bad write must not fail the rest
                conn = await self._connection()
        outcomes: list[tuple[Any, BaseException | None]] = []
        for job in batch:
            try:
                async with conn.transaction():
                    outcomes.append((await job.work(conn), None))
            except Exception as exc:
                outcomes.append((None, exc))
                conn = await self._connection()
        return outcomes

    async def _connection(self) -> _pgsql.Connection:
        """The connection, opened anew if the server dropped it."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    await self._conn.close()
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return self._conn


def _report(batch: list[_Job], results: list[tuple[Any, BaseException | None]]) -> None:
    for job, (result, error) in zip(batch, results, strict=True):
        if job.done is None:
            if error is not None:
                log.error("runs-pg-writer: a database write failed: %s", error)
            continue
        try:
            job.done(result, error)
        except Exception:
            log.exception("runs-pg-writer: completion callback failed")


class PostgresDatabase:
    """The :class:`~kimi_modes.runs.backend.RunsBackend` on the PostgreSQL database at
    ``url`` (a libpq URL: ``postgresql://user:password@host:port/dbname?...``)."""

    def __init__(self, url: str, store_id: str, *, lease_seconds: float = 15.0,
                 readers: int = 4) -> None:
        self.url = url
        self.store_id = store_id
        self.lease_seconds = lease_seconds
        self._readers = readers
        self._writer: _Writer | None = None
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._host = socket.gethostname()

    async def open(self, signals: Signals) -> None:
        """Migrate (under an advisory lock), take the lease, start listening, and interrupt
        the runs of stores whose lease lapsed. Raises what failed, everything closed again."""
        try:
            async with await psycopg.AsyncConnection.connect(self.url,
                                                             autocommit=True) as conn:
                await _pgsql.migrate(conn)
            writer = self._writer = _Writer(self.url)
            await writer.start()
            await writer.call(self._renewal())
            self._pool = AsyncConnectionPool(self.url, min_size=1, max_size=self._readers,
                                             kwargs={"autocommit": True}, open=False,
                                             name="runs-pg-readers")
            await self._pool.open(wait=True)
            listening = asyncio.get_running_loop().create_future()
            self._listener = asyncio.create_task(self._listen(signals, listening),
                                                 name="runs-pg-listener")
            await listening
            await self._interrupt_lapsed()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish the queued writes, give up the lease, disconnect. Idempotent."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                await writer.call(_pgsql.drop_lease(self.store_id))
            await writer.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self._writer is not None and self._pool is not None

    # -- writing ----------------------------------------------------------------------------

    async def insert_run(self, run: NewRun) -> str | None:
        """Insert the run (committed on return)."""
        return await self._writing.call(_pgsql.insert_run(run))

    def submit_event(self, event: RunEvent, done: Done) -> None:
        """Queue ``event``; its ``NOTIFY`` goes out with the commit."""
        self._writing.submit(_pgsql.insert_event(event), done)

    def submit_finish(self, event: RunEvent, final: Any, usage: dict[str, Any] | None,
                      done: Done) -> None:
        """Queue the ``finished`` event and the run's final state."""
        self._writing.submit(_pgsql.finish_run(event, final, usage), done)

    async def patch_metrics(self, run_id: str, patch: Mapping[str, Any], now: float) -> bool:
        """Merge ``patch`` into the run's metrics (read under a row lock, merged here)."""
        return await self._writing.call(_pgsql.patch_metrics(run_id, patch, now))

    async def delete_run(self, run_id: str, owner: str | None) -> bool:
        """Delete the finished run and its events."""
        return await self._writing.call(_pgsql.delete_run(run_id, owner))

    async def request_cancel(self, run_id: str) -> bool:
        """Flag the run and ``NOTIFY`` its owner, which cancels it at once."""
        return await self._writing.call(_pgsql.request_cancel(run_id))

    async def remember(self, kind: str, key: str, value: bytes, now: float,
                       limit: int) -> bytes:
        """Store the entry on the writer (with the others queued); the value kept."""
        return await self._writing.call(_pgsql.remember(kind, key, value, now, limit))

    async def heartbeat(self) -> list[str]:
        """Renew the lease; interrupt the runs of lapsed stores; our cancel requests."""
        await self._writing.call(self._renewal())
        await self._interrupt_lapsed()
        return await self._writing.call(_pgsql.cancel_requests(self.store_id))

    # -- reading ----------------------------------------------------------------------------

    async def read_record(self, run_id: str, owner: str | None) -> RunRecord | None:
        """The whole run, or ``None``."""
        async with self._reading.connection() as conn:
            return await _pgsql.read_record(conn, run_id, owner)

    async def read_status(self, run_id: str, owner: str | None) -> str | None:
        """The run's status, or ``None``."""
        async with self._reading.connection() as conn:
            return await _pgsql.read_status(conn, run_id, owner)

    async def read_summaries(self, limit: int, offset: int,
                             filters: Mapping[str, str | None]) -> list[RunSummary]:
        """Runs newest first."""
        async with self._reading.connection() as conn:
            return await _pgsql.read_summaries(conn, limit, offset, filters)

    async def read_events(self, run_id: str, after_seq: int,
                          limit: int | None) -> list[RunEvent]:
        """The run's events after ``after_seq``."""
        async with self._reading.connection() as conn:
            return await _pgsql.read_events(conn, run_id, after_seq, limit)

    async def recall(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored entries of ``keys``."""
        async with self._reading.connection() as conn:
            return await _pgsql.recall(conn, kind, keys)

    # -- internals --------------------------------------------------------------------------

    @property
    def _writing(self) -> _Writer:
        if self._writer is None:
            raise RunStoreClosed("the run store is not open")
        return self._writer

    @property
    def _reading(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise RunStoreClosed("the run store is not open")
        return self._pool

    def _renewal(self) -> Callable[[_pgsql.Connection], Awaitable[None]]:
        return _pgsql.renew_lease(self.store_id, self._host, os.getpid(), self.lease_seconds)

    async def _interrupt_lapsed(self) -> None:
        count = await self._writing.call(_pgsql.interrupt_lapsed(time.time(), ABANDONED_ERROR))
        if count:
            log.warning("marked %d runs of gateways whose lease lapsed as interrupted", count)

    async def _listen(self, signals: Signals, listening: asyncio.Future[None]) -> None:
        """Hand the notifications of other processes to ``signals``; reconnect when the
        connection drops (watchers poll meanwhile)."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {_pgsql.EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {_pgsql.CANCEL_CHANNEL}")
                    if not listening.done():
                        listening.set_result(None)
                    async for note in conn.notifies():
                        if note.channel == _pgsql.EVENTS_CHANNEL:
                            signals.stored(note.payload.rpartition(":")[0])
                        elif note.channel == _pgsql.CANCEL_CHANNEL:
                            signals.cancel(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not listening.done():
                    listening.set_exception(exc)
                    return
                log.warning("runs listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(_RECONNECT_DELAY)
