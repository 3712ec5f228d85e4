"""The reasoning and transcript memories: scoped to the caller and the conversation, exact
or nothing, and indifferent to how a client re-serialises JSON. Every test taking ``backing``
is the contract each place a memory can live meets: this process alone, a SQLite run store,
a PostgreSQL run store; with a store, the memory is shared by every process on it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.modes.memory import ReasoningMemory, TranscriptMemory, canonical_arguments
from kimi_modes.runs import Memories, RunStore

HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is the weather in Paris?"},
]

#: ``await open_store()``: another open store on the same database (another process).
OpenStore = Callable[[], Awaitable[RunStore]]


async def _stores(request: pytest.FixtureRequest, tmp_path: Path,
                  backend: str) -> AsyncIterator[OpenStore]:
    location = str(tmp_path / "runs.sqlite3")
    if backend == "postgres":
        location = request.getfixturevalue("postgres").new_database()
    opened: list[RunStore] = []

    async def open_store() -> RunStore:
        store = RunStore(location)
        await store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """``open_store()`` opens a store on one fresh database (a SQLite file, or a PostgreSQL
    database) each time it is called, like another process would; all are closed after the
    test."""
    async for open_store in _stores(request, tmp_path, request.param):
        yield open_store


@pytest.fixture(params=["process", "sqlite", "postgres"])
async def backing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[
        Memories | None]:
    """Where the memories under test keep their entries: ``None`` (this process only), or a
    run store's memories (on each backend)."""
    if request.param == "process":
        yield None
        return
    async for open_store in _stores(request, tmp_path, request.param):
        yield (await open_store()).memories


def _answer(reasoning: str | None = "need the weather", args: Any = '{"city": "Paris"}',
            call_id: str = "functions.get_weather:0") -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": "get_weather", "arguments": args}}],
    }
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return message


def _continued(answer: dict[str, Any], history: list[dict[str, Any]] = HISTORY
               ) -> list[dict[str, Any]]:
    return [*history, answer,
            {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny"}]


async def test_dropped_reasoning_is_restored_in_the_same_conversation(
        backing: Memories | None) -> None:
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer())
    sent_back = _continued(_answer(reasoning=None))
    restored = await memory.restore("alice", sent_back)
    assert restored[2]["reasoning_content"] == "need the weather"
    assert "reasoning_content" not in sent_back[2]  # the input is not mutated


async def test_another_callers_identical_conversation_gets_nothing(
        backing: Memories | None) -> None:
    # Kimi's ids repeat across conversations: the same id, name and arguments from another
    # API key must not receive the first caller's reasoning (it may hold a secret).
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer("the password is hunter2"))
    restored = await memory.restore("bob", _continued(_answer(reasoning=None)))
    assert "reasoning_content" not in restored[2]
    assert (await memory.restore(None, _continued(_answer(reasoning=None))))[2].get(
        "reasoning_content") is None


async def test_another_conversation_of_the_same_caller_gets_nothing(
        backing: Memories | None) -> None:
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer())
    other_history = [{"role": "user", "content": "Weather in Paris, please"}]
    restored = await memory.restore("alice", _continued(_answer(reasoning=None), other_history))
    assert "reasoning_content" not in restored[1]


async def test_reasoning_given_by_the_client_wins(
        backing: Memories | None) -> None:
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer())
    restored = await memory.restore("alice", _continued(_answer("client's own")))
    assert restored[2]["reasoning_content"] == "client's own"


async def test_other_arguments_are_not_matched(
        backing: Memories | None) -> None:
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer())
    other = _answer(reasoning=None, args='{"city": "Lyon"}')
    assert "reasoning_content" not in (await memory.restore("alice", _continued(other)))[2]


async def test_re_serialised_arguments_still_match(
        backing: Memories | None) -> None:
    # The engine produced compact JSON; LangChain sends json.dumps (spaces), the Vercel AI
    # SDK JSON.stringify (compact, its own key order), some clients an object.
    memory = ReasoningMemory(backing)
    produced = '{"city":"Paris","units":{"temp":"C","wind":"kmh"}}'
    await memory.remember("alice", HISTORY, _answer(args=produced))
    value = json.loads(produced)
    for args in (json.dumps(value), json.dumps(value, separators=(",", ":")),
                 json.dumps({"units": {"wind": "kmh", "temp": "C"}, "city": "Paris"}), value):
        restored = await memory.restore("alice", _continued(_answer(reasoning=None, args=args)))
        assert restored[2]["reasoning_content"] == "need the weather", args


async def test_history_content_as_text_parts_still_matches(
        backing: Memories | None) -> None:
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer())
    as_parts = [HISTORY[0], {"role": "user", "content": [
        {"type": "text", "text": "What is the weather in Paris?"}]}]
    restored = await memory.restore("alice", _continued(_answer(reasoning=None), as_parts))
    assert restored[2]["reasoning_content"] == "need the weather"


