"""RunStore against a real SQLite file: persistence, seq order, coalescing, concurrency,
restarts (clean and crashed), subscriptions and the cancel registry."""

from __future__ import annotations

import asyncio
import doctest
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import kimi_modes.runs
from kimi_modes.runs import RunEvent, RunNotFound, RunStore, RunStoreClosed, Subscription

USER = [{"role": "user", "content": "What is 2+2? Use the calculator."}]
FINAL = {"role": "assistant", "content": "4", "reasoning_content": "easy"}
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "reasoning_tokens": 10}


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


async def _drain(sub: Subscription) -> list[RunEvent]:
    return [event async for event in sub]


async def _collect(store: RunStore, run_id: str, after: int = 0) -> list[RunEvent]:
    async with await store.subscribe(run_id, after) as sub:
        return await _drain(sub)


# -- the basics ---------------------------------------------------------------------------


async def test_a_run_is_stored_with_its_events_and_end(store: RunStore) -> None:
    run = await store.create_run("agent", "kimi-k2.5-agent", USER, {"max_steps": 5})
    assert run.id.startswith("run_") and run.status == "queued" and run.started_at is None
    assert run.task == "What is 2+2? Use the calculator."
    await store.emit(run.id, "run_started", {"workspace": "/tmp/w"})
    running = await store.get(run.id)
    assert running is not None and running.status == "running"
    assert running.started_at is not None
    await _tool_step(store, run.id, 1)
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
    listed = await store.list()
    assert [r.id for r in listed] == [c.id for c in reversed(children)] + [parent.id]
    assert [r.id for r in await store.list(limit=2, offset=1)] == [children[1].id,
                                                                   children[0].id]
    failed = await store.list(status="failed")
    assert [r.id for r in failed] == [children[0].id] and failed[0].error == "boom"
    assert {r.id for r in await store.list(parent_id=parent.id)} == {c.id for c in children}
    assert [r.id for r in await store.list(mode="swarm")] == [parent.id]
    assert not hasattr(listed[0], "messages")  # summaries stay small
    with pytest.raises(ValueError, match="unknown status"):
        await store.list(status="done")


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


async def test_long_tool_output_is_stored_shortened(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "r.db", output_limit=100) as store:
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


async def test_the_database_is_in_wal_mode(store: RunStore) -> None:
    assert store.path is not None
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


async def test_an_in_memory_store_works(tmp_path: Path) -> None:
    async with RunStore(":memory:") as store:
        run = await store.create_run("agent", "m", USER)
        await store.emit(run.id, "step", {"step": 1})
        await store.finish(run.id, "completed", "answer", "ok")
        assert [e.type for e in await store.events(run.id)] == ["step", "finished"]


def test_the_package_example_runs() -> None:
    failures, tried = doctest.testmod(kimi_modes.runs, verbose=False)
    assert tried > 0 and failures == 0


# -- coalescing ---------------------------------------------------------------------------


async def test_deltas_are_joined_and_flushed_in_order(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "r.db", delta_interval=60) as store:
        run = await store.create_run("agent", "m", USER)
        tokens = [f"t{i} " for i in range(200)]
        for token in tokens[:100]:
            await store.emit(run.id, "message_delta",
                             {"step": 1, "kind": "reasoning", "text": token})
        for token in tokens[100:]:  # a change of kind closes the reasoning chunk
            await store.emit(run.id, "message_delta",
                             {"step": 1, "kind": "content", "text": token})
        await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": "a"})
        await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": ""})
        # Any other event stores the pending text first: the log keeps emission order.
        await store.emit(run.id, "tool_call", {"step": 2, "id": "c", "name": "n",
                                               "arguments": "{}"})
        await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": "b"})
        await store.finish(run.id, "completed", "answer", "ab")
        events = await store.events(run.id)
    assert [(e.type, e.data.get("kind"), e.data.get("step")) for e in events] == [
        ("message_delta", "reasoning", 1), ("message_delta", "content", 1),
        ("message_delta", "content", 2), ("tool_call", None, 2),
        ("message_delta", "content", 2), ("finished", None, None)]
    assert events[0].data["text"] == "".join(tokens[:100])
    assert events[1].data["text"] == "".join(tokens[100:])
    assert [e.data.get("text") for e in events[2:5]] == ["a", None, "b"]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]


