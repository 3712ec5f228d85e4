"""RunStore against a real SQLite file: persistence, seq order, the listing, metrics,
concurrency, a clean close and reopen, and the cancel registry."""

from __future__ import annotations

import asyncio
import doctest
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import kimi_modes.runs
from kimi_modes.runs import RunEvent, RunNotFound, RunStore, RunStoreClosed

USER = [{"role": "user", "content": "What is 2+2? Use the calculator."}]
FINAL = {"role": "assistant", "content": "4", "reasoning_content": "easy"}
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "reasoning_tokens": 10}

ToolStep = Callable[[RunStore, str, int], Awaitable[None]]


# -- the basics ---------------------------------------------------------------------------


async def test_a_run_is_stored_with_its_events_and_end(store: RunStore,
                                                       tool_step: ToolStep) -> None:
    run = await store.create_run("agent", "kimi-k2.5-agent", USER, {"max_steps": 5})
    assert run.id.startswith("run_") and run.status == "queued" and run.started_at is None
    assert run.task == "What is 2+2? Use the calculator."
    await store.emit(run.id, "run_started", {"workspace": "/tmp/w"})
    running = await store.get(run.id)
    assert running is not None and running.status == "running"
    assert running.started_at is not None
    await tool_step(store, run.id, 1)
    await store.emit(run.id, "step", {"step": 2})
    await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": "4"})
    assert await store.finish(run.id, "completed", "answer", FINAL, USAGE) is True

    record = await store.get(run.id)
    assert record is not None
    assert record.status == "completed" and record.stop_reason == "answer"
    assert record.final == FINAL and record.final_answer == "4"
    assert record.usage == USAGE
    assert record.messages == USER and record.params == {"max_steps": 5}
    assert record.step_count == 2 and record.tool_call_count == 1
    assert record.finished_at is not None and record.finished_at >= record.created_at
    assert record.mode == "agent" and record.model == "kimi-k2.5-agent"

    events = await store.events(run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert record.last_seq == events[-1].seq
    assert [e.type for e in events] == [
        "run_started", "step", "message_delta", "tool_call", "tool_result", "step",
        "message_delta", "finished"]
    assert events[2].data == {"step": 1, "kind": "reasoning", "text": "I should add."}
    assert events[4].data["meta"] == {"exit": 0}
    assert events[-1].data == {
        "status": "completed", "stop_reason": "answer", "final": FINAL, "final_answer": "4",
        "usage": USAGE, "error": None, "metrics": {}}
    wire = events[3].to_dict()
    assert wire == {"run_id": run.id, "seq": 4, "time": events[3].time, "type": "tool_call",
                    "step": 1, "id": "functions.add:1", "name": "add",
                    "arguments": '{"a": 2, "b": 2}'}
    assert RunEvent.from_dict(wire) == events[3]


async def test_events_emitted_without_waiting_keep_their_order(store: RunStore) -> None:
    run = await store.create_run("swarm", "m", [{"role": "user", "content": "x"}])
    watcher = await store.subscribe(run.id)
    await store.emit(run.id, "run_started", {}, wait=False)
    for i in range(50):
        await store.emit(run.id, "subagent_progress", {"i": i}, wait=i % 2 == 0)
    await store.emit(run.id, "step", {"step": 1}, wait=False)
    await store.finish(run.id, "completed", "answer", "done")
    stored = await store.events(run.id)
    assert [e.type for e in stored] == ["run_started", *["subagent_progress"] * 50, "step",
                                        "finished"]
    assert [e.data["i"] for e in stored[1:51]] == list(range(50))
    assert [e.seq for e in stored] == list(range(1, 54))
    seen = [e.seq async for e in watcher]
    assert seen == list(range(1, 54))


async def test_events_after_a_seq_and_limited(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER, status="running")
    for i in range(1, 11):
        await store.emit(run.id, "step", {"step": i})
    assert [e.seq for e in await store.events(run.id, after_seq=7)] == [8, 9, 10]
    assert [e.seq for e in await store.events(run.id, after_seq=2, limit=3)] == [3, 4, 5]
    assert await store.events("run_nope") == []


async def test_list_is_newest_first_and_filters(store: RunStore) -> None:
    parent = await store.create_run("swarm", "kimi-k2.5-swarm", USER)
    children = [await store.create_run("agent", "kimi-k2.5", USER, parent_id=parent.id)
                for _ in range(3)]
    await store.finish(children[0].id, "failed", "error", error="boom")
    listed = await store.list_runs()
    assert [r.id for r in listed] == [c.id for c in reversed(children)] + [parent.id]
    assert [r.id for r in await store.list_runs(limit=2, offset=1)] == [children[1].id,
                                                                   children[0].id]
    failed = await store.list_runs(status="failed")
    assert [r.id for r in failed] == [children[0].id] and failed[0].error == "boom"
    assert {r.id for r in await store.list_runs(parent_id=parent.id)} == {c.id for c in children}
    assert [r.id for r in await store.list_runs(mode="swarm")] == [parent.id]
    assert not hasattr(listed[0], "messages")  # summaries stay small
    with pytest.raises(ValueError, match="unknown status"):
        await store.list_runs(status="done")


async def test_runs_belong_to_their_owner_and_sub_agents_inherit_it(store: RunStore) -> None:
    a = await store.create_run("swarm", "m", USER, owner="tenant-a")
    b = await store.create_run("agent", "m", USER, owner="tenant-b")
    nobody = await store.create_run("agent", "m", USER)  # a terminal run, no keys
    child = await store.create_run("subagent", "m", USER, parent_id=a.id)
    assert (a.owner, b.owner, nobody.owner, child.owner) == (
        "tenant-a", "tenant-b", None, "tenant-a")
    assert [r.id for r in await store.list_runs(owner="tenant-a")] == [child.id, a.id]
    assert [r.id for r in await store.list_runs(owner="tenant-b")] == [b.id]
    assert await store.list_runs(owner="tenant-c") == []
    assert await store.list_runs(parent_id=a.id, owner="tenant-b") == []
    assert len(await store.list_runs()) == 4  # no owner given: every run
    everyone = {r.id: r.owner for r in await store.list_runs()}
    assert everyone[nobody.id] is None and everyone[child.id] == "tenant-a"

    found = await store.get(child.id, owner="tenant-a")
    assert found is not None and found.owner == "tenant-a"
    assert await store.get(a.id, owner="tenant-b") is None
    assert await store.get(nobody.id, owner="tenant-a") is None
    unscoped = await store.get(nobody.id)
    assert unscoped is not None and unscoped.owner is None
    assert await store.status(b.id, owner="tenant-b") == "queued"
    assert await store.status(b.id, owner="tenant-a") is None
    assert await store.status(b.id) == "queued"
    # An explicit owner wins over the parent's.
    other = await store.create_run("subagent", "m", USER, parent_id=a.id, owner="tenant-b")
    assert other.owner == "tenant-b"
    assert (await store.get(other.id, owner="tenant-b")) is not None


async def test_finish_is_once_and_validated(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER)
    with pytest.raises(ValueError, match="not 'stopped'"):
        await store.finish(run.id, "stopped", "max_steps")
    assert await store.finish(run.id, "completed", "max_steps", metrics={"a": 1})
    assert await store.finish(run.id, "cancelled", "cancelled") is False
    record = await store.get(run.id)
    assert record is not None and record.status == "completed" and record.metrics == {"a": 1}
    # Late events of a finished run are dropped, not errors.
    await store.emit(run.id, "step", {"step": 9})
    assert [e.type for e in await store.events(run.id)] == ["finished"]
    with pytest.raises(RunNotFound):
        await store.finish("run_unknown", "completed", "answer")


async def test_malformed_events_are_refused(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER)
    with pytest.raises(RunNotFound, match="run_unknown"):
        await store.emit("run_unknown", "step", {"step": 1})
    with pytest.raises(ValueError, match="finish"):
        await store.emit(run.id, "finished", {})
    with pytest.raises(ValueError, match="seq"):
        await store.emit(run.id, "step", {"seq": 3})
    with pytest.raises(ValueError, match="kind"):
        await store.emit(run.id, "message_delta", {"kind": "thought", "text": "x"})
    with pytest.raises(ValueError, match="text"):
        await store.emit(run.id, "message_delta", {"kind": "content", "text": None})
    with pytest.raises(ValueError, match="exists already"):
        await store.create_run("agent", "m", USER, run_id=run.id)
    with pytest.raises(ValueError, match="queued or running"):
        await store.create_run("agent", "m", USER, status="completed")
    # Values JSON cannot hold are stored as their str(); other event types pass through.
    await store.emit(run.id, "subagent_started", {"path": Path("/w"), "ids": {1: "a"}})
    (event,) = await store.events(run.id)
    assert event.type == "subagent_started" and event.data == {"path": "/w", "ids": {"1": "a"}}


async def test_long_tool_output_is_stored_shortened(location: str) -> None:
    async with RunStore(location, output_limit=100) as store:
        run = await store.create_run("agent", "m", USER)
        await store.emit(run.id, "tool_result", {"step": 1, "id": "c", "name": "python",
                                                 "output": "x" * 1000, "is_error": False,
                                                 "duration": 0.1, "meta": {}})
        (event,) = await store.events(run.id)
        assert event.data["output"].startswith("x" * 100)
        assert "900 more characters not stored" in event.data["output"]
        assert event.data["output_truncated"] is True and event.data["output_chars"] == 1000


async def test_metrics_merge(store: RunStore) -> None:
    run = await store.create_run("swarm", "m", USER)
    await store.update_metrics(run.id, {"critical_steps": 3, "stages": [1, 2]})
    await store.finish(run.id, "completed", "answer", metrics={"parallelism": 4.5})
    await store.update_metrics(run.id, {"stages": None, "wall_time": 12.0})
    record = await store.get(run.id)
    assert record is not None
    assert record.metrics == {"critical_steps": 3, "parallelism": 4.5, "wall_time": 12.0}
    with pytest.raises(RunNotFound):
        await store.update_metrics("run_nope", {"a": 1})


async def test_the_sqlite_database_is_in_wal_mode(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "runs.sqlite3") as store:
        assert store.path is not None
    with sqlite3.connect(tmp_path / "runs.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4


async def test_an_in_memory_store_works() -> None:
    async with RunStore(":memory:") as store:
        run = await store.create_run("agent", "m", USER)
        await store.emit(run.id, "step", {"step": 1})
        await store.finish(run.id, "completed", "answer", "ok")
        assert [e.type for e in await store.events(run.id)] == ["step", "finished"]


def test_the_package_example_runs() -> None:
    failures, tried = doctest.testmod(kimi_modes.runs, verbose=False)
    assert tried > 0 and failures == 0


# -- concurrency ----------------------------------------------------------------------------


async def test_many_concurrent_runs_keep_their_own_order(store: RunStore,
                                                         tool_step: ToolStep) -> None:
    async def one(n: int) -> str:
        run = await store.create_run("agent", "m", [{"role": "user", "content": f"task {n}"}])
        await store.emit(run.id, "run_started", {})
        for step in range(1, 6):
            await tool_step(store, run.id, step)
            for token in ("a", "b", "c"):
                await store.emit(run.id, "message_delta",
                                 {"step": step, "kind": "content", "text": token})
                await asyncio.sleep(0)
        await store.finish(run.id, "completed", "answer", f"answer {n}",
                           {"prompt_tokens": n, "completion_tokens": n})
        return run.id

    ids = await asyncio.gather(*(one(n) for n in range(60)))
    assert len(set(ids)) == 60
    for n, run_id in enumerate(ids):
        events = await store.events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].type == "run_started" and events[-1].type == "finished"
        assert [e.data["step"] for e in events if e.type == "step"] == [1, 2, 3, 4, 5]
        content = "".join(e.data["text"] for e in events
                          if e.type == "message_delta" and e.data["kind"] == "content")
        assert content == "abc" * 5
        record = await store.get(run_id)
        assert record is not None and record.final_answer == f"answer {n}"
        assert record.step_count == 5 and record.tool_call_count == 5
    assert len(await store.list_runs(limit=100)) == 60


# -- close and reopen -------------------------------------------------------------------------


async def test_close_then_reopen_shows_unfinished_runs_interrupted(location: str,
                                                                   tool_step: ToolStep) -> None:
    path = location
    store = RunStore(path)
    await store.open()
    done = await store.create_run("agent", "m", USER)
    await store.finish(done.id, "completed", "answer", FINAL, USAGE)
    open_run = await store.create_run("agent", "m", USER)
    await store.emit(open_run.id, "run_started", {})
    await tool_step(store, open_run.id, 1)
    cancelled: list[str] = []
    store.register_cancel(open_run.id, lambda: cancelled.append("yes"))
    await store.close()
    assert cancelled == ["yes"]
    with pytest.raises(RunStoreClosed):
        await store.emit(open_run.id, "step", {"step": 2})
    assert await store.finish(open_run.id, "cancelled", "cancelled") is False

    async with RunStore(path) as again:
        finished = await again.get(done.id)
        assert finished is not None and finished.status == "completed"
        assert finished.final == FINAL and finished.usage == USAGE
        record = await again.get(open_run.id)
        assert record is not None
        assert record.status == "interrupted" and record.stop_reason == "interrupted"
        events = await again.events(open_run.id)
        assert [e.type for e in events] == ["run_started", "step", "message_delta",
                                            "tool_call", "tool_result", "finished"]
        assert events[-1].data["status"] == "interrupted"
        assert [e.seq for e in events] == list(range(1, 7))


# -- cancelling -------------------------------------------------------------------------------


async def test_cancel_calls_the_registered_callback(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER)

    async def work() -> None:
        try:
            await store.emit(run.id, "run_started", {})
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await store.finish(run.id, "cancelled", "cancelled")
            raise

    task = asyncio.create_task(work())
    store.register_cancel(run.id, task.cancel)
    await asyncio.sleep(0.02)
    assert store.is_live(run.id) and store.live_run_ids == [run.id]
    assert await store.wait(run.id, timeout=0.01) is False
    assert await store.cancel(run.id) is True
    assert await store.wait(run.id, timeout=5) is True
    assert task.cancelled()
    record = await store.get(run.id)
    assert record is not None and record.status == "cancelled"
    assert not store.is_live(run.id)
    assert await store.cancel(run.id) is False
    assert await store.wait(run.id) is True
    with pytest.raises(RunNotFound):
        await store.cancel("run_nope")
    with pytest.raises(RunNotFound):
        store.register_cancel(run.id, task.cancel)


async def test_cancel_before_registration_and_async_callbacks(store: RunStore) -> None:
    queued = await store.create_run("agent", "m", USER)  # e.g. a sub-agent waiting its turn
    assert await store.cancel(queued.id) is True
    called: list[str] = []

    async def stop() -> None:
        called.append("async")
        await store.finish(queued.id, "cancelled", "cancelled")

    store.register_cancel(queued.id, stop)
    assert await store.wait(queued.id, timeout=5) is True
    assert called == ["async"]

    failing = await store.create_run("agent", "m", USER)

    def broken() -> None:
        raise RuntimeError("callback bug")

    store.register_cancel(failing.id, broken)
    assert await store.cancel(failing.id) is True  # logged, not raised


async def test_a_finished_run_is_deleted_with_its_events_by_its_owner_only(
        store: RunStore) -> None:
    running = await store.create_run("agent", "m", USER, status="running", owner="alice")
    assert await store.delete(running.id) is False  # cancel it first
    await store.emit(running.id, "step", {"step": 0})
    await store.finish(running.id, "completed", "answer", "done")
    assert await store.delete(running.id, owner="bob") is False
    assert await store.get(running.id) is not None
    assert await store.delete(running.id, owner="alice") is True
    assert await store.get(running.id) is None
    assert await store.events(running.id) == []
    assert await store.delete(running.id) is False
