"""Agent mode through the real gateway: scripted tool-calling turns on the simulated engine,
the real sandboxed python tool, a real MCP server, persisted runs and their HTTP API."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from helpers.clients import openai_client
from helpers.tools import LOOKUP_ORDER

pytestmark = pytest.mark.slow


def test_bubblewrap_is_installed() -> None:
    """The sandboxed tools need it; .ci/run installs it (apt-get install bubblewrap)."""
    assert shutil.which("bwrap") is not None

RULES = [
    {"name": "compute", "match": {"user": "(?i)compute", "step": 0},
     "reply": {"reasoning": "I will use python.",
               "content": "Let me compute that.",
               "tool_calls": [{"name": "python", "arguments": {"code": "print(6*7)"}}]}},
    {"name": "parcel", "match": {"user": "(?i)parcel", "step": 0},
     "reply": {"reasoning": "First the weight.",
               "tool_calls": [{"name": "python", "arguments": {"code": "print(2+3)"}}]}},
    {"name": "parcel-order", "match": {"user": "(?i)parcel", "step": 1},
     "reply": {"reasoning": "Now the order.",
               "tool_calls": [{"name": "lookup_order", "arguments": {"order": "B2"}}]}},
    {"name": "answer", "match": {"after_tool": True, "tool_result": "(\\d+)"},
     "reply": {"reasoning": "The tool printed $1.", "content": "It is $1."}},
    {"name": "sleepy", "match": {"user": "(?i)sleep", "step": 0},
     "reply": {"tool_calls": [{"name": "python",
                               "arguments": {"code": "import time; time.sleep(60)"}}]}},
    {"name": "client", "match": {"user": "(?i)order", "step": 0},
     "reply": {"tool_calls": [{"name": "lookup_order", "arguments": {"order": "A1"}}]}},
    {"name": "clock", "match": {"user": "(?i)time in tokyo", "step": 0},
     "reply": {"tool_calls": [{"name": "time__get_current_time",
                               "arguments": {"timezone": "Asia/Tokyo"}}]}},
    {"name": "after-client", "match": {"after_tool": True},
     "reply": {"content": "Done: $user"}},
]


@pytest.fixture
def agent_gateway(tmp_path: Path, start_simulator: Callable[..., Any],
                  start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    script = tmp_path / "agent-script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0.002", "--script", str(script))
    mcp = tmp_path / "mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}))
    gw = start_gateway(upstream_toml(sim.v1) + f'[agent]\nmcp_config = "{mcp}"\n'
                       'max_time = 120\n')
    gw.sim = sim
    return gw


def oa(gw: Any) -> openai.OpenAI:
    return openai_client(gw, timeout=60)


def runs(gw: Any) -> list[dict[str, Any]]:
    return httpx.get(gw.v1 + "/runs").json()["data"]


def test_agent_runs_python_in_the_sandbox_and_answers(agent_gateway: Any) -> None:
    answer = oa(agent_gateway).chat.completions.create(
        model="kimi-k2.5-agent", messages=[{"role": "user", "content": "Compute 6 times 7"}])
    # every step's text, the last one (the answer) at the end
    assert answer.choices[0].message.content == "Let me compute that.\n\nIt is 42."
    assert answer.choices[0].finish_reason == "stop"
    run = runs(agent_gateway)[0]
    assert run["status"] == "completed" and run["stop_reason"] == "answer"
    detail = httpx.get(agent_gateway.v1 + f"/runs/{run['id']}").json()
    calls = [c for step in detail["steps"] for c in step["tool_calls"]]
    assert calls[0]["name"] == "python"
    assert "42" in calls[0]["result"]["output"]
    assert detail["final_answer"] == "It is 42."
    events = httpx.get(agent_gateway.v1 + f"/runs/{run['id']}/events", timeout=10).text
    kinds = [line[7:] for line in events.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "run_started" and kinds[-1] == "finished"
    assert {"step", "tool_call", "tool_result", "message_delta"} <= set(kinds)


def test_streamed_agent_shows_progress_in_reasoning(agent_gateway: Any) -> None:
    stream = oa(agent_gateway).chat.completions.create(
        model="kimi-k2.5-agent", stream=True,
        messages=[{"role": "user", "content": "Compute 6 times 7"}])
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert "[tool] python(" in reasoning and "[result] 42" in reasoning
    assert content.endswith("It is 42.")




def test_client_tools_come_back_and_the_run_continues(agent_gateway: Any) -> None:
    tool = LOOKUP_ORDER
    c = oa(agent_gateway)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Where is my order?"}]
    first = c.chat.completions.create(model="kimi-k2.5-agent", messages=messages, tools=[tool])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup_order"
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content or "",
         "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "shipped"},
    ]
    second = c.chat.completions.create(model="kimi-k2.5-agent", messages=messages, tools=[tool])
    assert second.choices[0].message.content.startswith("Done")
    assert [r["stop_reason"] for r in runs(agent_gateway)[:2]] == ["answer", "client_tools"]


def test_agent_progress_never_comes_back_as_reasoning(agent_gateway: Any) -> None:
    """An agent turn that ends on a client tool call streams its progress (the run line,
    ``[tool] python(...)``, ``[result] 5``) as reasoning; a client that continues on the
    Thinking model, dropping reasoning_content as most clients do, must not have that text
    sent to the engine as the assistant turn's reasoning."""
    c = oa(agent_gateway)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weigh my parcel"}]
    stream = c.chat.completions.create(model="kimi-k2.5-agent", messages=messages,
                                       tools=[LOOKUP_ORDER], stream=True)
    reasoning, calls = "", {}
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for call in delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            entry["name"] = (call.function.name if call.function else None) or entry["name"]
            entry["arguments"] += (call.function.arguments if call.function else None) or ""
    assert "[tool] python(" in reasoning and "[result] 5" in reasoning
    call = calls[0]
    assert call["name"] == "lookup_order"
    messages += [
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": call["id"], "type": "function",
                         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "shipped"},
    ]
    c.chat.completions.create(model="kimi-k2.5-thinking", messages=messages,
                              tools=[LOOKUP_ORDER])
    last = httpx.get(agent_gateway.sim.url + "/sim/stats").json()["last_requests"][-1]
    sent = [m for m in last["body"]["messages"] if m["role"] == "assistant"]
    assert sent and all(not m.get("reasoning_content") and not m.get("reasoning")
                        for m in sent), sent


