"""The one rendering of a run's events into chat deltas (how Agent and Swarm modes look on
``/v1/chat/completions`` and ``/v1/messages``).

The model's reasoning streams as reasoning; progress (each server tool call and a short
result, compactions, retried steps, fan-outs and each sub-agent's end) as reasoning lines too
(``[tool] python({...})``, ``[result] 42``); the text of every step as content, steps
separated by a blank line. Calls of tools the client declared are not shown here: they come
back as ordinary tool calls when the run pauses. Events of other types show nothing.

These lines are for people watching a chat; they are not the model's reasoning, so nothing
here is ever remembered as reasoning to give back to a model.
"""

from __future__ import annotations

from typing import Any

from kimi_modes.engines.base import Event
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta

#: Tool results and sub-agent answers are cut to this many characters in progress lines.
PROGRESS_RESULT_CHARS = 300


def run_line(mode: str, run_id: str) -> ReasoningDelta:
    """The first line of a run's chat stream: where to watch it."""
    return ReasoningDelta(f"[{mode} run {run_id}: GET /v1/runs/{run_id}/events to watch, "
                          f"/ui/runs/{run_id} in a browser]\n")


class ChatView:
    """Run events → chat deltas, for one run (it tracks which step's text came last)."""

    def __init__(self) -> None:
        self._content_step: int | None = None

    def translate(self, kind: str, data: dict[str, Any]) -> list[Event]:
        """The deltas showing the event ``kind`` with ``data`` (possibly none)."""
        if kind == "message_delta" and data["kind"] == "content":
            text = data["text"]
            if self._content_step is not None and self._content_step != data["step"]:
                text = "\n\n" + text
            self._content_step = data["step"]
            return [ContentDelta(text)]
        line = _progress_line(kind, data)
        return [ReasoningDelta(line)] if line else []


def _progress_line(kind: str, data: dict[str, Any]) -> str | None:
    if kind == "message_delta":
        return str(data["text"])
    if kind == "tool_call" and not data.get("client"):
        return f"\n[tool] {data['name']}({data['arguments']})\n"
    if kind == "tool_result":
        mark = "error" if data.get("is_error") else "result"
        return f"[{mark}] {_cut(str(data['output']))}\n"
    if kind == "compaction":
        return f"[compacted {data['compacted']} older tool results]\n"
    if kind == "step_retry":
        return f"\n[step {data['step']} failed and is retried: {data['error']}]\n"
    if kind == "fanout":
        return f"[swarm] {len(data['subagents'])} sub-agents started\n"
    if kind == "subagent_finished":
        state = data["status"] if data["status"] != "completed" else "done"
        detail = _cut(data.get("error") or (data.get("answer") or ""))
        return (f"[sub-agent {data['index'] + 1} {state}, {data['steps']} steps, "
                f"{data['duration']:.1f} s] {detail}\n")
    return None


def _cut(text: str) -> str:
    if len(text) > PROGRESS_RESULT_CHARS:
        return text[:PROGRESS_RESULT_CHARS] + " …"
    return text
