"""Several models at once: one gateway in front of a simulated K3 and a simulated K2.6, all
four modes of each through the official openai and anthropic SDKs, and a swarm whose K3
orchestrator calls AgentSwarm and whose sub-agents run on K2.6."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from helpers.processes import start_process

pytestmark = pytest.mark.slow

ORCH = {"tool": "AgentSwarm"}
SUB = {"system": "sub-agent of an agent swarm"}
RULES = [
    {"match": {**ORCH, "after_tool": True, "tool_result": r"completed: (?P<k>\d+)"},
     "reply": {"reasoning": "Merging.", "content": "Synthesis of ${k} results."}},
    {"match": {**ORCH, "after_tool": False},
     "reply": {"reasoning": "Split it.", "tool_calls": [{"name": "AgentSwarm", "arguments": {
         "description": "topics", "prompt_template": "Research topic {{item}} in depth.",
         "items": ["1", "2", "3"]}}]}},
    {"match": {**SUB, "user": r"topic (?P<n>\d+)"},
     "reply": {"content": "Result for topic ${n}."}},
]
FAMILIES = ("k3", "k2.6")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The two simulators and the gateway: the K3 upstream names no family and no model (read
    from its /v1/models), the K2.6 one only its model name; K2.6 runs the sub-agents."""
    tmp = tmp_path_factory.mktemp("models")
    script = tmp / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    procs = []
    try:
        k3 = start_process(["simulate", "--family", "k3", "--model", "moonshotai/Kimi-K3",
                     "--ttft", "0", "--tpot", "0", "--script", str(script)], tmp / "k3.log")
        procs.append(k3)
        k26 = start_process(["simulate", "--family", "k2.6", "--model", "moonshotai/Kimi-K2.6",
                      "--ttft", "0", "--tpot", "0", "--script", str(script)], tmp / "k26.log")
        procs.append(k26)
        config = tmp / "gateway.toml"
        config.write_text(
            f'[[upstreams]]\nname = "k3"\nurl = "{k3.v1}"\n\n'
            f'[[upstreams]]\nname = "k26"\nurl = "{k26.v1}"\nmodel = "moonshotai/Kimi-K2.6"\n\n'
            f'[agent]\nruns_db = "{tmp / "runs.sqlite3"}"\nworkspaces = "{tmp / "ws"}"\n'
            'allow_unsandboxed = true\n\n[swarm]\nworker_model = "k2.6"\n'
            'launch_ramp = true\nlaunch_burst = 2\nlaunch_interval = 0.2\n')
        gw = start_process(["serve", "--no-access-log", "--config", str(config)], tmp / "gw.log")
        procs.append(gw)
        yield {"gw": gw, "k3": k3, "k2.6": k26}
    finally:
        for proc in procs:
            proc.stop()


def requests_to(sim: Any) -> int:
    return int(httpx.get(sim.url + "/sim/stats").json()["requests"])


def test_models_lists_both_families_and_the_aliases(served: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=served["gw"].v1, api_key="none", max_retries=0)
    listed = {m.id: m.model_dump() for m in client.models.list().data}
    for family in FAMILIES:
        for mode in ("instant", "thinking", "agent", "swarm"):
            entry = listed[f"kimi-{family}-{mode}"]
            assert (entry["family"], entry["mode"]) == (family, mode)
    for mode in ("instant", "thinking", "agent", "swarm"):
        assert listed[f"kimi-{mode}"]["family"] == "k3"  # the first upstream's model
    assert "thinking off" in listed["kimi-k3-instant"]["description"]
    assert not any(i.startswith("kimi-k2.5") for i in listed)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="kimi-k2.5-instant",
                                       messages=[{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["instant", "thinking", "agent"])
def test_every_mode_through_both_sdks_on_its_own_upstream(
        served: dict[str, Any], family: str, mode: str) -> None:
    gw, sim = served["gw"], served[family]
    other = served["k2.6" if family == "k3" else "k3"]
    before, before_other = requests_to(sim), requests_to(other)
    model = f"kimi-{family}-{mode}"
    answer = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}], max_tokens=64)
    assert answer.choices[0].message.content and answer.model == model
    reasoning = getattr(answer.choices[0].message, "reasoning_content", None)
    if mode == "instant":
        assert reasoning is None
        body = httpx.get(sim.url + "/sim/stats").json()["last_requests"][-1]["body"]
        assert body["chat_template_kwargs"]["thinking"] is False
    message = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0).messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Say hello"}])
    assert any(b.type == "text" and b.text for b in message.content)
    assert requests_to(sim) >= before + 2 and requests_to(other) == before_other


def test_a_k3_swarm_with_k2_6_workers_through_both_sdks(served: dict[str, Any]) -> None:
    gw = served["gw"]
    k3_before, k26_before = requests_to(served["k3"]), requests_to(served["k2.6"])
    answer = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0,
                           timeout=120).chat.completions.create(
        model="kimi-k3-swarm", messages=[{"role": "user", "content": "Three topics."}])
    assert answer.choices[0].message.content == "Synthesis of 3 results."
    runs = httpx.get(gw.v1 + "/runs", params={"mode": "swarm"}).json()["data"]
    run = next(r for r in runs if r["model"] == "kimi-k3-swarm")
    subs = httpx.get(gw.v1 + "/runs", params={"parent_id": run["id"]}).json()["data"]
    assert len(subs) == 3 and {s["model"] for s in subs} == {"kimi-k2.6-instant"}
    assert {s["status"] for s in subs} == {"completed"}
    # Orchestrator steps (fan out, synthesise) on K3; the three sub-agents on K2.6.
    assert requests_to(served["k3"]) - k3_before == 2
    assert requests_to(served["k2.6"]) - k26_before == 3
    detail = httpx.get(f"{gw.v1}/runs/{run['id']}").json()
    call = detail["steps"][0]["tool_calls"][0]
    assert call["name"] == "AgentSwarm"
    result = httpx.get(f"{gw.v1}/runs/{run['id']}/events").text
    assert "agent_swarm_result" in result
    message = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0,
                                  timeout=120).messages.create(
        model="kimi-k2.6-swarm", max_tokens=4096,
        messages=[{"role": "user", "content": "Three topics."}])
    assert "".join(b.text for b in message.content if b.type == "text") == \
        "Synthesis of 3 results."
