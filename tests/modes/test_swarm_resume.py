"""Continuing sub-agents, as kimi-code's AgentSwarm does (``resume_agent_ids``): a sub-agent
that answered gets follow-up prompts, call after call, from its transcript so far and under
the same agent id; every continuation is a run of its own, linked to the one before; what
cannot be continued is refused before anything starts. Against the simulated engine; through
the gateway: tests/e2e/test_swarm_gateway.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from helpers.swarm import SUB, close, events_of, make_swarm, run_swarm, write_script
from kimi_modes.engines.scripted import ScriptedEngine
from kimi_modes.modes.swarm import ResumeError, SwarmWorkers
from kimi_modes.runs import RunRecord, RunStore

SWARM = {"tool": "AgentSwarm"}


def resume_call(pattern: str, prompt: str, step: int) -> dict[str, Any]:
    """An orchestrator rule: after its ``step``-th step, continue the sub-agent whose report
    line matches ``pattern`` (its ``id`` group) with ``prompt``."""
    arguments = json.dumps({"description": "follow up", "resume_agent_ids": {"${id}": prompt}})
    return {"match": {**SWARM, "after_tool": True, "step": step, "tool_result": pattern},
            "reply": {"tool_calls": [{"name": "AgentSwarm", "arguments": arguments}]}}


FOLLOW_UP_RULES = [
    resume_call(r'<subagent agent_id="(?P<id>run_\w+)" item="alpha" outcome="completed">',
                "Follow-up one: and beta?", 1),
    resume_call(r'<subagent mode="resume" agent_id="(?P<id>run_\w+)" item="alpha" '
                r'outcome="completed">', "Follow-up two: and gamma?", 2),
    {"match": {**SWARM, "after_tool": True}, "reply": {"content": "Done."}},
    {"match": {**SWARM, "after_tool": False},
     "reply": {"tool_calls": [{"name": "AgentSwarm", "arguments": {
         "description": "study", "prompt_template": "Study {{item}}",
         "items": ["alpha", "delta"]}}]}},
    {"match": {**SUB, "user": "Follow-up two"}, "reply": {"content": "Gamma too."}},
    {"match": {**SUB, "user": "Follow-up one"}, "reply": {"content": "Beta too."}},
    {"match": {**SUB, "user": r"Study (?P<x>\w+)"}, "reply": {"content": "Studied ${x}."}},
]


def transcript(record: RunRecord) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in record.messages]


async def test_a_completed_sub_agent_answers_follow_ups_under_its_agent_id(
        start_simulator: Any, tmp_path: Path) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", write_script(tmp_path, FOLLOW_UP_RULES))
    swarm = await make_swarm(sim, tmp_path, router=True)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Done."
        results = [e["output"] for e in await events_of(swarm.store, run_id, "tool_result")]
        assert len(results) == 3
        first = await swarm.store.list_runs(parent_id=run_id)
        assert len(first) == 4  # alpha, delta, and alpha's two continuations
        alpha = re.search(r'agent_id="(run_\w+)" item="alpha"', results[0])
        assert alpha is not None
        agent = alpha.group(1)
        # Each follow-up's report names the same agent, marked as a resume, with its item.
        for output, text in ((results[1], "Beta too."), (results[2], "Gamma too.")):
            assert output == (
                "<agent_swarm_result>\n<summary>completed: 1</summary>\n"
                f'<subagent mode="resume" agent_id="{agent}" item="alpha" '
                f'outcome="completed">{text}</subagent>\n</agent_swarm_result>')
        # The run store: one run per continuation, each linked to the one before.
        runs = [await swarm.store.get(agent)]
        while runs[-1] is not None and runs[-1].metrics.get("resumed_by"):
            runs.append(await swarm.store.get(runs[-1].metrics["resumed_by"]))
        assert len(runs) == 3 and all(r is not None for r in runs)
        one, two, three = (r for r in runs if r is not None)
        assert (two.params["resumed_from"], three.params["resumed_from"]) == (one.id, two.id)
        assert two.params["agent_id"] == three.params["agent_id"] == agent == one.id
        assert {r.parent_id for r in runs if r is not None} == {run_id}
        assert {r.status for r in runs if r is not None} == {"completed"}
        assert two.params["item"] == "alpha" and two.params["index"] == one.params["index"]
        assert three.final_answer == "Gamma too."
        # The last continuation started from everything the sub-agent had said and heard.
        assert transcript(three)[1:] == [
            ("user", "Study alpha"), ("assistant", "Studied alpha."),
            ("user", "Follow-up one: and beta?"), ("assistant", "Beta too."),
            ("user", "Follow-up two: and gamma?")]
        # ...and so did the engine, under one session id (the agent id) for all three runs.
        sent = [r for r in sim.stats()["last_requests"]
                if "Study alpha" in json.dumps(r["body"]["messages"])]
        assert [[m["content"] for m in r["body"]["messages"] if m["role"] != "system"]
                for r in sent][-1] == [c for _, c in transcript(three)[1:]]
        assert {r["headers"].get("x-session-id") for r in sent} == {agent}
        fanouts = await events_of(swarm.store, run_id, "fanout")
        assert [s["agent_id"] for f in fanouts for s in f["subagents"]].count(agent) == 3
        record = await swarm.store.get(run_id)
        assert record is not None and record.metrics["subagents"] == 4
    finally:
        await close(swarm)


async def make_workers(tmp_path: Path) -> tuple[SwarmWorkers, RunStore]:
    """Workers that make no model call here: the runs are created and ended by hand."""
    store = RunStore(tmp_path / "runs.sqlite3")
    await store.open()
    return SwarmWorkers(ScriptedEngine([]), store, workspaces=tmp_path / "ws",
                        tools_factory=list), store


async def test_what_cannot_be_continued_is_refused_before_anything_is_created(
        tmp_path: Path) -> None:
    workers, store = await make_workers(tmp_path)
    try:
        swarm = await store.create_run(mode="swarm", model="m", messages=[])
        sub = await workers.create(swarm.id, "Study alpha", index=0)
        other = await workers.create(swarm.id, "Study beta", index=1)
        with pytest.raises(ResumeError, match="still queued"):
            await workers.prepare_resumes([(sub.id, "more")])
        answer = {"role": "assistant", "content": "Studied alpha."}
        await store.emit(sub.id, "checkpoint", {"step": 1, "messages": [answer]})
        await store.finish(sub.id, "completed", "answer", answer, None)
        await store.finish(other.id, "failed", "error", None, None, error="boom")
        with pytest.raises(ResumeError, match="with a prompt") as info:
            await workers.prepare_resumes([(sub.id, None)])
        assert info.value.status == 409
        with pytest.raises(ResumeError, match="not a sub-agent of this swarm"):
            await workers.prepare_resumes([(sub.id, "more")], parent_id="run_other")
        with pytest.raises(ResumeError) as info:
            await workers.prepare_resumes([(other.id, None), ("run_nope", "x")])
        assert info.value.status == 404
        created = await workers.prepare_resumes([(sub.id, "And beta?"), (other.id, None)])
        (new, budgets), (_, failed_budgets) = created
        assert budgets.max_steps == workers.settings.budgets.max_steps  # a new turn
        assert failed_budgets.max_steps == workers.settings.budgets.max_steps  # none done
        assert new.messages[-2:] == [answer, {"role": "user", "content": "And beta?"}]
        # Named by its first run or its latest, it is the same sub-agent, and it is queued.
        await store.finish(new.id, "completed", "answer", answer, None)
        count = len(await store.list_runs(parent_id=swarm.id))
        with pytest.raises(ResumeError, match="same sub-agent"):
            await workers.prepare_resumes([(sub.id, "a"), (new.id, "b")])
        assert len(await store.list_runs(parent_id=swarm.id)) == count
        [(third, _)] = await workers.prepare_resumes([(sub.id, "And gamma?")])
        assert third.params["resumed_from"] == new.id and third.params["agent_id"] == sub.id
    finally:
        await store.close()
