"""The runs database: its schema, how connections are set up, and every statement the store
runs. The functions here run on the database threads (:mod:`kimi_modes.runs._db`), each
inside the transaction the thread opened for it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson

from kimi_modes.runs.backend import NewRun
from kimi_modes.runs.errors import RunStoreError
from kimi_modes.runs.events import FINISHED, RUN_STARTED, STEP, TOOL_CALL, RunEvent, dumps
from kimi_modes.runs.records import ACTIVE_STATUSES, INTERRUPTED, RunRecord, RunSummary

log = logging.getLogger("kimi_modes.runs")

#: The version this code writes (``PRAGMA user_version``); :data:`MIGRATIONS` brings older
#: databases up to it.
SCHEMA_VERSION: Final = 4

#: What the modes remember between requests (:mod:`kimi_modes.runs.memories`): ``seq`` orders
#: the entries of a kind by age (the oldest are evicted first).
MEMORIES_TABLE: Final = """
CREATE TABLE IF NOT EXISTS memories (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS memories_by_age ON memories (kind, seq);
"""

#: The current schema, for a new database.
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
    store_id        TEXT,
    owner           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    started_at      REAL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id, created_at);
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, created_at DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time    REAL NOT NULL,
    type    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
""" + MEMORIES_TABLE

#: ``MIGRATIONS[n]`` turns a database of version ``n - 1`` into version ``n``.
MIGRATIONS: Final = {
    # 2: the column that named the store (process) running a run becomes ``store_id``;
    # ``owner`` now names the caller (API key) a run belongs to: unknown for older runs.
    2: """
ALTER TABLE runs RENAME COLUMN owner TO store_id;
ALTER TABLE runs ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, created_at DESC);
""",
    # 3: another process may ask the one running a run to cancel it.
    3: """
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
""",
    # 4: what the modes remember between requests (runs/memories.py), shared by processes.
    4: MEMORIES_TABLE,
}

SUMMARY_COLUMNS: Final = (
    "id, mode, model, status, stop_reason, error, parent_id, task, usage, metrics, "
    "step_count, tool_call_count, last_seq, owner, created_at, started_at, updated_at, "
    "finished_at"
)

Work = Callable[[sqlite3.Connection], Any]


# -- connections --------------------------------------------------------------------------------


def setup_writer(conn: sqlite3.Connection) -> None:
    """WAL mode, foreign keys on, and the schema: created for a new database, migrated for
    an older one (in one transaction, so two stores opening one file at once do not both
    migrate it). Raises :class:`RunStoreError` for a database of a newer version."""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode not in ("wal", "memory"):
        log.warning("runs database is in %s mode, not WAL", mode)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _migrate(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RunStoreError(
            f"the runs database has schema version {version}; this kimi-modes knows "
            f"{SCHEMA_VERSION}: upgrade kimi-modes or point it at another file")
    if version == SCHEMA_VERSION:
        return
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
    if exists is None:
        _execute_script(conn, SCHEMA)
    else:
        for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
            log.info("runs database: migrating to schema version %d", target)
            _execute_script(conn, MIGRATIONS[target])
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and this must stay in the caller's transaction.
    # The scripts here hold no ';' but between statements.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def setup_reader(conn: sqlite3.Connection) -> None:
    """A read-only connection."""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA query_only = ON")


# -- writing ------------------------------------------------------------------------------------


def insert_run(row: NewRun) -> Callable[[sqlite3.Connection], str | None]:
    """Insert a run. A run given no owner takes its parent's. The work returns the owner
    stored."""
    run_id, parent_id, owner = row.id, row.parent_id, row.owner

    def work(conn: sqlite3.Connection) -> str | None:
        conn.execute(
            "INSERT INTO runs (id, parent_id, mode, model, status, task, messages, params,"
            " store_id, owner, created_at, started_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        if owner is None and parent_id is not None:
            conn.execute("UPDATE runs SET owner = (SELECT owner FROM runs WHERE id = ?)"
                         " WHERE id = ?", (parent_id, run_id))
            found = conn.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
            inherited: str | None = None if found is None else found[0]
            return inherited
        return owner

    return work


def insert_event(event: RunEvent) -> Work:
    """Store ``event`` and bring its run's counters, status and times up to date."""
    data = dumps(event.data)
    step = event.data.get("step") if event.type == STEP else None
    steps = step if isinstance(step, int) else 0
    calls = 1 if event.type == TOOL_CALL else 0
    started = 1 if event.type == RUN_STARTED else 0
    args = (event.time, event.seq, steps, calls, started, started, event.time, event.run_id)

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (run_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)",
                     (event.run_id, event.seq, event.time, event.type, data))
        cur = conn.execute(
            "UPDATE runs SET updated_at = ?, last_seq = ?,"
            " step_count = MAX(step_count, ?), tool_call_count = tool_call_count + ?,"
            " status = CASE WHEN ? AND status = 'queued' THEN 'running' ELSE status END,"
            " started_at = CASE WHEN ? AND started_at IS NULL THEN ? ELSE started_at END"
            " WHERE id = ? AND status IN ('queued', 'running')", args)
        if cur.rowcount == 0:  # rolled back with the thread's transaction
            raise RunStoreError(f"run {event.run_id} is not active any more (another "
                                "process marked it interrupted)")

    return work


def finish_run(event: RunEvent, final: Any, usage: dict[str, Any] | None) -> Work:
    """Store the ``finished`` ``event`` and the run's final state (from the event's data)."""
    insert = insert_event(event)
    data = event.data
    row = (data["status"], data["stop_reason"], data["error"],
           None if final is None else dumps(final), data["final_answer"],
           None if usage is None else dumps(usage), dumps(data["metrics"]), event.time,
           event.time, event.run_id)

    def work(conn: sqlite3.Connection) -> None:
        insert(conn)
        conn.execute(
            "UPDATE runs SET status = ?, stop_reason = ?, error = ?, final = ?,"
            " final_text = ?, usage = ?, metrics = json_patch(metrics, ?),"
            " finished_at = ?, updated_at = ? WHERE id = ?", row)

    return work


def patch_metrics(run_id: str, patch: bytes, now: float) -> Callable[[sqlite3.Connection], int]:
    """JSON-merge ``patch`` into the run's metrics; the work returns how many rows changed."""
    def work(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "UPDATE runs SET metrics = json_patch(metrics, ?), updated_at = ? WHERE id = ?",
            (patch, now, run_id))
        return cur.rowcount

    return work


def delete_run(run_id: str, owner: str | None) -> Callable[[sqlite3.Connection], bool]:
    """Delete a finished run and (by cascade) its events; with ``owner``, only if it is that
    owner's. The work returns whether a run was deleted."""
    def work(conn: sqlite3.Connection) -> bool:
        placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
        sql = f"DELETE FROM runs WHERE id = ? AND status NOT IN ({placeholders})"
        args: list[Any] = [run_id, *ACTIVE_STATUSES]
        if owner is not None:
            sql, args = sql + " AND owner = ?", [*args, owner]
        return conn.execute(sql, args).rowcount > 0

    return work


def request_cancel(run_id: str) -> Callable[[sqlite3.Connection], bool]:
    """Flag an active run for cancelling by its process; the work returns whether it was
    active."""
    def work(conn: sqlite3.Connection) -> bool:
        placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
        cur = conn.execute(
            f"UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status IN ({placeholders})",
            [run_id, *sorted(ACTIVE_STATUSES)])
        return cur.rowcount > 0

    return work


def cancel_requests(store_id: str) -> Callable[[sqlite3.Connection], list[str]]:
    """The active runs of ``store_id`` flagged for cancelling."""
    def work(conn: sqlite3.Connection) -> list[str]:
        placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
        rows = conn.execute(
            f"SELECT id FROM runs WHERE store_id = ? AND cancel_requested"
            f" AND status IN ({placeholders})", [store_id, *sorted(ACTIVE_STATUSES)])
        return [str(row[0]) for row in rows]

    return work


def active_stores(conn: sqlite3.Connection) -> list[str | None]:
    """The stores that have queued or running runs."""
    placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
    rows = conn.execute(
        f"SELECT DISTINCT store_id FROM runs WHERE status IN ({placeholders})",
        sorted(ACTIVE_STATUSES))
    return [row[0] for row in rows]


def interrupt(stores: Sequence[str | None], now: float, error: str) -> Callable[
        [sqlite3.Connection], int]:
    """Mark the active runs of the stores ``stores`` interrupted, each with a ``finished``
    event; the work returns how many."""
    def work(conn: sqlite3.Connection) -> int:
        placeholders = ", ".join("?" for _ in ACTIVE_STATUSES)
        rows = conn.execute(
            f"SELECT id, store_id, usage, metrics FROM runs WHERE status IN ({placeholders})",
            sorted(ACTIVE_STATUSES)).fetchall()
        count = 0
        for run_id, store_id, usage, metrics in rows:
            if store_id not in stores:
                continue
            last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?",
                                (run_id,)).fetchone()[0]
            data = {
                "status": INTERRUPTED, "stop_reason": "interrupted", "final": None,
                "final_answer": None, "usage": orjson.loads(usage) if usage else None,
                "error": error, "metrics": orjson.loads(metrics) if metrics else {},
            }
            conn.execute(
                "INSERT INTO events (run_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)",
                (run_id, last + 1, now, FINISHED, dumps(data)))
            conn.execute(
                "UPDATE runs SET status = ?, stop_reason = 'interrupted', error = ?,"
                " last_seq = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                (INTERRUPTED, error, last + 1, now, now, run_id))
            count += 1
        return count

    return work


def remember(kind: str, key: str, value: bytes, now: float,
             limit: int) -> Callable[[sqlite3.Connection], bytes]:
    """Store ``value`` under ``(kind, key)`` unless an entry is there already (entries never
    change), then evict the oldest entries of ``kind`` beyond ``limit``; the work returns the
    value stored under the key (the first one written)."""
    def work(conn: sqlite3.Connection) -> bytes:
        conn.execute("INSERT INTO memories (kind, key, value, created_at) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (kind, key) DO NOTHING", (kind, key, value, now))
        stored = conn.execute("SELECT value FROM memories WHERE kind = ? AND key = ?",
                              (kind, key)).fetchone()[0]
        conn.execute("DELETE FROM memories WHERE kind = ? AND seq <= (SELECT seq FROM memories"
                     " WHERE kind = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)", (kind, kind, limit))
        return bytes(stored) if isinstance(stored, bytes) else str(stored).encode()

    return work


# -- reading ------------------------------------------------------------------------------------


def read_record(run_id: str, owner: str | None) -> Callable[[sqlite3.Connection],
                                                             RunRecord | None]:
    """The whole run, or ``None`` (also when ``owner`` is given and the run is not its)."""
    sql, args = _by_id("*", run_id, owner)

    def work(conn: sqlite3.Connection) -> RunRecord | None:
        row = conn.execute(sql, args).fetchone()
        return None if row is None else _record(row)

    return work


def read_status(run_id: str, owner: str | None) -> Callable[[sqlite3.Connection],
                                                            str | None]:
    """The run's status, or ``None`` (also when ``owner`` is given and the run is not
    its)."""
    sql, args = _by_id("status", run_id, owner)

    def work(conn: sqlite3.Connection) -> str | None:
        row = conn.execute(sql, args).fetchone()
        return None if row is None else str(row[0])

    return work


def _by_id(columns: str, run_id: str, owner: str | None) -> tuple[str, list[Any]]:
    if owner is None:
        return f"SELECT {columns} FROM runs WHERE id = ?", [run_id]
    return f"SELECT {columns} FROM runs WHERE id = ? AND owner = ?", [run_id, owner]


def read_summaries(limit: int, offset: int, filters: dict[str, str | None]) -> Callable[
        [sqlite3.Connection], list[RunSummary]]:
    """Runs newest first, ``limit`` after ``offset``; ``filters`` maps a column to the value
    it must have (``None``: any)."""
    where = [f"{column} = ?" for column, value in filters.items() if value is not None]
    args: list[Any] = [value for value in filters.values() if value is not None]
    sql = f"SELECT {SUMMARY_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    args += [limit, offset]

    def work(conn: sqlite3.Connection) -> list[RunSummary]:
        return [RunSummary(**summary_fields(row)) for row in conn.execute(sql, args)]

    return work


def read_events(run_id: str, after_seq: int, limit: int | None) -> Callable[
        [sqlite3.Connection], list[RunEvent]]:
    """The run's events with seq > ``after_seq`` in seq order, at most ``limit``."""
    sql = "SELECT seq, time, type, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
    args: list[Any] = [run_id, after_seq]
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)

    def work(conn: sqlite3.Connection) -> list[RunEvent]:
        return [RunEvent(run_id, seq, at, kind, orjson.loads(data))
                for seq, at, kind, data in conn.execute(sql, args)]

    return work


def recall(kind: str, keys: Sequence[str]) -> Callable[[sqlite3.Connection],
                                                      dict[str, bytes]]:
    """The stored values of those of ``keys`` that ``kind`` holds, by key."""
    placeholders = ", ".join("?" for _ in keys)
    sql = f"SELECT key, value FROM memories WHERE kind = ? AND key IN ({placeholders})"

    def work(conn: sqlite3.Connection) -> dict[str, bytes]:
        return {str(key): value if isinstance(value, bytes) else str(value).encode()
                for key, value in conn.execute(sql, [kind, *keys])}

    return work


def summary_fields(row: Any) -> dict[str, Any]:
    """A summary's fields from a row of the runs table (any row mapping column names)."""
    return {
        "id": row["id"], "mode": row["mode"], "model": row["model"], "status": row["status"],
        "stop_reason": row["stop_reason"], "error": row["error"],
        "parent_id": row["parent_id"], "task": row["task"],
        "usage": orjson.loads(row["usage"]) if row["usage"] else None,
        "metrics": orjson.loads(row["metrics"]) if row["metrics"] else {},
        "step_count": row["step_count"], "tool_call_count": row["tool_call_count"],
        "last_seq": row["last_seq"], "owner": row["owner"], "created_at": row["created_at"],
        "started_at": row["started_at"], "updated_at": row["updated_at"],
        "finished_at": row["finished_at"],
    }


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        **summary_fields(row),
        messages=orjson.loads(row["messages"]),
        params=orjson.loads(row["params"]),
        final=orjson.loads(row["final"]) if row["final"] is not None else None,
    )
