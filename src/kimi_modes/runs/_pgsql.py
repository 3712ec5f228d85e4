"""The PostgreSQL runs database: its versioned migrations, and every statement the
PostgreSQL backend (:mod:`kimi_modes.runs.postgres`) runs.

The tables mirror the SQLite ones (:mod:`kimi_modes.runs._sql`; JSON kept as text, times as
Unix seconds), plus ``stores``: one row per open store (process) with the lease it renews.
Each statement function returns the work to run on a connection, inside the transaction the
caller opened for it. Stored events are announced with ``NOTIFY`` on :data:`EVENTS_CHANNEL`
(payload ``<run id>:<seq>``), cancel requests on :data:`CANCEL_CHANNEL` (payload: the run id);
notifications go out when the transaction commits, in commit order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import orjson
import psycopg
from psycopg.rows import dict_row

from kimi_modes.runs._sql import summary_fields
from kimi_modes.runs.backend import NewRun
from kimi_modes.runs.errors import RunStoreError
from kimi_modes.runs.events import FINISHED, RUN_STARTED, STEP, TOOL_CALL, RunEvent, dumps
from kimi_modes.runs.records import ACTIVE_STATUSES, INTERRUPTED, RunRecord, RunSummary

log = logging.getLogger("kimi_modes.runs")

Connection = psycopg.AsyncConnection[Any]
Work = Callable[[Connection], Awaitable[Any]]

EVENTS_CHANNEL: Final = "kimi_runs_events"
CANCEL_CHANNEL: Final = "kimi_runs_cancel"
#: The advisory lock held while migrating, so two processes starting at once take turns.
MIGRATION_LOCK: Final = 0x6B696D69  # "kimi"

#: ``MIGRATIONS[n]`` turns a database of version ``n - 1`` into version ``n``; a new database
#: runs them all. The version is kept in ``runs_schema``.
MIGRATIONS: Final = {
    1: """
