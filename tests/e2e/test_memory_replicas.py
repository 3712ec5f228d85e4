"""The memories between requests are shared by every gateway process on one run store: a
conversation started on one process and continued on another gets back what the client
never sent. Two gateways on one PostgreSQL database, and ``serve --workers 2`` on one SQLite
file, all on the simulated engine, which shows what reached it.

- Thinking: a tool-call turn answered by one process; the client drops ``reasoning_content``
  and continues on the other; the engine receives the reasoning back.
- Agent: a run with a hidden server step (``list_files``) pauses on a client tool call on one
  process; the client's tool result goes to the other; the engine receives the hidden step.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.clients import last_upstream_request
from helpers.postgres import PostgresCluster
from helpers.tools import LOOKUP_ORDER, weather_tool

pytestmark = pytest.mark.slow

WEATHER = weather_tool()
REASONING = "Paris needs a lookup first."
RULES = [
    {"match": {"user": "(?i)weather", "after_tool": False},
     "reply": {"reasoning": REASONING,
               "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}},
    {"match": {"user": "(?i)parcel", "step": 0},
     "reply": {"reasoning": "First what is here.",
               "tool_calls": [{"name": "list_files", "arguments": {}}]}},
    {"match": {"user": "(?i)parcel", "step": 1},
     "reply": {"reasoning": "Now the order.",
               "tool_calls": [{"name": "lookup_order", "arguments": {"order": "B2"}}]}},
    {"match": {"after_tool": True}, "reply": {"content": "Done."}},
]


def _simulator(tmp_path: Path, start_simulator: Callable[..., Any]) -> Any:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    return start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))


def _chat(conn: httpx.Client, model: str, messages: list[dict[str, Any]],
          tools: list[dict[str, Any]]) -> dict[str, Any]:
    response = conn.post("/v1/chat/completions", json={
        "model": model, "messages": messages, "tools": tools})
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()["choices"][0]["message"]
    return message


def _continued(question: str, answer: dict[str, Any], result: str) -> list[dict[str, Any]]:
    """The client's next request: the question, the answer's tool call *without* any
    reasoning (dropped, as many clients do), and the tool's result."""
    (call,) = answer["tool_calls"]
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": answer.get("content") or "",
             "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": result}]


def _thinking_continues_elsewhere(one: httpx.Client, other: httpx.Client, sim: Any) -> None:
    question = "What's the weather in Paris?"
    first = _chat(one, "kimi-k2.5-thinking", [{"role": "user", "content": question}], [WEATHER])
    assert first.get("reasoning_content") == REASONING
    _chat(other, "kimi-k2.5-thinking", _continued(question, first, "sunny"), [WEATHER])
    sent = [m.get("reasoning_content") for m in last_upstream_request(sim)["messages"]
            if m["role"] == "assistant"]
    assert sent == [REASONING]


def _agent_continues_elsewhere(one: httpx.Client, other: httpx.Client, sim: Any) -> None:
    question = "Weigh my parcel"
    first = _chat(one, "kimi-k2.5-agent", [{"role": "user", "content": question}],
                  [LOOKUP_ORDER])
    assert first["tool_calls"][0]["function"]["name"] == "lookup_order"
    second = _chat(other, "kimi-k2.5-agent", _continued(question, first, "shipped"),
                   [LOOKUP_ORDER])
    assert second["content"] == "Done."
    calls = [tc["function"]["name"] for m in last_upstream_request(sim)["messages"]
             for tc in m.get("tool_calls") or ()]
    assert calls == ["list_files", "lookup_order"]  # the hidden step is back, before the call


def test_two_gateways_on_one_postgres_share_their_memories(
        tmp_path: Path, postgres: PostgresCluster, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> None:
    sim = _simulator(tmp_path, start_simulator)
    config = (upstream_toml(sim.v1) + "[agent]\nmax_time = 120\n"
              f'[store]\nurl = "{postgres.new_database()}"\n')
    a, b = start_gateway(config), start_gateway(config)
    with httpx.Client(base_url=a.url, timeout=60) as one, \
            httpx.Client(base_url=b.url, timeout=60) as other:
        _thinking_continues_elsewhere(one, other, sim)
        _agent_continues_elsewhere(one, other, sim)


def _connection_to_another_worker(gw: Any, pid: int) -> httpx.Client:
    """A kept-alive connection that a worker other than ``pid`` accepted (its /health says
    which: a connection stays with the worker that accepted it)."""
    for _ in range(200):
        conn = httpx.Client(base_url=gw.url, timeout=60)
        if conn.get("/health").json()["pid"] != pid:
            return conn
        conn.close()
    raise AssertionError("no second worker accepted a connection")


def test_the_workers_of_one_gateway_share_their_memories(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> None:
    sim = _simulator(tmp_path, start_simulator)
    gw = start_gateway(upstream_toml(sim.v1) + "[agent]\nmax_time = 120\n"
                       f'runs_db = "{tmp_path / "runs.sqlite3"}"\n', "--workers", "2")
    with httpx.Client(base_url=gw.url, timeout=60) as one:
        pid = one.get("/health").json()["pid"]
        with contextlib.closing(_connection_to_another_worker(gw, pid)) as other:
            assert other.get("/health").json()["pid"] != pid
            _thinking_continues_elsewhere(one, other, sim)
            _agent_continues_elsewhere(one, other, sim)
            # Both answered on the connections they accepted, nobody else.
            assert one.get("/health").json()["pid"] == pid
