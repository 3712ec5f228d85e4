"""The memories table of the run store (runs/memories.py), on both backends: entries never
change, each kind is bounded by count with the oldest evicted, kinds are apart, many keys are
read at once, and another store on the same database sees every committed entry."""

from __future__ import annotations

from kimi_modes.runs import RunStore


async def test_the_first_value_written_is_kept(store: RunStore) -> None:
    memories = store.memories
    assert await memories.remember("reasoning", "k", "first", limit=10) == "first"
    assert await memories.remember("reasoning", "k", "second", limit=10) == "first"
    assert await memories.recall("reasoning", ["k"]) == {"k": "first"}


async def test_each_kind_keeps_its_newest_entries(store: RunStore) -> None:
    memories = store.memories
    for i in range(6):
        await memories.remember("reasoning", f"r{i}", i, limit=4)
    await memories.remember("transcript", "r0", [{"role": "tool", "content": "x"}], limit=4)
    keys = [f"r{i}" for i in range(6)]
    assert await memories.recall("reasoning", keys) == {"r2": 2, "r3": 3, "r4": 4, "r5": 5}
    assert await memories.recall("transcript", keys) == {
        "r0": [{"role": "tool", "content": "x"}]}
    assert await memories.recall("reasoning", []) == {}


async def test_another_store_on_the_database_sees_committed_entries(location: str) -> None:
    async with RunStore(location) as one, RunStore(location) as other:
        await one.memories.remember("reasoning", "k", {"text": "r"}, limit=10)
        assert await other.memories.recall("reasoning", ["k", "k", "missing"]) == {
            "k": {"text": "r"}}
