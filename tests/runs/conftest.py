"""What the run-store tests share: a database to keep runs in, once per backend (a SQLite file
and a database on a throwaway PostgreSQL server), an open store on it, and a tool-using
step. Every test that takes ``location`` or ``store`` is the contract both backends meet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from helpers.postgres import PostgresCluster
from kimi_modes.runs import RunStore

ToolStep = Callable[[RunStore, str, int], Awaitable[None]]


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store keeps its runs: a fresh SQLite file, or a fresh PostgreSQL database (on
    the session's ``postgres`` server, tests/conftest.py)."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite3")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
async def store(location: str) -> AsyncIterator[RunStore]:
    s = RunStore(location, delta_interval=0.05)
    await s.open()
    yield s
    await s.close()


async def _tool_step(store: RunStore, run_id: str, step: int) -> None:
    await store.emit(run_id, "step", {"step": step})
    await store.emit(run_id, "message_delta", {"step": step, "kind": "reasoning", "text": "I "})
    await store.emit(run_id, "message_delta", {"step": step, "kind": "reasoning",
                                               "text": "should add."})
    await store.emit(run_id, "tool_call", {"step": step, "id": f"functions.add:{step}",
                                           "name": "add", "arguments": '{"a": 2, "b": 2}'})
    await store.emit(run_id, "tool_result", {"step": step, "id": f"functions.add:{step}",
                                             "name": "add", "output": "4", "is_error": False,
                                             "duration": 0.01, "meta": {"exit": 0}})


@pytest.fixture
def tool_step() -> ToolStep:
    """``await tool_step(store, run_id, n)``: step ``n`` with reasoning, one tool call and its
    result (five events, the two deltas coalesced into one)."""
    return _tool_step
