"""The one rendering of run events into chat deltas."""

from __future__ import annotations

from kimi_modes.modes.agent.progress import PROGRESS_RESULT_CHARS, ChatView, run_line
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta


def test_steps_text_is_content_separated_by_a_blank_line() -> None:
    view = ChatView()
    out = [d for kind, data in [
        ("message_delta", {"step": 1, "kind": "content", "text": "Let me look."}),
        ("message_delta", {"step": 1, "kind": "reasoning", "text": "hm"}),
        ("message_delta", {"step": 2, "kind": "content", "text": "Done."}),
    ] for d in view.translate(kind, data)]
    assert out == [ContentDelta("Let me look."), ReasoningDelta("hm"),
                   ContentDelta("\n\nDone.")]


def test_server_tool_calls_and_results_are_reasoning_lines_client_calls_are_not() -> None:
    view = ChatView()
    call = {"step": 1, "id": "functions.python:0", "name": "python",
            "arguments": '{"code": "1"}'}
    assert view.translate("tool_call", call) == [
        ReasoningDelta('\n[tool] python({"code": "1"})\n')]
    assert view.translate("tool_call", {**call, "client": True}) == []
    long = "x" * (PROGRESS_RESULT_CHARS + 10)
    [result] = view.translate("tool_result", {"output": long, "is_error": True})
    assert isinstance(result, ReasoningDelta)
    assert result.text == f"[error] {'x' * PROGRESS_RESULT_CHARS} …\n"


def test_swarm_events_and_unknown_ones() -> None:
    view = ChatView()
    assert view.translate("fanout", {"step": 1, "subagents": [{}, {}]}) == [
        ReasoningDelta("[swarm] 2 sub-agents started\n")]
    finished = {"index": 0, "status": "completed", "steps": 3, "duration": 1.25,
                "answer": "42", "error": None}
    assert view.translate("subagent_finished", finished) == [
        ReasoningDelta("[sub-agent 1 done, 3 steps, 1.2 s] 42\n")]
    assert view.translate("checkpoint", {"step": 1, "messages": []}) == []
    assert run_line("agent", "run_1").text.startswith("[agent run run_1: GET /v1/runs/run_1")
