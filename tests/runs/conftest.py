"""What the run-store tests share: an open store on a real file, and a tool-using step."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kimi_modes.runs import RunStore

ToolStep = Callable[[RunStore, str, int], Awaitable[None]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    s = RunStore(tmp_path / "runs.sqlite3", delta_interval=0.05)
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