CREATE TABLE runs (
    id               text PRIMARY KEY,
    parent_id        text,
    mode             text NOT NULL,
    model            text NOT NULL,
    status           text NOT NULL,
    stop_reason      text,
    error            text,
    task             text NOT NULL DEFAULT '',
    messages         text NOT NULL,
    params           text NOT NULL DEFAULT '{}',
    final            text,
    final_text       text,
    usage            text,
    metrics          text NOT NULL DEFAULT '{}',
    step_count       integer NOT NULL DEFAULT 0,
    tool_call_count  integer NOT NULL DEFAULT 0,
    last_seq         integer NOT NULL DEFAULT 0,
    store_id         text,
    owner            text,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       double precision NOT NULL,
    started_at       double precision,
    updated_at       double precision NOT NULL,
    finished_at      double precision
);
CREATE INDEX runs_by_created ON runs (created_at DESC);
CREATE INDEX runs_by_status ON runs (status, created_at DESC);
CREATE INDEX runs_by_parent ON runs (parent_id, created_at);
CREATE INDEX runs_by_owner ON runs (owner, created_at DESC);
CREATE INDEX runs_by_store ON runs (store_id) WHERE status IN ('queued', 'running');
CREATE TABLE events (
    run_id  text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    time    double precision NOT NULL,
    type    text NOT NULL,
    data    text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE stores (
    id          text PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL
);
""",
    # 2: what the modes remember between requests (runs/memories.py); ``seq`` orders the
    # entries of a kind by age (the oldest are evicted first).
    2: """
CREATE TABLE memories (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL,
    key        text NOT NULL,
    value      text NOT NULL,
    created_at double precision NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX memories_by_age ON memories (kind, seq);
""",
}
SCHEMA_VERSION: Final = max(MIGRATIONS)

_ACTIVE: Final = "('queued', 'running')"
assert frozenset({"queued", "running"}) == ACTIVE_STATUSES

SUMMARY_COLUMNS: Final = (
    "id, mode, model, status, stop_reason, error, parent_id, task, usage, metrics, "
    "step_count, tool_call_count, last_seq, owner, created_at, started_at, updated_at, "
    "finished_at"
)

# One statement per event: the row, its run's counters, and the notification.
_EVENT: Final = f"""
WITH inserted AS (
    INSERT INTO events (run_id, seq, time, type, data)
    VALUES (%(run_id)s, %(seq)s, %(time)s, %(type)s, %(data)s)
)
UPDATE runs SET updated_at = %(time)s, last_seq = %(seq)s,
    step_count = GREATEST(step_count, %(steps)s),
    tool_call_count = tool_call_count + %(calls)s,
    status = CASE WHEN %(started)s AND status = 'queued' THEN 'running' ELSE status END,
    started_at = CASE WHEN %(started)s AND started_at IS NULL THEN %(time)s
                      ELSE started_at END
FROM (SELECT pg_notify('{EVENTS_CHANNEL}', %(note)s)) AS notified
WHERE runs.id = %(run_id)s AND runs.status IN {_ACTIVE}
"""


# -- migrations ---------------------------------------------------------------------------------


async def migrate(conn: Connection) -> None:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one transaction under an advisory
    lock (idempotent; two processes opening at once take turns). Raises
    :class:`RunStoreError` for a database of a newer version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS runs_schema (version integer NOT NULL)")
        cur = await conn.execute("SELECT version FROM runs_schema")
        row = await cur.fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise RunStoreError(
                f"the runs database has schema version {version}; this kimi-modes knows "
                f"{SCHEMA_VERSION}: upgrade kimi-modes or point it at another database")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            log.info("runs database: migrating to schema version %d", target)
            await conn.execute(MIGRATIONS[target])
        if row is None:
            await conn.execute("INSERT INTO runs_schema (version) VALUES (%s)",
                               (SCHEMA_VERSION,))
        elif version != SCHEMA_VERSION:
            await conn.execute("UPDATE runs_schema SET version = %s", (SCHEMA_VERSION,))


# -- writing ------------------------------------------------------------------------------------


def insert_run(run: NewRun) -> Callable[[Connection], Awaitable[str | None]]:
    """Insert a run (one without an owner takes its parent's); the work returns the owner
    stored, and raises :class:`ValueError` for an id that exists."""
    args = (run.id, run.parent_id, run.mode, run.model, run.status, run.task,
            run.messages.decode(), run.params.decode(), run.store_id, run.owner, run.parent_id,
            run.created_at, run.started_at, run.updated_at)

    async def work(conn: Connection) -> str | None:
        try:
            cur = await conn.execute(
                "INSERT INTO runs (id, parent_id, mode, model, status, task, messages, params,"
                " store_id, owner, created_at, started_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " COALESCE(%s, (SELECT owner FROM runs WHERE id = %s)), %s, %s, %s)"
                " RETURNING owner", args)
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"a run with id {run.id!r} exists already") from None
        row = await cur.fetchone()
        return None if row is None else row[0]

    return work


def insert_event(event: RunEvent) -> Work:
    """Store ``event``, bring its run's counters, status and times up to date, announce it."""
    step = event.data.get("step") if event.type == STEP else None
    args = {
        "run_id": event.run_id, "seq": event.seq, "time": event.time, "type": event.type,
        "data": dumps(event.data).decode(), "steps": step if isinstance(step, int) else 0,
        "calls": 1 if event.type == TOOL_CALL else 0, "started": event.type == RUN_STARTED,
        "note": f"{event.run_id}:{event.seq}",
    }

    async def work(conn: Connection) -> None:
        try:
            cur = await conn.execute(_EVENT, args)
        except psycopg.errors.UniqueViolation:  # the seq went to the sweeper's `finished`
            cur = None
        if cur is None or cur.rowcount == 0:  # rolled back with the caller's transaction
            raise RunStoreError(f"run {event.run_id} is not active any more (its process's "
                                "lease lapsed and another process marked it interrupted)")

    return work


def finish_run(event: RunEvent, final: Any, usage: dict[str, Any] | None) -> Work:
    """Store the ``finished`` ``event`` and the run's final state (from the event's data)."""
    insert = insert_event(event)
    data = event.data

    async def work(conn: Connection) -> None:
        await insert(conn)
        metrics = await _locked_metrics(conn, event.run_id)
        await conn.execute(
            "UPDATE runs SET status = %s, stop_reason = %s, error = %s, final = %s,"
            " final_text = %s, usage = %s, metrics = %s, finished_at = %s, updated_at = %s"
            " WHERE id = %s",
            (data["status"], data["stop_reason"], data["error"],
             None if final is None else dumps(final).decode(), data["final_answer"],
             None if usage is None else dumps(usage).decode(),
             dumps(merge_patch(metrics or {}, data["metrics"])).decode(), event.time,
             event.time, event.run_id))

    return work


def patch_metrics(run_id: str, patch: Mapping[str, Any],
                  now: float) -> Callable[[Connection], Awaitable[bool]]:
    """JSON-merge ``patch`` into the run's metrics; the work returns whether the run exists."""
    async def work(conn: Connection) -> bool:
        metrics = await _locked_metrics(conn, run_id)
        if metrics is None:
            return False
        await conn.execute("UPDATE runs SET metrics = %s, updated_at = %s WHERE id = %s",
                           (dumps(merge_patch(metrics, dict(patch))).decode(), now, run_id))
        return True

    return work


async def _locked_metrics(conn: Connection, run_id: str) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT metrics FROM runs WHERE id = %s FOR UPDATE", (run_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    loaded = orjson.loads(row[0]) if row[0] else {}
    return loaded if isinstance(loaded, dict) else {}


def delete_run(run_id: str, owner: str | None) -> Callable[[Connection], Awaitable[bool]]:
    """Delete a finished run and (by cascade) its events; with ``owner``, only if it is that
    owner's. The work returns whether a run was deleted."""
    async def work(conn: Connection) -> bool:
        sql = f"DELETE FROM runs WHERE id = %s AND status NOT IN {_ACTIVE}"
        args: list[Any] = [run_id]
        if owner is not None:
            sql, args = sql + " AND owner = %s", [run_id, owner]
        cur = await conn.execute(sql, args)
        return cur.rowcount > 0

    return work


def request_cancel(run_id: str) -> Callable[[Connection], Awaitable[bool]]:
    """Flag an active run for cancelling and tell its process; the work returns whether it
    was active."""
    async def work(conn: Connection) -> bool:
        cur = await conn.execute(
            f"UPDATE runs SET cancel_requested = true WHERE id = %s AND status IN {_ACTIVE}",
            (run_id,))
        if cur.rowcount == 0:
            return False
        await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, run_id))
        return True

    return work


def renew_lease(store_id: str, host: str, pid: int,
                seconds: float) -> Callable[[Connection], Awaitable[None]]:
    """Register the store, or extend its lease to ``seconds`` from now (database time)."""
    async def work(conn: Connection) -> None:
        await conn.execute(
            "INSERT INTO stores (id, host, pid, lease_until)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
            (store_id, host, pid, seconds))

    return work


def drop_lease(store_id: str) -> Callable[[Connection], Awaitable[None]]:
    """Forget the store (it closed and its runs have ended)."""
    async def work(conn: Connection) -> None:
        await conn.execute("DELETE FROM stores WHERE id = %s", (store_id,))

    return work


def interrupt_lapsed(now: float, error: str) -> Callable[[Connection], Awaitable[int]]:
    """Mark ``interrupted`` (each with a ``finished`` event) the active runs of stores whose
    lease has lapsed (or that never had one), then forget those stores; the work returns how
    many runs. Rows another transaction holds are skipped (the next sweep takes them), so
    sweepers on several replicas never mark a run twice."""
    async def work(conn: Connection) -> int:
        cur = await conn.execute(
            f"SELECT id, usage, metrics, last_seq FROM runs WHERE status IN {_ACTIVE}"
            " AND NOT EXISTS (SELECT 1 FROM stores WHERE stores.id = runs.store_id"
            "                 AND stores.lease_until > now())"
            " FOR UPDATE SKIP LOCKED")
        rows = await cur.fetchall()
        for run_id, usage, metrics, last_seq in rows:
            data = {
                "status": INTERRUPTED, "stop_reason": "interrupted", "final": None,
                "final_answer": None, "usage": orjson.loads(usage) if usage else None,
                "error": error, "metrics": orjson.loads(metrics) if metrics else {},
            }
            await insert_event(RunEvent(run_id, last_seq + 1, now, FINISHED, data))(conn)
            await conn.execute(
                "UPDATE runs SET status = %s, stop_reason = 'interrupted', error = %s,"
                " finished_at = %s WHERE id = %s", (INTERRUPTED, error, now, run_id))
        await conn.execute("DELETE FROM stores WHERE lease_until <= now()")
        return len(rows)

    return work


def cancel_requests(store_id: str) -> Callable[[Connection], Awaitable[list[str]]]:
    """The active runs of ``store_id`` flagged for cancelling."""
    async def work(conn: Connection) -> list[str]:
        cur = await conn.execute(
            f"SELECT id FROM runs WHERE store_id = %s AND cancel_requested"
            f" AND status IN {_ACTIVE}", (store_id,))
        return [str(row[0]) for row in await cur.fetchall()]

    return work


def remember(kind: str, key: str, value: bytes, now: float,
             limit: int) -> Callable[[Connection], Awaitable[bytes]]:
    """Store ``value`` under ``(kind, key)`` unless an entry is there already (entries never
    change), then evict the oldest entries of ``kind`` beyond ``limit``; the work returns the
    value stored under the key (the first one written, by whichever process)."""
    async def work(conn: Connection) -> bytes:
        await conn.execute(
            "INSERT INTO memories (kind, key, value, created_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (kind, key) DO NOTHING", (kind, key, value.decode(), now))
        cur = await conn.execute("SELECT value FROM memories WHERE kind = %s AND key = %s",
                                 (kind, key))
        row = await cur.fetchone()
        await conn.execute(
            "DELETE FROM memories WHERE kind = %s AND seq <= (SELECT seq FROM memories"
            " WHERE kind = %s ORDER BY seq DESC LIMIT 1 OFFSET %s)", (kind, kind, limit))
        return value if row is None else str(row[0]).encode()

    return work


# -- reading ------------------------------------------------------------------------------------


async def read_record(conn: Connection, run_id: str, owner: str | None) -> RunRecord | None:
    """The whole run, or ``None`` (also when ``owner`` is given and the run is not its)."""
    sql, args = _by_id("*", run_id, owner)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, args)
    row = await cur.fetchone()
    if row is None:
        return None
    return RunRecord(**summary_fields(row), messages=orjson.loads(row["messages"]),
                     params=orjson.loads(row["params"]),
                     final=orjson.loads(row["final"]) if row["final"] is not None else None)


