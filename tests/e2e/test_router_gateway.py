"""The gateway in front of a router (``router = true``; the simulated engine stands in for
llm-d / vLLM Router / Dynamo and records the headers it gets): session ids stable per
conversation and per sub-agent, each mode's objective, a router's 429 passed back with its
Retry-After, and sub-agent prompts that share a byte-identical prefix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kimi_modes.protocol import render_prompt

Start = Callable[..., Any]
OBJECTIVE = "x-gateway-inference-objective"
ORCH = {"tool": "spawn_subagents"}
SUB = {"system": "sub-agent of an agent swarm"}


def router_toml(sim: Any, extra: str = "") -> str:
    return (f'[[upstreams]]\nname = "router"\nurl = "{sim.v1}"\nrouter = true\n'
            'family = "k2.5"\ndialect = "vllm"\nread_timeout = 30\n'
            '[modes.instant]\nobjective = "sheddable"\n'
            '[modes.thinking]\nobjective = "interactive"\n' + extra)


def chats(sim: Any) -> list[dict[str, Any]]:
    """What the simulator received on /v1/chat/completions: headers and body, in order."""
    return [r for r in sim.stats()["last_requests"] if r["path"] == "/v1/chat/completions"]


def chat(gw: Any, messages: list[dict[str, Any]], *, key: str | None = None,
         model: str = "kimi-k2.5-instant") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.v1 + "/chat/completions", headers=headers, timeout=60,
                      json={"model": model, "messages": messages})


def test_one_session_per_conversation_and_caller_and_an_objective_per_mode(
        start_simulator: Start, start_gateway: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(router_toml(sim, '[server]\napi_keys = ["sk-alice", "sk-bob"]\n'))
    opening = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Plan a trip."}]
    first = chat(gw, opening, key="sk-alice")
    assert first.status_code == 200, first.text
    answer = first.json()["choices"][0]["message"]
    second_turn = [*opening, {"role": "assistant", "content": answer["content"]},
                   {"role": "user", "content": "Now shorter."}]
    assert chat(gw, second_turn, key="sk-alice", model="kimi-k2.5-thinking").status_code == 200
    assert chat(gw, [*opening[:1], {"role": "user", "content": "Other topic."}],
                key="sk-alice").status_code == 200
    assert chat(gw, opening, key="sk-bob").status_code == 200
    turn1, turn2, other, bob = (r["headers"] for r in chats(sim))
    ids = [h["x-session-id"] for h in (turn1, turn2, other, bob)]
    assert ids[0] == ids[1]  # both turns of one conversation
    assert len(set(ids)) == 3  # another conversation, another caller: other sessions
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert sk_not_in(ids)
    assert [turn1[OBJECTIVE], turn2[OBJECTIVE]] == ["sheddable", "interactive"]
    assert turn2["x-llm-d-inference-objective"] == "interactive"


def sk_not_in(ids: list[str]) -> bool:
    """The caller's key never travels upstream, hashed into the id or otherwise."""
    return not any("sk-" in i for i in ids)


def test_a_routers_429_reaches_the_client_with_its_retry_after(
        start_simulator: Start, start_gateway: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--retry-after", "5")
    gw = start_gateway(router_toml(sim))
    sim.control(fail_rate=1.0, fail_status=429)
    resp = chat(gw, [{"role": "user", "content": "x"}])
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "5"
    sim.control(fail_status=503)
    resp = chat(gw, [{"role": "user", "content": "x"}])
    assert (resp.status_code, resp.headers["retry-after"]) == (503, "5")


def swarm_rules(tasks: list[str]) -> list[dict[str, Any]]:
    return [
        {"match": {**ORCH, "after_tool": True, "tool_result": r"(?P<k>\d+) completed"},
         "reply": {"reasoning": "Merging.", "content": "Synthesis of ${k} results."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"reasoning": "Split it.",
                   "tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": tasks}}]}},
        # Each sub-agent takes two steps: it looks at its workspace, then answers.
        {"match": {**SUB, "after_tool": True}, "reply": {"content": "Result."}},
        {"match": {**SUB, "after_tool": False, "user": r"Topic (?P<n>\d+)"},
         "reply": {"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]}},
    ]


@pytest.mark.slow
def test_swarm_sessions_objectives_and_the_shared_prefix_of_sub_agent_prompts(
        tmp_path: Path, start_simulator: Start, start_gateway: Callable[..., Any]) -> None:
    tasks = ["Topic 1: the history of the subject, told briefly", "Topic 2", "Topic 3 in full"]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": swarm_rules(tasks)}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    gw = start_gateway(router_toml(
        sim, '[agent]\nmax_time = 120\n[swarm]\nobjective = "critical"\n'
             'subagent_objective = "batch"\n'))
    resp = chat(gw, [{"role": "user", "content": "Research three topics."}],
                model="kimi-k2.5-swarm")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "Synthesis of 3 results."
    swarm = httpx.get(gw.v1 + "/runs", params={"mode": "swarm"}).json()["data"][0]
    subs = httpx.get(gw.v1 + "/runs", params={"parent_id": swarm["id"]}).json()["data"]
    sub_ids = {s["id"] for s in subs}
    received = chats(sim)
    orchestrator = [r for r in received if r["headers"][OBJECTIVE] == "critical"]
    workers = [r for r in received if r["headers"][OBJECTIVE] == "batch"]
    assert len(orchestrator) == 2 and len(workers) == 6 and len(received) == 8
    # The orchestrator's steps: one conversation, one session.
    assert len({r["headers"]["x-session-id"] for r in orchestrator}) == 1
    # Each sub-agent: its run id, on both of its steps.
    by_session: dict[str, list[dict[str, Any]]] = {}
    for r in workers:
        by_session.setdefault(r["headers"]["x-session-id"], []).append(r)
    assert set(by_session) == sub_ids
    assert all(len(steps) == 2 for steps in by_session.values())

    # What sub-agents share comes first and is byte-identical: the tools, the system prompt.
    firsts = [steps[0]["body"] for steps in by_session.values()]
    assert len({json.dumps(b["tools"]) for b in firsts}) == 1
    assert len({json.dumps(b["messages"][0]) for b in firsts}) == 1
    assert [b["messages"][0]["role"] for b in firsts] == ["system"] * 3
    assert {b["messages"][1]["content"] for b in firsts} == set(tasks)
    prompts = [render_prompt({"messages": b["messages"], "tools": b["tools"]}, "k2.5",
                             thinking=False) for b in firsts]
    shared = len(os.path.commonprefix(prompts))  # noqa: RUF071 (character-wise is meant)
    user = "<|im_user|>user<|im_middle|>"
    # The prompts part in the task: tools and system prompt, rendered first, are shared.
    assert all(p.index(user) + len(user) + len("Topic ") <= shared for p in prompts)
    assert shared > 1000 and "list_files" in prompts[0][:shared]
