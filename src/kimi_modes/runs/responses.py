"""What the Responses API needs of the run store beyond its interface: deleting a run.

A stored response is a run (:mod:`kimi_modes.server.responses_api.stored`); ``DELETE
/v1/responses/{id}`` removes it, with its events. One SQL statement, kept apart from the
store's own so a second store implementation has one small thing to add.
"""

from __future__ import annotations

import sqlite3

from kimi_modes.runs.store import RunStore

_DELETE = "DELETE FROM runs WHERE id = ? AND status NOT IN ('queued', 'running')"


async def delete_run(store: RunStore, run_id: str, *, owner: str | None = None) -> bool:
    """Delete the finished run ``run_id`` and its events (with ``owner``: only if it is that
    owner's). Returns whether a run was deleted; a run still queued or running is not (cancel
    it first). Raises what the store raises when it is not open."""
    if store.is_live(run_id):
        return False
    sql, args = _DELETE, [run_id]
    if owner is not None:
        sql, args = sql + " AND owner = ?", [run_id, owner]

    def work(conn: sqlite3.Connection) -> bool:
        return conn.execute(sql, args).rowcount > 0

    # The store's writer thread: the one connection that writes (private to the package).
    return await store._db.writer.call(work)
