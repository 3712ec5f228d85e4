"""The runs database's schema versions (runs/_sql.py): a new file gets the current schema, a
version-1 file (before owners were recorded) is migrated in place with its runs kept, and a
file of a newer version is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kimi_modes.runs import RunStore, RunStoreError

# The schema of version 1, as kimi-modes wrote it: `owner` named the store (process).
V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, parent_id TEXT, mode TEXT NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL, stop_reason TEXT, error TEXT, task TEXT NOT NULL DEFAULT '',
    messages TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}', final TEXT, final_text TEXT,
    usage TEXT, metrics TEXT NOT NULL DEFAULT '{}', step_count INTEGER NOT NULL DEFAULT 0,
    tool_call_count INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
    owner TEXT, created_at REAL NOT NULL, started_at REAL, updated_at REAL NOT NULL,
    finished_at REAL);
CREATE INDEX runs_by_created ON runs (created_at DESC);
CREATE INDEX runs_by_status ON runs (status, created_at DESC);
CREATE INDEX runs_by_parent ON runs (parent_id, created_at);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    time REAL NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_a_new_database_has_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path) as store:
        run = await store.create_run("agent", "m", [{"role": "user", "content": "hi"}],
                                     owner="tenant-a")
        assert run.owner == "tenant-a"
    assert _version(path) == 4
    assert {"store_id", "owner"} <= set(_columns(path))


async def test_a_version_1_database_is_migrated_with_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1)
        conn.execute(
            "INSERT INTO runs (id, mode, model, status, stop_reason, messages, final,"
            " owner, created_at, updated_at, finished_at) VALUES ('run_old', 'agent', 'm',"
            " 'completed', 'answer', '[]', '\"done\"', 'gone-process', 1.0, 2.0, 2.0)")
        conn.execute(
            "INSERT INTO runs (id, mode, model, status, messages, owner, created_at,"
            " updated_at) VALUES ('run_left', 'agent', 'm', 'running', '[]', 'gone-process',"
            " 3.0, 3.0)")
    async with RunStore(path) as store:
        old = await store.get("run_old")
        assert old is not None and old.status == "completed" and old.final_answer == "done"
        # The old column named a process, not a caller: nobody owns these runs now.
        assert old.owner is None
        assert await store.get("run_old", owner="gone-process") is None
        # The process that was running `run_left` is gone: its run is interrupted, as before.
        left = await store.get("run_left")
        assert left is not None and left.status == "interrupted"
        new = await store.create_run("agent", "m", [], owner="tenant-a")
        assert [r.id for r in await store.list_runs(owner="tenant-a")] == [new.id]
        # Version 4 keeps the modes' memories.
        assert await store.memories.remember("reasoning", "k", "r", limit=10) == "r"
        assert await store.memories.recall("reasoning", ["k"]) == {"k": "r"}
    assert _version(path) == 4
    columns = _columns(path)
    assert "store_id" in columns and columns.count("owner") == 1
    assert "cancel_requested" in columns
    with sqlite3.connect(path) as conn:
        stores = dict(conn.execute("SELECT id, store_id FROM runs").fetchall())
    assert stores["run_old"] == "gone-process"
    # Opening it again changes nothing.
    async with RunStore(path) as again:
        assert len(await again.list_runs()) == 3


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    store = RunStore(path)
    with pytest.raises(RunStoreError, match="schema version 99"):
        await store.open()
    assert store.is_closed