def test_mcp_tools_are_available_to_the_agent(agent_gateway: Any) -> None:
    answer = oa(agent_gateway).chat.completions.create(
        model="kimi-k2.5-agent",
        messages=[{"role": "user", "content": "What's the time in Tokyo?"}])
    assert answer.choices[0].message.content
    detail = httpx.get(agent_gateway.v1 + f"/runs/{runs(agent_gateway)[0]['id']}").json()
    call = detail["steps"][0]["tool_calls"][0]
    assert call["name"] == "time__get_current_time"
    assert not call["result"]["is_error"]
    assert "Asia/Tokyo" in call["result"]["output"]


def test_delete_cancels_a_running_agent_and_its_sandbox(agent_gateway: Any) -> None:
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["answer"] = oa(agent_gateway).chat.completions.create(
                model="kimi-k2.5-agent", messages=[{"role": "user", "content": "sleep please"}])
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    run_id = None
    for _ in range(200):
        live = [r for r in runs(agent_gateway) if r["status"] == "running"]
        if live:
            detail = httpx.get(agent_gateway.v1 + f"/runs/{live[0]['id']}").json()
            if any(step["tool_calls"] for step in detail["steps"]):
                run_id = live[0]["id"]
                break
        time.sleep(0.05)
    assert run_id is not None
    time.sleep(0.5)  # the sandboxed sleep is running
    resp = httpx.delete(agent_gateway.v1 + f"/runs/{run_id}", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["status"] == "cancelled"
    thread.join(15)
    assert not thread.is_alive()
    assert "answer" not in outcome
    assert httpx.delete(agent_gateway.v1 + f"/runs/{run_id}").status_code == 409
    # no sandboxed sleep left anywhere
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and b"time.sleep(60)" in _cmdline(p)]
    assert leftovers == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_agent_over_the_anthropic_api(agent_gateway: Any) -> None:
    client = anthropic.Anthropic(base_url=agent_gateway.url, api_key="none", max_retries=0)
    message = client.messages.create(
        model="kimi-k2.5-agent", max_tokens=512,
        messages=[{"role": "user", "content": "What's the time in Tokyo?"}])
    kinds = [b.type for b in message.content]
    assert kinds[0] == "thinking" and kinds[-1] == "text"
    assert "[tool] time__get_current_time" in message.content[0].thinking


