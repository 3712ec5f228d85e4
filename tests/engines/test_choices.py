"""engines/choices.py: several choices from an engine that makes one per call, the usage of
several choices, and the completions API's logprobs in the chat shape."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

import pytest

from kimi_modes.engines.base import ChatRequest, Choice, Event, Finish, UpstreamRejected, Usage
from kimi_modes.engines.choices import fan_out, from_completion, summed, token_logprob
from kimi_modes.engines.scripted import ScriptedEngine
from kimi_modes.protocol.deltas import ContentDelta

ASK = ChatRequest(messages=[{"role": "user", "content": "hi"}], seed=10)


async def test_fan_out_asks_once_per_choice_and_sums_the_usage() -> None:
    engine = ScriptedEngine([ContentDelta("a"), Usage(4, 2, 1), Finish("stop")],
                            [ContentDelta("b"), Usage(4, 3, 0), Finish("length")])
    events: list[Event] = [e async for e in fan_out(engine.stream, replace(ASK, n=2))]
    assert events == [Choice(0), ContentDelta("a"), Finish("stop"),
                      Choice(1), ContentDelta("b"), Finish("length"), Usage(4, 5, 1)]
    assert [(r.n, r.seed) for r in engine.requests] == [(1, 10), (1, 11)]
    refused = fan_out(_refusing, replace(ASK, n=2))
    with pytest.raises(UpstreamRejected):  # before any event: the server can answer a 400
        await anext(refused)
    one = ScriptedEngine([ContentDelta("x"), Finish("stop")])
    assert [e async for e in fan_out(one.stream, ASK)] == [ContentDelta("x"), Finish("stop")]


async def _refusing(request: ChatRequest) -> AsyncGenerator[Event, None]:
    raise UpstreamRejected("up", "no")
    yield ContentDelta("never")


def test_usage_of_several_choices_is_unknown_if_one_is() -> None:
    assert summed([Usage(4, 2), None]) is None
    assert summed([Usage(4, 2, None), Usage(4, 1, 1)]) == Usage(4, 3, None)


def test_completion_logprobs_become_chat_entries() -> None:
    got = from_completion({"tokens": ["Hé", "!"], "token_logprobs": [-0.1, None],
                           "top_logprobs": [{"Hé": -0.1, "Ho": -3.0, "Ha": -2.0}, None]}, 2)
    assert got == [token_logprob("Hé", -0.1, [("Hé", -0.1), ("Ha", -2.0)])]
    assert got[0]["bytes"] == list("Hé".encode())
    assert from_completion(None, 3) == []