async def read_status(conn: Connection, run_id: str, owner: str | None) -> str | None:
    """The run's status, or ``None`` (also when ``owner`` is given and the run is not
    its)."""
    sql, args = _by_id("status", run_id, owner)
    cur = await conn.execute(sql, args)
    row = await cur.fetchone()
    return None if row is None else str(row[0])


def _by_id(columns: str, run_id: str, owner: str | None) -> tuple[str, list[Any]]:
    if owner is None:
        return f"SELECT {columns} FROM runs WHERE id = %s", [run_id]
    return f"SELECT {columns} FROM runs WHERE id = %s AND owner = %s", [run_id, owner]


async def read_summaries(conn: Connection, limit: int, offset: int,
                         filters: Mapping[str, str | None]) -> list[RunSummary]:
    """Runs newest first, ``limit`` after ``offset``; ``filters`` maps a column (one of the
    store's fixed names) to the value it must have (``None``: any)."""
    where = [f"{column} = %s" for column, value in filters.items() if value is not None]
    args: list[Any] = [value for value in filters.values() if value is not None]
    sql = f"SELECT {SUMMARY_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s"
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, [*args, limit, offset])
    return [RunSummary(**summary_fields(row)) for row in await cur.fetchall()]


async def read_events(conn: Connection, run_id: str, after_seq: int,
                      limit: int | None) -> list[RunEvent]:
    """The run's events with seq > ``after_seq`` in seq order, at most ``limit``."""
    sql = "SELECT seq, time, type, data FROM events WHERE run_id = %s AND seq > %s ORDER BY seq"
    args: list[Any] = [run_id, after_seq]
    if limit is not None:
        sql += " LIMIT %s"
        args.append(limit)
    cur = await conn.execute(sql, args)
    return [RunEvent(run_id, seq, at, kind, orjson.loads(data))
            for seq, at, kind, data in await cur.fetchall()]


async def recall(conn: Connection, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
    """The stored values of those of ``keys`` that ``kind`` holds, by key."""
    cur = await conn.execute("SELECT key, value FROM memories WHERE kind = %s AND key = ANY(%s)",
                             (kind, list(keys)))
    return {str(key): str(value).encode() for key, value in await cur.fetchall()}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (what SQLite's ``json_patch`` does for the SQLite store):
    objects merge recursively, a ``None`` value removes its key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