def test_unknown_run_is_404(agent_gateway: Any) -> None:
    resp = httpx.get(agent_gateway.v1 + "/runs/nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["message"]


def test_a_restart_marks_interrupted_runs(tmp_path: Path, start_simulator: Callable[..., Any],
                                          start_gateway: Callable[..., Any],
                                          upstream_toml: Callable[..., str]) -> None:
    slow = start_simulator("--ttft", "30")
    db = tmp_path / "shared-runs.sqlite3"
    config = upstream_toml(slow.v1) + f'[agent]\nruns_db = "{db}"\n'
    env = {"KIMI_MODES_AGENT__RUNS_DB": str(db)}
    first = start_gateway(config, env=env)
    thread = threading.Thread(target=lambda: httpx.post(
        first.v1 + "/chat/completions", timeout=60,
        json={"model": "kimi-k2.5-agent", "messages": [{"role": "user", "content": "hi"}]}))
    thread.start()
    for _ in range(100):
        if runs(first):
            break
        time.sleep(0.05)
    first.stop()
    thread.join(10)
    second = start_gateway(config, env=env)
    statuses = [r["status"] for r in runs(second)]
    assert statuses == ["interrupted"] or statuses == ["cancelled"]


def _kimi(*args: str, env: dict[str, str] | None = None) -> Any:
    import os
    import subprocess

    return subprocess.run([sys.executable, "-m", "kimi_modes", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_run_command_against_a_gateway(agent_gateway: Any) -> None:
    done = _kimi("run", "Compute 6 times 7", "--url", agent_gateway.v1, "--max-steps", "5")
    assert done.returncode == 0, done.stderr
    assert "It is 42." in done.stdout and "[tool] python" in done.stdout
    detail = httpx.get(agent_gateway.v1 + f"/runs/{runs(agent_gateway)[0]['id']}").json()
    assert detail["params"]["budgets"]["max_steps"] == 5


def test_run_command_in_process(tmp_path: Path, agent_gateway: Any,
                                upstream_toml: Callable[..., str]) -> None:
    config = tmp_path / "run.toml"
    db = tmp_path / "cli-runs.sqlite3"
    config.write_text(upstream_toml(agent_gateway.sim.v1)
                      + f'[agent]\nruns_db = "{db}"\nworkspaces = "{tmp_path / "ws"}"\n')
    done = _kimi("run", "Compute 6 times 7", "--config", str(config),
                 env={"KIMI_MODES_AGENT__RUNS_DB": str(db)})
    assert done.returncode == 0, done.stderr
    assert "It is 42." in done.stdout
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("select status, stop_reason from runs").fetchall() == [
            ("completed", "answer")]


def test_hidden_steps_come_back_only_to_their_own_conversation(agent_gateway: Any) -> None:
    """A run that paused on a client tool call had hidden steps (its python call). Its own
    continuation gets them back; another conversation that happens to hold the same call
    (Kimi's ids repeat: ``functions.lookup_order:0``) must not have them spliced in."""
    c = oa(agent_gateway)
    question: list[dict[str, Any]] = [{"role": "user", "content": "Weigh my parcel"}]
    first = c.chat.completions.create(model="kimi-k2.5-agent", messages=question,
                                      tools=[LOOKUP_ORDER])
    call = first.choices[0].message.tool_calls[0]
    answer = [{"role": "assistant", "content": "",
               "tool_calls": [call.model_dump(exclude_none=True)]},
              {"role": "tool", "tool_call_id": call.id, "content": "shipped"}]

    def python_steps_sent() -> int:
        last = httpx.get(agent_gateway.sim.url + "/sim/stats").json()["last_requests"][-1]
        return sum(1 for m in last["body"]["messages"] for tc in m.get("tool_calls") or ()
                   if tc["function"]["name"] == "python")

    other = [{"role": "user", "content": "Ship this parcel to Lyon"}, *answer]
    c.chat.completions.create(model="kimi-k2.5-agent", messages=other, tools=[LOOKUP_ORDER])
    assert python_steps_sent() == 0
    c.chat.completions.create(model="kimi-k2.5-agent", messages=[*question, *answer],
                              tools=[LOOKUP_ORDER])
    assert python_steps_sent() == 1