def test_canonical_arguments() -> None:
    assert canonical_arguments('{ "b" : 1, "a": [1, 2] }') == '{"a":[1,2],"b":1}'
    assert canonical_arguments({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert canonical_arguments(" not json ") == "not json"


async def test_the_oldest_entries_are_evicted_beyond_the_limit(
        backing: Memories | None) -> None:
    memory = ReasoningMemory(backing, limit=3)
    for i in range(10):
        await memory.remember("alice", HISTORY, _answer(f"r{i}",
                                                        call_id=f"functions.get_weather:{i}"))
    kept = []
    for i in range(10):
        sent = _continued(_answer(None, call_id=f"functions.get_weather:{i}"))
        kept.append((await memory.restore("alice", sent))[2].get("reasoning_content"))
    assert kept == [None] * 7 + ["r7", "r8", "r9"]


async def test_an_entry_never_changes(backing: Memories | None) -> None:
    # The same caller got the very same tool call in the very same conversation twice: the
    # first reasoning stays (so a copy cached by any process is never out of date).
    memory = ReasoningMemory(backing)
    await memory.remember("alice", HISTORY, _answer("first"))
    await memory.remember("alice", HISTORY, _answer("second"))
    restored = await memory.restore("alice", _continued(_answer(reasoning=None)))
    assert restored[2]["reasoning_content"] == "first"


async def test_a_memory_on_a_store_is_shared_by_every_process_on_it(
        stores: OpenStore) -> None:
    here, there = await stores(), await stores()  # two processes on one database
    await ReasoningMemory(here.memories).remember("alice", HISTORY, _answer())
    await TranscriptMemory(here.memories).remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    # A memory that never saw the entries (an empty cache) finds them in the store.
    restored = await ReasoningMemory(there.memories).restore(
        "alice", _continued(_answer(reasoning=None)))
    assert restored[2]["reasoning_content"] == "need the weather"
    spliced = await TranscriptMemory(there.memories).restore("alice", _agent_continuation())
    assert spliced[1]["tool_calls"] == [SERVER_CALL, CLIENT_CALL]
    # ... and still only for the same caller and conversation.
    other = await ReasoningMemory(there.memories).restore(
        "bob", _continued(_answer(reasoning=None)))
    assert "reasoning_content" not in other[2]


async def test_nothing_to_restore_never_reaches_the_store(
        stores: OpenStore, caplog: pytest.LogCaptureFixture) -> None:
    store = await stores()
    reasoning, transcripts = ReasoningMemory(store.memories), TranscriptMemory(store.memories)
    await store.close()  # every query would fail now, and say so in the log
    caplog.set_level(logging.WARNING, "kimi_modes.memory")
    plain = [*HISTORY, {"role": "assistant", "content": "Sunny."},
             {"role": "user", "content": "Thanks"}]
    with_reasoning = _continued(_answer("the client kept it"))
    assert await reasoning.restore("alice", plain) == plain
    assert await reasoning.restore("alice", with_reasoning) == with_reasoning
    assert await transcripts.restore("alice", plain) == plain
    await reasoning.remember("alice", HISTORY, {"role": "assistant", "content": "Sunny."})
    assert caplog.records == []
    # A message that needs the store: a failed read restores nothing and is logged.
    assert "reasoning_content" not in (await reasoning.restore(
        "alice", _continued(_answer(reasoning=None))))[2]
    assert "could not be read" in caplog.text


async def test_a_failed_write_is_kept_in_this_process(stores: OpenStore,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = await stores()
    memory = ReasoningMemory(store.memories)
    await store.close()
    caplog.set_level(logging.WARNING, "kimi_modes.memory")
    await memory.remember("alice", HISTORY, _answer())
    assert "could not be written" in caplog.text
    restored = await memory.restore("alice", _continued(_answer(reasoning=None)))
    assert restored[2]["reasoning_content"] == "need the weather"


CLIENT_CALL = {"id": "functions.lookup:1", "type": "function",
               "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
SERVER_CALL = {"id": "functions.python:0", "type": "function",
               "function": {"name": "python", "arguments": '{"code": "1+1"}'}}
HIDDEN = [
    {"role": "assistant", "content": "", "reasoning_content": "r",
     "tool_calls": [SERVER_CALL, CLIENT_CALL]},
    {"role": "tool", "tool_call_id": "functions.python:0", "content": "2"},
]
TASK = [{"role": "user", "content": "task"}]


def _agent_continuation(task: list[dict[str, Any]] = TASK) -> list[dict[str, Any]]:
    return [*task,
            {"role": "assistant", "content": "partial text", "tool_calls": [CLIENT_CALL]},
            {"role": "tool", "tool_call_id": "functions.lookup:1", "content": "found"}]


async def test_transcript_memory_splices_the_hidden_steps_back(
        backing: Memories | None) -> None:
    memory = TranscriptMemory(backing)
    await memory.remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    restored = await memory.restore("alice", _agent_continuation())
    assert [m["role"] for m in restored] == ["user", "assistant", "tool", "tool"]
    assert restored[1]["tool_calls"] == [SERVER_CALL, CLIENT_CALL]
    assert restored[2]["content"] == "2" and restored[3]["content"] == "found"


async def test_transcript_is_not_spliced_into_another_callers_or_conversation(
        backing: Memories | None) -> None:
    memory = TranscriptMemory(backing)
    await memory.remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    for owner, task in (("bob", TASK), (None, TASK),
                        ("alice", [{"role": "user", "content": "another task"}])):
        sent = _agent_continuation(task)
        assert await memory.restore(owner, sent) == sent, (owner, task)


async def test_transcript_splices_in_a_later_turn_of_the_same_conversation(
        backing: Memories | None) -> None:
    memory = TranscriptMemory(backing)
    await memory.remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    later = [*_agent_continuation(), {"role": "assistant", "content": "done"},
             {"role": "user", "content": "thanks"}]
    restored = await memory.restore("alice", later)
    assert [m["role"] for m in restored] == ["user", "assistant", "tool", "tool",
                                             "assistant", "user"]
