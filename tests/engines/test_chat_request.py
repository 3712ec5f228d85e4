"""The one request type's own rule: which ``thinking_effort`` an engine sends."""

from __future__ import annotations

from kimi_modes.engines.base import ChatRequest


def test_an_explicit_effort_is_sent_and_a_hint_only_where_it_is_taken() -> None:
    k3 = ("low", "high", "max")
    assert ChatRequest([], thinking_effort="max", effort_hint="low").effort(k3) == "max"
    assert ChatRequest([], thinking_effort="max").effort(()) == "max"  # the engine refuses it
    assert ChatRequest([], effort_hint="low").effort(k3) == "low"
    assert ChatRequest([], effort_hint="low").effort(()) is None  # K2.x: ignored
    assert ChatRequest([]).effort(k3) is None
