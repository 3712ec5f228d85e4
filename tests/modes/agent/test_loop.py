"""The agent loop against the simulated engine (its own process) with scripted tool-calling
turns, and small tools written here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.engines.openai_chat import OpenAIChatEngine
from kimi_modes.modes.agent.loop import AgentLoop, Budgets, ContextPolicy
from kimi_modes.tools import RunContext, ToolResult, Toolset


@dataclass
class SleepTool:
    """Sleeps, then echoes; records when it ran (for order and overlap checks)."""

    name: str
    log: list[tuple[str, str]]
    seconds: float = 0.3
    description: str = "Sleep a while and echo the text."
    parameters: dict[str, Any] = field(default_factory=lambda: {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    timeout: float | None = None
    cancelled: bool = False

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        self.log.append(("start", self.name))
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.log.append(("end", self.name))
        return ToolResult(f"{self.name} says {arguments['text']}")


@dataclass
class BigTool:
    name: str = "dump"
    description: str = "Return a lot of text."
    parameters: dict[str, Any] = field(default_factory=lambda: {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    timeout: float | None = None

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return ToolResult("x" * 3000)


def script(tmp_path: Path, rules: list[dict[str, Any]]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"rules": rules}))
    return str(path)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]


def make_loop(sim: Any, tools: list[Any], tmp_path: Path, recorder: Recorder,
              **kwargs: Any) -> AgentLoop:
    engine = OpenAIChatEngine("sim", sim.v1, model="moonshotai/Kimi-K2.5")
    ctx = RunContext("run-test", tmp_path)
    return AgentLoop(engine, Toolset(tools), ctx=ctx, emit=recorder, **kwargs)


USER = [{"role": "user", "content": "do the thing"}]


async def test_parallel_calls_run_concurrently_and_results_come_back_in_call_order(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0.01", "--script", script(tmp_path, [
        {"match": {"step": 0}, "reply": {"reasoning": "both at once", "tool_calls": [
            {"name": "slow", "arguments": {"text": "a"}},
            {"name": "fast", "arguments": {"text": "b"}}]}},
        {"match": {"after_tool": True}, "reply": {"content": "done: $user"}},
    ]))
    log: list[tuple[str, str]] = []
    slow = SleepTool("slow", log, seconds=0.5)
    fast = SleepTool("fast", log, seconds=0.05)
    recorder = Recorder()
    loop = make_loop(sim, [slow, fast], tmp_path, recorder)
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "answer"
    assert result.final["content"].startswith("done")
    # both started before either ended: they overlapped
    assert log.index(("start", "fast")) < log.index(("end", "slow"))
    assert log.index(("end", "fast")) < log.index(("end", "slow"))
    tool_messages = [m for m in result.messages if m["role"] == "tool"]
    assert [m["name"] for m in tool_messages] == ["slow", "fast"]  # call order, not finish order
    assert tool_messages[0]["content"] == "slow says a"
    assert [e["name"] for e in recorder.of("tool_result")] == ["slow", "fast"]
    assert result.steps == 2 and result.tool_calls == 2


async def test_a_call_starts_as_soon_as_its_arguments_are_complete(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    long_text = " ".join(["word"] * 60)
    sim = start_simulator("--ttft", "0", "--tpot", "0.01", "--script", script(tmp_path, [
        {"match": {"step": 0}, "reply": {"tool_calls": [
            {"name": "first", "arguments": {"text": "go"}},
            {"name": "second", "arguments": {"text": long_text}}]}},
        {"match": {"after_tool": True}, "reply": {"content": "ok"}},
    ]))
    log: list[tuple[str, str]] = []
    recorder = Recorder()
    first = SleepTool("first", log, seconds=0.01)
    second = SleepTool("second", log, seconds=0.01)
    original = recorder.__call__

    async def emit(kind: str, data: dict[str, Any]) -> None:
        if kind == "tool_call":
            log.append(("announced", data["name"]))
        await original(kind, data)

    loop = AgentLoop(OpenAIChatEngine("sim", sim.v1), Toolset([first, second]),
                     ctx=RunContext("r", tmp_path), emit=emit)
    await loop.run(USER)
    await loop.engine.aclose()
    # the first tool ran while the second call's arguments were still streaming
    assert log.index(("end", "first")) < log.index(("announced", "second"))


async def test_invalid_arguments_and_unknown_tools_go_back_to_the_model(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, [
        {"match": {"step": 0}, "reply": {"tool_calls": [
            {"name": "echo", "arguments": "{\"text\": 12"},
            {"name": "nope", "arguments": {}}]}},
        {"match": {"step": 1}, "reply": {"tool_calls": [
            {"name": "echo", "arguments": {"text": "fixed"}}]}},
        {"match": {"after_tool": True}, "reply": {"content": "all good"}},
    ]))
    recorder = Recorder()
    loop = make_loop(sim, [SleepTool("echo", [], seconds=0)], tmp_path, recorder)
    result = await loop.run(USER)
    await loop.engine.aclose()
    results = recorder.of("tool_result")
    assert results[0]["is_error"] and "invalid arguments" in results[0]["output"]
    assert results[1]["is_error"] and "no tool named 'nope'" in results[1]["output"]
    assert not results[2]["is_error"] and results[2]["output"] == "echo says fixed"
    assert result.stop_reason == "answer" and result.final["content"] == "all good"


async def test_step_budget_stops_the_run(tmp_path: Path,
                                         start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, [
        {"match": {}, "reply": {"tool_calls": [{"name": "echo", "arguments": {"text": "again"}}]}},
    ]))
    recorder = Recorder()
    loop = make_loop(sim, [SleepTool("echo", [], seconds=0)], tmp_path, recorder,
                     budgets=Budgets(max_steps=3))
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "max_steps"
    assert result.steps == 3
    assert len(recorder.of("step")) == 3


async def test_token_budget_stops_the_run(tmp_path: Path,
                                          start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, [
        {"match": {}, "reply": {"reasoning": "thinking " * 40,
                                "tool_calls": [{"name": "echo", "arguments": {"text": "x"}}]}},
    ]))
    loop = make_loop(sim, [SleepTool("echo", [], seconds=0)], tmp_path, Recorder(),
                     budgets=Budgets(max_steps=50, max_tokens=60))
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "max_tokens"
    assert result.usage.completion_tokens >= 60


async def test_time_budget_stops_a_slow_step(tmp_path: Path,
                                             start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "5", "--tpot", "0")
    loop = make_loop(sim, [], tmp_path, Recorder(), budgets=Budgets(max_time=0.5))
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "max_time"


async def test_old_tool_results_are_compacted_to_fit_the_window(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, [
        {"match": {"step": [0, 1, 2, 3, 4]},
         "reply": {"tool_calls": [{"name": "dump", "arguments": {"n": 1}}]}},
        {"match": {}, "reply": {"content": "finished"}},
    ]))
    recorder = Recorder()
    policy = ContextPolicy(window=5000, threshold=1.0, keep_latest=1, chars_per_token=1.0,
                           step_output_tokens=0)
    loop = make_loop(sim, [BigTool()], tmp_path, recorder, context=policy)
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "answer"
    compactions = recorder.of("compaction")
    assert compactions and all(c["estimated_tokens"] <= 5000 for c in compactions)
    tool_texts = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert tool_texts[-1] == "x" * 3000  # the latest result is kept whole
    assert all(t.startswith("[compacted") for t in tool_texts[:-2])


async def test_a_window_too_small_stops_with_reason_context(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    policy = ContextPolicy(window=10, chars_per_token=1.0, step_output_tokens=0)
    loop = make_loop(sim, [], tmp_path, Recorder(), context=policy)
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "context"


async def test_client_tools_come_back_to_the_client(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, [
        {"match": {"step": 0}, "reply": {"tool_calls": [
            {"name": "echo", "arguments": {"text": "server side"}},
            {"name": "lookup_order", "arguments": {"order": "A1"}}]}},
    ]))
    client_tool = {"type": "function", "function": {
        "name": "lookup_order", "parameters": {
            "type": "object", "properties": {"order": {"type": "string"}}}}}
    recorder = Recorder()
    loop = make_loop(sim, [SleepTool("echo", [], seconds=0)], tmp_path, recorder,
                     client_tools=[client_tool])
    result = await loop.run(USER)
    await loop.engine.aclose()
    assert result.stop_reason == "client_tools"
    assert result.finish_reason == "tool_calls"
    names = [c["function"]["name"] for c in result.final["tool_calls"]]
    assert names == ["echo", "lookup_order"]
    assert [e["name"] for e in recorder.of("tool_result")] == ["echo"]  # only ours ran
    assert recorder.of("tool_call")[1]["client"] is True


async def test_cancelling_the_run_cancels_running_tools(
        tmp_path: Path, start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, [
        {"match": {}, "reply": {"tool_calls": [{"name": "slow", "arguments": {"text": "z"}}]}},
    ]))
    log: list[tuple[str, str]] = []
    slow = SleepTool("slow", log, seconds=30)
    loop = make_loop(sim, [slow], tmp_path, Recorder())
    task = asyncio.create_task(loop.run(USER))
    for _ in range(1000):  # wait (bounded) until the tool runs
        if ("start", "slow") in log:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert slow.cancelled
    await loop.engine.aclose()


def test_budgets_can_only_be_tightened_per_request() -> None:
    server = Budgets(max_steps=20, max_tokens=None, max_time=100)
    merged = server.merged({"max_steps": 50, "max_tokens": 1000, "max_time": 10})
    assert merged == Budgets(max_steps=20, max_tokens=1000, max_time=10)
