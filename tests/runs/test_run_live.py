"""Live delivery (runs/live.py) through a real store: coalesced text deltas, subscriptions
that replay then follow, slow subscribers, keep-alive timeouts, and the store closing under
its watchers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kimi_modes.runs import RunEvent, RunNotFound, RunStore, Subscription

USER = [{"role": "user", "content": "What is 2+2? Use the calculator."}]

ToolStep = Callable[[RunStore, str, int], Awaitable[None]]


async def _drain(sub: Subscription) -> list[RunEvent]:
    return [event async for event in sub]


async def _collect(store: RunStore, run_id: str, after: int = 0) -> list[RunEvent]:
    async with await store.subscribe(run_id, after) as sub:
        return await _drain(sub)


# -- coalescing ---------------------------------------------------------------------------


async def test_deltas_are_joined_and_flushed_in_order(location: str) -> None:
    async with RunStore(location, delta_interval=60) as store:
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


async def test_deltas_flush_after_the_interval_and_past_the_size(location: str) -> None:
    async with RunStore(location, delta_interval=0.3, delta_max_chars=50) as store:
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


async def test_many_deltas_make_few_rows(location: str) -> None:
    async with RunStore(location, delta_interval=0.05) as store:
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


# -- subscriptions ---------------------------------------------------------------------------


async def test_subscribe_replays_then_follows_live(store: RunStore, tool_step: ToolStep) -> None:
    run = await store.create_run("agent", "m", USER)
    await store.emit(run.id, "run_started", {})
    await tool_step(store, run.id, 1)
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


async def test_a_slow_subscriber_misses_nothing(location: str) -> None:
    async with RunStore(location, queue_limit=5) as store:
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


async def test_closing_the_store_ends_subscriptions(location: str) -> None:
    store = RunStore(location)
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
