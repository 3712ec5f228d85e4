"""Swarm mode through the real gateway: the official SDKs against kimi-k2.5-swarm on the
simulated engine, sub-agents spread over a pool of three engines (one of which dies mid-run),
the runs API (children, metrics, resume, cancel), ``kimi-modes run --mode swarm``, and a swarm
on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
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

pytestmark = pytest.mark.slow

ORCH = {"tool": "spawn_subagents"}
SUB = {"system": "sub-agent of an agent swarm"}


def rules(tasks: list[str], *, sub_ttft: float = 0.0, sub_text: str = "Result for topic ${n}.",
          extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [
        *(extra or []),
        {"match": {**ORCH, "after_tool": True, "tool_result": r"(?P<k>\d+) completed"},
         "reply": {"reasoning": "Merging.", "content": "Synthesis of ${k} results."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"reasoning": "Split it.",
                   "tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": tasks}}]}},
        {"match": {**SUB, "user": r"Topic (?P<n>\d+)"},
         "reply": {"content": sub_text}, "ttft": sub_ttft},
    ]


def script(tmp_path: Path, rule_list: list[dict[str, Any]], name: str = "script") -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"rules": rule_list}))
    return str(path)


def toml(*sims: Any, swarm: str = "", extra: str = "") -> str:
    text = ""
    for i, sim in enumerate(sims):
        text += (f'[[upstreams]]\nname = "sim{i}"\nurl = "{sim.v1}"\n'
                 'family = "k2.5"\ndialect = "vllm"\nread_timeout = 30\n')
    return text + "[agent]\nmax_time = 120\n" + "[swarm]\ncooldown = 1.0\n" + swarm + extra


def oa(gw: Any) -> openai.OpenAI:
    return openai_client(gw, timeout=120)


def swarm_runs(gw: Any) -> list[dict[str, Any]]:
    return list(httpx.get(gw.v1 + "/runs", params={"mode": "swarm"}).json()["data"])


def children(gw: Any, run_id: str) -> list[dict[str, Any]]:
    return list(httpx.get(gw.v1 + "/runs", params={"parent_id": run_id,
                                                   "limit": 100}).json()["data"])


def test_swarm_through_the_openai_sdk(tmp_path: Path, start_simulator: Callable[..., Any],
                                      start_gateway: Callable[..., Any]) -> None:
    tasks = ["Topic 1", "Topic 2", "Topic 3"]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", script(tmp_path, rules(tasks)))
    gw = start_gateway(toml(sim))
    models = [m.id for m in oa(gw).models.list().data]
    assert "kimi-k2.5-swarm" in models
    stream = oa(gw).chat.completions.create(
        model="kimi-k2.5-swarm", stream=True,
        messages=[{"role": "user", "content": "Research three topics."}])
    content, reasoning = [], []
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            content.append(delta.content or "")
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
    assert "".join(content) == "Synthesis of 3 results."
    progress = "".join(reasoning)
    assert "[swarm] 3 sub-agents started" in progress
    assert progress.count("[sub-agent ") == 3
    run = swarm_runs(gw)[0]
    assert run["status"] == "completed" and run["model"] == "kimi-k2.5-swarm"
    subs = children(gw, run["id"])
    assert len(subs) == 3 and {s["status"] for s in subs} == {"completed"}
    detail = httpx.get(f"{gw.v1}/runs/{run['id']}").json()
    assert detail["metrics"]["critical_steps"] == 3
    assert detail["metrics"]["subagents"] == 3
    sub = httpx.get(f"{gw.v1}/runs/{subs[0]['id']}").json()
    assert sub["parent_id"] == run["id"] and sub["final_answer"].startswith("Result for topic")
    health = httpx.get(gw.url + "/health").json()
    assert health["swarm"]["subagents"] == {"running": 0, "waiting": 0,
                                            "max_concurrent": 64}
    workers = health["swarm"]["pools"]["workers"]
    assert [m["name"] for m in workers] == ["sim0"] and workers[0]["served"] >= 3


def test_swarm_through_the_anthropic_sdk(tmp_path: Path, start_simulator: Callable[..., Any],
                                         start_gateway: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", script(tmp_path, rules(["Topic 1", "Topic 2"])))
    gw = start_gateway(toml(sim))
    client = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0, timeout=120)
    message = client.messages.create(model="kimi-k2.5-swarm", max_tokens=4096,
                                     messages=[{"role": "user", "content": "Two topics."}])
    text = "".join(b.text for b in message.content if b.type == "text")
    assert text == "Synthesis of 2 results."


def test_swarm_rejects_client_tools(tmp_path: Path, start_simulator: Callable[..., Any],
                                    start_gateway: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(toml(sim))
    with pytest.raises(openai.BadRequestError) as info:
        oa(gw).chat.completions.create(
            model="kimi-k2.5-swarm", messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {}}}}])
    assert "kimi-k2.5-agent" in str(info.value)


def test_sub_agents_survive_an_engine_dying_mid_run(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    tasks = [f"Topic {i}" for i in range(12)]
    long_text = "Result for topic ${n}. " + "word " * 40
    path = script(tmp_path, rules(tasks, sub_text=long_text))
    # Streams of ~40 tokens at 50 ms a token: any engine killed after 1 s breaks mid-stream.
    sims = [start_simulator("--ttft", "0.05", "--tpot", "0.05", "--script", path)
            for _ in range(3)]
    gw = start_gateway(toml(*sims, swarm='orchestrator_upstreams = ["sim0"]\n'))
    answer: dict[str, Any] = {}

    def ask() -> None:
        answer["response"] = oa(gw).chat.completions.create(
            model="kimi-k2.5-swarm", messages=[{"role": "user", "content": "Twelve topics."}])

    thread = threading.Thread(target=ask)
    thread.start()
    victim = sims[2]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the victim is streaming sub-agents
        stats = httpx.get(victim.url + "/sim/stats").json()
        if stats.get("running", 0) >= 1 or stats.get("requests", 0) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    victim.stop()
    thread.join(120)
    assert not thread.is_alive()
    response = answer["response"]
    assert response.choices[0].message.content == "Synthesis of 12 results."
    run = swarm_runs(gw)[0]
    finished = {s["id"]: s for s in children(gw, run["id"])}
    assert len(finished) == 12 and {s["status"] for s in finished.values()} == {"completed"}
    answers = sorted(httpx.get(f"{gw.v1}/runs/{i}").json()["final_answer"].split(".")[0]
                     for i in finished)
    assert answers == sorted(f"Result for topic {i}" for i in range(12))
    # The survivors took the work over.
    served = [httpx.get(s.url + "/sim/stats").json()["requests"] for s in sims[:2]]
    assert sum(served) >= 12


def test_resume_a_failed_sub_agent_over_http(tmp_path: Path,
                                             start_simulator: Callable[..., Any],
                                             start_gateway: Callable[..., Any]) -> None:
    extra = [{"match": {**SUB, "user": "Topic 2"}, "fault": "500", "times": 12,
              "reply": {"content": "never"}}]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script",
                          script(tmp_path, rules(["Topic 1", "Topic 2"], extra=extra)))
    gw = start_gateway(toml(sim, swarm="step_retries = 0\nmax_attempts = 2\n"
                                        "failure_threshold = 100\n"))
    response = oa(gw).chat.completions.create(
        model="kimi-k2.5-swarm", messages=[{"role": "user", "content": "Two topics."}])
    assert response.choices[0].message.content == "Synthesis of 1 results."
    run = swarm_runs(gw)[0]
    failed = [s for s in children(gw, run["id"]) if s["status"] == "failed"]
    assert len(failed) == 1 and "500" in failed[0]["error"]
    # Let the fault rule run out, then resume it by id.
    for _ in range(12):
        httpx.post(sim.v1 + "/chat/completions", json={
            "model": "moonshotai/Kimi-K2.5", "messages": [
                {"role": "system", "content": "a sub-agent of an agent swarm"},
                {"role": "user", "content": "Topic 2"}]})
    resumed = httpx.post(f"{gw.v1}/runs/{failed[0]['id']}/resume")
    assert resumed.status_code == 202, resumed.text
    new_id = resumed.json()["id"]
    for _ in range(200):
        new = httpx.get(f"{gw.v1}/runs/{new_id}").json()
        if new["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert new["status"] == "completed" and new["final_answer"] == "Result for topic 2."
    assert new["parent_id"] == run["id"]
    # Resumed and answered: named by any of its runs, it now takes only a follow-up prompt.
    again = httpx.post(f"{gw.v1}/runs/{failed[0]['id']}/resume")
    assert again.status_code == 409 and "with a prompt" in again.json()["error"]["message"]
    assert httpx.post(f"{gw.v1}/runs/{run['id']}/resume").status_code == 409
    assert httpx.post(f"{gw.v1}/runs/run_nope/resume").status_code == 404


def test_the_orchestrator_asks_a_completed_sub_agent_a_follow_up(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    """AgentSwarm's resume_agent_ids on a sub-agent that answered: the engine gets that
    sub-agent's transcript plus the new prompt; the report and the runs keep its agent id."""
    swarm = {"tool": "AgentSwarm"}
    follow_up = json.dumps({"description": "follow up",
                            "resume_agent_ids": {"${id}": "Follow-up: and gamma?"}})
    rule_list = [
        {"match": {**swarm, "after_tool": True, "step": 1,
                   "tool_result": r'agent_id="(?P<id>run_\w+)" item="alpha" outcome="completed"'},
         "reply": {"tool_calls": [{"name": "AgentSwarm", "arguments": follow_up}]}},
        {"match": {**swarm, "after_tool": True, "tool_result": r">(?P<a>[^<]*)</subagent>"},
         "reply": {"content": "Synthesis: ${a}"}},
        {"match": {**swarm, "after_tool": False},
         "reply": {"tool_calls": [{"name": "AgentSwarm", "arguments": {
             "description": "study", "prompt_template": "Study {{item}}",
             "items": ["alpha", "beta"]}}]}},
        {"match": {**SUB, "user": "Follow-up"}, "reply": {"content": "Gamma too."}},
        {"match": {**SUB, "user": r"Study (?P<x>\w+)"}, "reply": {"content": "Studied ${x}."}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", script(tmp_path, rule_list))
    gw = start_gateway(toml(sim))
    response = oa(gw).chat.completions.create(
        model="kimi-k2.5-swarm", messages=[{"role": "user", "content": "Study two things."}])
    assert response.choices[0].message.content == "Synthesis: Gamma too."
    # The engine received the sub-agent's earlier transcript, then the follow-up.
    asked = [r["body"]["messages"] for r in sim.stats()["last_requests"]
             if r["body"]["messages"][-1]["content"] == "Follow-up: and gamma?"]
    assert len(asked) == 1
    assert [(m["role"], m["content"]) for m in asked[0][1:]] == [
        ("user", "Study alpha"), ("assistant", "Studied alpha."),
        ("user", "Follow-up: and gamma?")]
    assert "sub-agent of an agent swarm" in asked[0][0]["content"]
    run = swarm_runs(gw)[0]
    subs = {s["id"]: httpx.get(f"{gw.v1}/runs/{s['id']}").json()
            for s in children(gw, run["id"])}
    assert len(subs) == 3
    [later] = [s for s in subs.values() if "resumed_from" in s["params"]]
    first = subs[later["params"]["resumed_from"]]
    assert first["metrics"]["resumed_by"] == later["id"]
    assert later["params"]["agent_id"] == first["id"] and later["final_answer"] == "Gamma too."
    steps = httpx.get(f"{gw.v1}/runs/{run['id']}").json()["steps"]
    reports = [c["result"]["output"] for step in steps for c in step["tool_calls"]]
    assert reports[1] == (
        "<agent_swarm_result>\n<summary>completed: 1</summary>\n"
        f'<subagent mode="resume" agent_id="{first["id"]}" item="alpha" '
        'outcome="completed">Gamma too.</subagent>\n</agent_swarm_result>')


def test_delete_cancels_the_swarm_and_its_sub_agents(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    tasks = [f"Topic {i}" for i in range(5)]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", script(tmp_path, rules(tasks, sub_ttft=60)))
    gw = start_gateway(toml(sim))
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["answer"] = oa(gw).chat.completions.create(
                model="kimi-k2.5-swarm", messages=[{"role": "user", "content": "go"}])
        except openai.APIError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 30
    run_id = None
    while time.monotonic() < deadline:
        running = swarm_runs(gw)
        if running and len([s for s in children(gw, running[0]["id"])
                            if s["status"] == "running"]) == 5:
            run_id = running[0]["id"]
            break
        time.sleep(0.05)
    assert run_id is not None
    cancelled = httpx.delete(f"{gw.v1}/runs/{run_id}", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {s["status"] for s in children(gw, run_id)} == {"cancelled"}
    thread.join(30)
    assert not thread.is_alive()
    assert "answer" not in outcome  # the client learns the run ended without an answer


def test_kimi_modes_run_swarm_in_the_terminal(tmp_path: Path,
                                              start_simulator: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", script(tmp_path, rules(["Topic 1", "Topic 2"])))
    config = tmp_path / "swarm.toml"
    config.write_text(toml(sim))
    env = {**os.environ, "KIMI_MODES_AGENT__RUNS_DB": str(tmp_path / "r.sqlite3"),
           "KIMI_MODES_AGENT__WORKSPACES": str(tmp_path / "ws")}
    done = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "run", "--mode", "swarm", "--config", str(config),
         "Research two topics."], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "Synthesis of 2 results." in done.stdout
    assert "[swarm] 2 sub-agents started" in done.stdout


def test_swarm_on_the_embedded_model(embedded_gateway: Any) -> None:
    """SmolLM2 as orchestrator and sub-agents; the fan-out is required, so the grammar makes
    the model write a valid spawn_subagents call whatever it would have written. (Thinking is
    off: the tiny model's emulated reasoning could use up max_tokens before the call.)"""
    response = oa(embedded_gateway).chat.completions.create(
        model="kimi-k2.5-swarm", max_tokens=160,
        messages=[{"role": "user", "content": "List two fruits and two colours."}],
        extra_body={"swarm": {"fan_out": "required", "subagent_max_steps": 1},
                    "agent": {"max_steps": 2}, "chat_template_kwargs": {"thinking": False}})
    assert response.choices[0].finish_reason in ("stop", "length")
    run = swarm_runs(embedded_gateway)[0]
    assert run["status"] == "completed"
    subs = children(embedded_gateway, run["id"])
    detail = httpx.get(f"{embedded_gateway.v1}/runs/{run['id']}").json()
    assert len(subs) >= 1, detail["steps"]
    assert all(s["status"] in ("completed", "failed") for s in subs)
    calls = [c for s in detail["steps"] for c in s["tool_calls"]]
    assert calls[0]["name"] == "spawn_subagents"
    assert json.loads(calls[0]["arguments"])["tasks"]
    assert detail["metrics"]["subagents"] == len(subs)


def _running_swarm(gw: Any, n: int) -> str:
    """The id of the swarm run once its ``n`` sub-agents are all running."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = [r for r in swarm_runs(gw) if r["status"] == "running"]
        if running and len([s for s in children(gw, running[0]["id"])
                            if s["status"] == "running"]) == n:
            return str(running[0]["id"])
        time.sleep(0.05)
    raise AssertionError("the swarm never had all its sub-agents running")


def test_a_streamed_swarm_whose_client_leaves_is_cancelled(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    """The client closes its stream mid-swarm: the run and its sub-agents end as cancelled
    (not ``running`` forever), and DELETE afterwards says it already finished."""
    tasks = [f"Topic {i}" for i in range(3)]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", script(tmp_path, rules(tasks, sub_ttft=60)))
    gw = start_gateway(toml(sim))
    stream = oa(gw).chat.completions.create(
        model="kimi-k2.5-swarm", messages=[{"role": "user", "content": "go"}], stream=True)
    next(iter(stream))
    run_id = _running_swarm(gw, 3)
    stream.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run = httpx.get(f"{gw.v1}/runs/{run_id}").json()
        if run["status"] != "running":
            break
        time.sleep(0.1)
    assert run["status"] == "cancelled", run["status"]
    assert {s["status"] for s in children(gw, run_id)} == {"cancelled"}
    after = httpx.delete(f"{gw.v1}/runs/{run_id}", timeout=10)
    assert after.status_code == 409 and after.json()["error"]["code"] == "run_finished"


def test_a_cancelled_run_tells_its_waiting_clients_in_their_api_shape(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    """DELETE /v1/runs/{id} while clients wait: the non-streamed one gets a 409 in OpenAI's
    error shape, the streamed one an error event and then the end of its stream."""
    tasks = [f"Topic {i}" for i in range(2)]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", script(tmp_path, rules(tasks, sub_ttft=60)))
    gw = start_gateway(toml(sim))
    body = {"model": "kimi-k2.5-swarm", "messages": [{"role": "user", "content": "go"}]}
    outcome: dict[str, Any] = {}

    def plain() -> None:
        outcome["plain"] = httpx.post(f"{gw.v1}/chat/completions", json=body, timeout=60)

    thread = threading.Thread(target=plain)
    thread.start()
    httpx.delete(f"{gw.v1}/runs/{_running_swarm(gw, 2)}", timeout=30)
    thread.join(30)
    answer = outcome["plain"]
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "run_cancelled"

    with httpx.stream("POST", f"{gw.v1}/chat/completions", json={**body, "stream": True},
                      timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        httpx.delete(f"{gw.v1}/runs/{_running_swarm(gw, 2)}", timeout=30)
        rest = [line for line in lines if line]
    errors = [json.loads(line[6:]) for line in rest if line.startswith("data: {")
              and "error" in json.loads(line[6:])]
    assert errors and errors[-1]["error"]["code"] == "run_cancelled"
    assert rest[-1] == "data: [DONE]"
