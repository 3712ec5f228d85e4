"""Session ids for routers: stable per caller and conversation, computed on the canonical
form; and the engine wrapper that stamps them on every model call of a run."""

from __future__ import annotations

from kimi_modes.engines.base import ChatRequest, Finish
from kimi_modes.engines.scripted import ScriptedEngine
from kimi_modes.modes.session import SessionEngine, conversation_session_id

OPENING = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Plan a trip."},
]


def test_every_turn_of_a_conversation_has_one_id_and_callers_never_share_one() -> None:
    first = conversation_session_id("alice", OPENING)
    later = conversation_session_id("alice", [
        *OPENING,
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "functions.search:0", "type": "function",
            "function": {"name": "search", "arguments": '{"q": "trains"}'}}]},
        {"role": "tool", "tool_call_id": "functions.search:0", "content": "..."},
        {"role": "user", "content": "Shorter."},
    ])
    assert first == later and len(first) == 32
    # A client that re-serialises (whitespace, text parts) stays in its conversation.
    reserialised = [{"role": "system", "content": [{"type": "text", "text": " Be brief. "}]},
                    {"role": "user", "content": "Plan a trip.\n"}]
    assert conversation_session_id("alice", reserialised) == first
    assert conversation_session_id("bob", OPENING) != first
    assert conversation_session_id(None, OPENING) != first
    other = [OPENING[0], {"role": "user", "content": "Plan a dinner."}]
    assert conversation_session_id("alice", other) != first


async def test_the_wrapper_stamps_every_request_and_keeps_what_it_does_not_set() -> None:
    engine = ScriptedEngine([Finish("stop")], name="pool")
    stamped = SessionEngine(engine, session_id="run_1", objective="batch")
    assert stamped.name == "pool"
    for _ in range(2):
        events = [e async for e in stamped.stream(ChatRequest(messages=OPENING))]
        assert events == [Finish("stop")]
    assert [(r.session_id, r.objective) for r in engine.requests] == [("run_1", "batch")] * 2
    keep = SessionEngine(engine, session_id=None, objective=None)
    _ = [e async for e in keep.stream(ChatRequest(messages=OPENING, session_id="s",
                                                  objective="o"))]
    assert (engine.requests[-1].session_id, engine.requests[-1].objective) == ("s", "o")
    await stamped.aclose()
    assert not engine.closed  # the wrapper owns nothing