async def test_deltas_flush_after_the_interval_and_past_the_size(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "r.db", delta_interval=0.3, delta_max_chars=50) as store:
        run = await store.create_run("agent", "m", USER)
        await store.emit(run.id, "message_delta", {"step": 1, "kind": "content", "text": "hi"})
        await asyncio.sleep(0.05)
        assert await store.events(run.id) == []
        await asyncio.sleep(0.5)
        (event,) = await store.events(run.id)
        assert event.data["text"] == "hi"
        for _ in range(10):  # 60 characters: flushed at 50 without waiting for the interval
            await store.emit(run.id, "message_delta",
                             {"step": 1, "kind": "content", "text": "x" * 6})
        await asyncio.sleep(0.1)
        events = await store.events(run.id)
        assert [len(e.data["text"]) for e in events] == [2, 54]


async def test_many_deltas_make_few_rows(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "r.db", delta_interval=0.05) as store:
        run = await store.create_run("agent", "m", USER)
        for i in range(2000):
            await store.emit(run.id, "message_delta",
                             {"step": 1, "kind": "content", "text": f"{i},"})
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        await store.finish(run.id, "completed", "answer")
        events = await store.events(run.id)
    deltas = [e for e in events if e.type == "message_delta"]
    assert "".join(e.data["text"] for e in deltas) == "".join(f"{i}," for i in range(2000))
    assert len(deltas) < 40


# -- concurrency ----------------------------------------------------------------------------


async def test_many_concurrent_runs_keep_their_own_order(store: RunStore) -> None:
    async def one(n: int) -> str:
        run = await store.create_run("agent", "m", [{"role": "user", "content": f"task {n}"}])
        await store.emit(run.id, "run_started", {})
        for step in range(1, 6):
            await _tool_step(store, run.id, step)
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
    assert len(await store.list(limit=100)) == 60


# -- restarts ---------------------------------------------------------------------------------


async def test_close_then_reopen_shows_unfinished_runs_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    store = RunStore(path)
    await store.open()
    done = await store.create_run("agent", "m", USER)
    await store.finish(done.id, "completed", "answer", FINAL, USAGE)
    open_run = await store.create_run("agent", "m", USER)
    await store.emit(open_run.id, "run_started", {})
    await _tool_step(store, open_run.id, 1)
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


_CRASH = textwrap.dedent("""
    import asyncio, os, sys
    from kimi_modes.runs import RunStore

    async def main():
        store = RunStore(sys.argv[1], delta_interval=0.01)
        await store.open()
        done = await store.create_run("agent", "m", [{"role": "user", "content": "a"}])
        await store.finish(done.id, "completed", "answer", "fine")
        run = await store.create_run("agent", "m", [{"role": "user", "content": "b"}])
        await store.emit(run.id, "run_started", {})
        await store.emit(run.id, "step", {"step": 1})
        await store.emit(run.id, "message_delta", {"step": 1, "kind": "content", "text": "x"})
        await asyncio.sleep(0.2)
        await store.emit(run.id, "tool_call", {"step": 1, "id": "c", "name": "n",
                                               "arguments": "{}"})
        print(done.id, run.id, flush=True)
        os._exit(0)  # no close(): a crash

    asyncio.run(main())
""")


async def test_a_crashed_process_leaves_its_runs_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _CRASH, str(path)],
                                   capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    done_id, run_id = proc.stdout.split()
    async with RunStore(path) as store:
        done = await store.get(done_id)
        assert done is not None and done.status == "completed" and done.final_answer == "fine"
        record = await store.get(run_id)
        assert record is not None and record.status == "interrupted"
        assert record.finished_at is not None
        events = await store.events(run_id)
        assert [e.type for e in events] == ["run_started", "step", "message_delta",
                                            "tool_call", "finished"]
    # The dead process's lock file was swept; ours went with close().
    assert list((tmp_path / "runs.sqlite3.owners").glob("*.lock")) == []


async def test_runs_of_another_open_store_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path) as gateway:
        run = await gateway.create_run("agent", "m", USER)
        await gateway.emit(run.id, "run_started", {})
        async with RunStore(path) as terminal:  # e.g. `kimi-modes run` beside the gateway
            assert await terminal.status(run.id) == "running"
            # The other process sees the run but cannot cancel it from here.
            assert await terminal.cancel(run.id) is False
        await gateway.emit(run.id, "step", {"step": 1})
        assert await gateway.finish(run.id, "completed", "answer", "ok")


