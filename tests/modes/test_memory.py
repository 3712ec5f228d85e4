"""The reasoning and transcript memories: scoped to the caller and the conversation, exact
or nothing, and indifferent to how a client re-serialises JSON."""

from __future__ import annotations

import json
from typing import Any

from kimi_modes.modes.memory import ReasoningMemory, TranscriptMemory, canonical_arguments

HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is the weather in Paris?"},
]


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


def test_dropped_reasoning_is_restored_in_the_same_conversation() -> None:
    memory = ReasoningMemory()
    memory.remember("alice", HISTORY, _answer())
    sent_back = _continued(_answer(reasoning=None))
    restored = memory.restore("alice", sent_back)
    assert restored[2]["reasoning_content"] == "need the weather"
    assert "reasoning_content" not in sent_back[2]  # the input is not mutated


def test_another_callers_identical_conversation_gets_nothing() -> None:
    # Kimi's ids repeat across conversations: the same id, name and arguments from another
    # API key must not receive the first caller's reasoning (it may hold a secret).
    memory = ReasoningMemory()
    memory.remember("alice", HISTORY, _answer("the password is hunter2"))
    restored = memory.restore("bob", _continued(_answer(reasoning=None)))
    assert "reasoning_content" not in restored[2]
    assert memory.restore(None, _continued(_answer(reasoning=None)))[2].get(
        "reasoning_content") is None


def test_another_conversation_of_the_same_caller_gets_nothing() -> None:
    memory = ReasoningMemory()
    memory.remember("alice", HISTORY, _answer())
    other_history = [{"role": "user", "content": "Weather in Paris, please"}]
    restored = memory.restore("alice", _continued(_answer(reasoning=None), other_history))
    assert "reasoning_content" not in restored[1]


def test_reasoning_given_by_the_client_wins() -> None:
    memory = ReasoningMemory()
    memory.remember("alice", HISTORY, _answer())
    restored = memory.restore("alice", _continued(_answer("client's own")))
    assert restored[2]["reasoning_content"] == "client's own"


def test_other_arguments_are_not_matched() -> None:
    memory = ReasoningMemory()
    memory.remember("alice", HISTORY, _answer())
    other = _answer(reasoning=None, args='{"city": "Lyon"}')
    assert "reasoning_content" not in memory.restore("alice", _continued(other))[2]


def test_re_serialised_arguments_still_match() -> None:
    # The engine produced compact JSON; LangChain sends json.dumps (spaces), the Vercel AI
    # SDK JSON.stringify (compact, its own key order), some clients an object.
    memory = ReasoningMemory()
    produced = '{"city":"Paris","units":{"temp":"C","wind":"kmh"}}'
    memory.remember("alice", HISTORY, _answer(args=produced))
    value = json.loads(produced)
    for args in (json.dumps(value), json.dumps(value, separators=(",", ":")),
                 json.dumps({"units": {"wind": "kmh", "temp": "C"}, "city": "Paris"}), value):
        restored = memory.restore("alice", _continued(_answer(reasoning=None, args=args)))
        assert restored[2]["reasoning_content"] == "need the weather", args


def test_history_content_as_text_parts_still_matches() -> None:
    memory = ReasoningMemory()
    memory.remember("alice", HISTORY, _answer())
    as_parts = [HISTORY[0], {"role": "user", "content": [
        {"type": "text", "text": "What is the weather in Paris?"}]}]
    restored = memory.restore("alice", _continued(_answer(reasoning=None), as_parts))
    assert restored[2]["reasoning_content"] == "need the weather"


def test_canonical_arguments() -> None:
    assert canonical_arguments('{ "b" : 1, "a": [1, 2] }') == '{"a":[1,2],"b":1}'
    assert canonical_arguments({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert canonical_arguments(" not json ") == "not json"


def test_capacity_is_bounded() -> None:
    memory = ReasoningMemory(capacity=3)
    for i in range(10):
        memory.remember("alice", HISTORY, _answer(f"r{i}", call_id=f"functions.get_weather:{i}"))
    assert len(memory) == 3


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


def test_transcript_memory_splices_the_hidden_steps_back() -> None:
    memory = TranscriptMemory()
    memory.remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    restored = memory.restore("alice", _agent_continuation())
    assert [m["role"] for m in restored] == ["user", "assistant", "tool", "tool"]
    assert restored[1]["tool_calls"] == [SERVER_CALL, CLIENT_CALL]
    assert restored[2]["content"] == "2" and restored[3]["content"] == "found"


def test_transcript_is_not_spliced_into_another_callers_or_conversation() -> None:
    memory = TranscriptMemory()
    memory.remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    for owner, task in (("bob", TASK), (None, TASK),
                        ("alice", [{"role": "user", "content": "another task"}])):
        sent = _agent_continuation(task)
        assert memory.restore(owner, sent) == sent, (owner, task)


def test_transcript_splices_in_a_later_turn_of_the_same_conversation() -> None:
    memory = TranscriptMemory()
    memory.remember("alice", TASK, [CLIENT_CALL], HIDDEN)
    later = [*_agent_continuation(), {"role": "assistant", "content": "done"},
             {"role": "user", "content": "thanks"}]
    restored = memory.restore("alice", later)
    assert [m["role"] for m in restored] == ["user", "assistant", "tool", "tool",
                                             "assistant", "user"]
