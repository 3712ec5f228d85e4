"""What only the PostgreSQL backend does: versioned migrations applied at open (idempotent,
safe when several processes open at once, a newer schema refused), and what other processes
do pushed with NOTIFY rather than found by polling (stored events reach a watcher, a cancel
reaches the owner, long before any poll or heartbeat would)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from helpers.postgres import PostgresCluster
from kimi_modes.runs import RunStore, RunStoreError, _pgsql

USER = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture
def url(postgres: PostgresCluster) -> str:
    return postgres.new_database()


def _version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM runs_schema").fetchone()
        assert row is not None
        return int(row[0])


async def test_stores_opening_at_once_migrate_once(url: str) -> None:
    stores = [RunStore(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        run = await stores[0].create_run("agent", "m", USER, owner="tenant-a")
        assert [r.id for r in await stores[3].list_runs(owner="tenant-a")] == [run.id]
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert _version(url) == 2
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM runs_schema").fetchone() == (1,)
        # Closed stores give up their leases.
        assert conn.execute("SELECT count(*) FROM stores").fetchone() == (0,)
    async with RunStore(url) as again:  # opening again changes nothing
        assert len(await again.list_runs()) == 1


async def test_a_version_1_database_is_migrated_with_its_runs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_pgsql.MIGRATIONS[1])
        conn.execute("CREATE TABLE runs_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO runs_schema (version) VALUES (1)")
        conn.execute(
            "INSERT INTO runs (id, mode, model, status, messages, owner, created_at,"
            " updated_at, finished_at) VALUES ('run_old', 'agent', 'm', 'completed', '[]',"
            " 'tenant-a', 1.0, 2.0, 2.0)")
    async with RunStore(url) as store:
        old = await store.get("run_old", owner="tenant-a")
        assert old is not None and old.status == "completed"
        # Version 2 keeps the modes' memories.
        assert await store.memories.remember("reasoning", "k", "r", limit=10) == "r"
        assert await store.memories.recall("reasoning", ["k"]) == {"k": "r"}
    assert _version(url) == 2


async def test_a_newer_database_is_refused(url: str) -> None:
    async with RunStore(url):
        pass
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE runs_schema SET version = 99")
    store = RunStore(url)
    with pytest.raises(RunStoreError, match="schema version 99"):
        await store.open()
    assert store.is_closed


async def test_events_are_pushed_to_a_watcher_in_another_process(url: str) -> None:
    # Polls every 60 s: only a notification can bring the events in time.
    async with RunStore(url, delta_interval=0.02) as owner, \
            RunStore(url, poll_interval=60) as watcher:
        run = await owner.create_run("agent", "m", USER)
        await owner.emit(run.id, "run_started", {})
        async with await watcher.subscribe(run.id) as sub:
            first = await sub.next_event(timeout=10)
            assert first is not None and first.type == "run_started"
            for step in (1, 2, 3):
                await owner.emit(run.id, "step", {"step": step})
                await owner.emit(run.id, "message_delta",
                                 {"step": step, "kind": "content", "text": f"t{step}"})
            finishing = asyncio.create_task(owner.finish(run.id, "completed", "answer", "ok"))
            seen = []
            async with asyncio.timeout(10):
                async for event in sub:
                    seen.append((event.seq, event.type))
            await finishing
        assert seen == [(2, "step"), (3, "message_delta"), (4, "step"), (5, "message_delta"),
                        (6, "step"), (7, "message_delta"), (8, "finished")]


async def test_a_cancel_is_pushed_to_the_owner(url: str) -> None:
    # Beats every 20 s: only a notification can bring the cancel in time.
    async with RunStore(url, lease_seconds=60) as owner, \
            RunStore(url, poll_interval=60) as other:
        run = await owner.create_run("agent", "m", USER)
        await owner.emit(run.id, "run_started", {})
        cancelled = asyncio.Event()

        async def stop() -> None:
            cancelled.set()
            await owner.finish(run.id, "cancelled", "cancelled")

        owner.register_cancel(run.id, stop)
        assert await other.cancel(run.id) is True
        await asyncio.wait_for(cancelled.wait(), 10)
        # wait() on the other side is woken by the finished event, not its poll.
        assert await other.wait(run.id, 10) is True
        assert await other.status(run.id) == "cancelled"


async def test_a_store_whose_lease_lapsed_cannot_write_to_its_interrupted_runs(url: str) -> None:
    async with RunStore(url, lease_seconds=60) as stalled:
        run = await stalled.create_run("agent", "m", USER)
        await stalled.emit(run.id, "run_started", {})
        with psycopg.connect(url) as conn:  # its lease lapses (a frozen VM, a partition)
            conn.execute("UPDATE stores SET lease_until = now() - interval '1 second'")
        async with RunStore(url) as survivor:  # sweeps on open
            assert await survivor.status(run.id) == "interrupted"
            with pytest.raises(RunStoreError, match="not active any more"):
                await stalled.emit(run.id, "step", {"step": 1})
            with pytest.raises(RunStoreError, match="not active any more"):
                await stalled.finish(run.id, "completed", "answer", "late")
            record = await survivor.get(run.id)
            assert record is not None and record.status == "interrupted"
            assert [e.type for e in await survivor.events(run.id)] == ["run_started",
                                                                       "finished"]