async def test_another_process_follows_a_run_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path) as owner, RunStore(path, poll_interval=0.05) as watcher:
        run = await owner.create_run("agent", "m", USER)
        await owner.emit(run.id, "run_started", {})
        task = asyncio.create_task(_collect(watcher, run.id))
        await asyncio.sleep(0.1)
        await owner.emit(run.id, "step", {"step": 1})
        await owner.finish(run.id, "completed", "answer", "ok")
        seen = await asyncio.wait_for(task, 30)  # a hang guard, generous under load
    assert [e.type for e in seen] == ["run_started", "step", "finished"]


# -- subscriptions ---------------------------------------------------------------------------


async def test_subscribe_replays_then_follows_live(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER)
    await store.emit(run.id, "run_started", {})
    await _tool_step(store, run.id, 1)
    early = asyncio.create_task(_collect(store, run.id))
    late = asyncio.create_task(_collect(store, run.id, after=3))
    await asyncio.sleep(0.05)
    await store.emit(run.id, "step", {"step": 2})
    for token in "hello":
        await store.emit(run.id, "message_delta", {"step": 2, "kind": "content",
                                                   "text": token})
    await asyncio.sleep(0.15)  # the delta chunk goes out live before the run ends
    await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": "!"})
    await store.finish(run.id, "completed", "answer", "hello!")
    stored = await store.events(run.id)
    first, second = await asyncio.wait_for(asyncio.gather(early, late), 5)
    assert first == stored
    assert second == stored[3:]
    assert [e.data.get("text") for e in stored if e.type == "message_delta"][-2:] == [
        "hello", "!"]
    assert store.subscriber_count() == 0
    # A finished run replays and ends.
    assert await _collect(store, run.id, after=len(stored) - 1) == stored[-1:]
    assert await _collect(store, run.id, after=len(stored)) == []
    with pytest.raises(RunNotFound):
        await store.subscribe("run_nope")


async def test_live_events_reach_a_subscriber_as_they_happen(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER)
    async with await store.subscribe(run.id) as sub:
        await store.emit(run.id, "tool_call", {"step": 1, "id": "c", "name": "n",
                                               "arguments": "{}"})
        event = await sub.next_event(timeout=1)
        assert event is not None and event.type == "tool_call"
        await store.emit(run.id, "message_delta", {"step": 1, "kind": "content", "text": "x"})
        event = await sub.next_event(timeout=1)  # within delta_interval (0.05 s)
        assert event is not None and event.data["text"] == "x"


async def test_a_slow_subscriber_misses_nothing(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "r.db", queue_limit=5) as store:
        run = await store.create_run("agent", "m", USER)
        sub = await store.subscribe(run.id)
        for i in range(1, 101):  # nobody reads meanwhile: the queue overflows many times
            await store.emit(run.id, "step", {"step": i})
        await store.finish(run.id, "completed", "answer")
        got = await _drain(sub)
        assert [e.seq for e in got] == list(range(1, 102))
        assert got[-1].type == "finished"


async def test_next_event_times_out_and_keeps_its_place(store: RunStore) -> None:
    run = await store.create_run("agent", "m", USER)
    async with await store.subscribe(run.id) as sub:
        assert await sub.next_event(timeout=0.05) is None
        await store.emit(run.id, "step", {"step": 1})
        event = await sub.next_event(timeout=1)
        assert event is not None and event.seq == 1
        # Cancelling a wait is harmless too.
        waiter = asyncio.create_task(sub.next_event())
        await asyncio.sleep(0.02)
        waiter.cancel()
        await store.emit(run.id, "step", {"step": 2})
        event = await sub.next_event(timeout=1)
        assert event is not None and event.seq == 2
        assert store.subscriber_count(run.id) == 1
    assert store.subscriber_count(run.id) == 0


async def test_closing_the_store_ends_subscriptions(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r.db")
    await store.open()
    run = await store.create_run("agent", "m", USER)
    await store.emit(run.id, "run_started", {})
    sub = await store.subscribe(run.id)
    reader = asyncio.create_task(_drain(sub))
    await asyncio.sleep(0.05)
    await store.close()
    events = await asyncio.wait_for(reader, 5)
    assert [e.type for e in events] == ["run_started", "finished"]
    assert events[-1].data["status"] == "interrupted"


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
