"""Swarm mode against the simulated engine (its own process): the orchestrator's scripted
fan-outs, sub-agents as persisted runs, limits, the queue, repair, failure and resume,
cancellation and the metrics (continuing sub-agents: test_swarm_resume.py). Through the
gateway: tests/e2e/test_swarm_gateway.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from helpers.swarm import ORCH, SUB, close, events_of, make_swarm, run_swarm, write_script
from kimi_modes.engines.base import ChatRequest
from kimi_modes.modes.agent.loop import Budgets
from kimi_modes.modes.agent.run import RunCancelled
from kimi_modes.modes.options import AgentOptions, ModeOptions
from kimi_modes.modes.swarm import LaunchRamp


def fan_out_rules(tasks: list[str], *, sub_ttft: float = 0.0) -> list[dict[str, Any]]:
    return [
        {"name": "synthesis", "match": {**ORCH, "after_tool": True},
         "reply": {"content": "Synthesis done."}},
        {"name": "fan-out", "match": {**ORCH, "after_tool": False},
         "reply": {"reasoning": "Split it.",
                   "tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": tasks}}]}},
        {"name": "sub", "match": {**SUB, "user": r"Topic (?P<n>\d+)"},
         "reply": {"content": "Result for topic ${n}."}, "ttft": sub_ttft},
    ]


async def test_fan_out_of_three(start_simulator: Any, tmp_path: Path) -> None:
    tasks = ["Topic 1", "Topic 2", "Topic 3"]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", write_script(tmp_path, fan_out_rules(tasks)))
    swarm = await make_swarm(sim, tmp_path)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Synthesis done."
        record = await swarm.store.get(run_id)
        assert record is not None and record.status == "completed"
        assert record.stop_reason == "answer"
        subs = await swarm.store.list_runs(parent_id=run_id)
        assert len(subs) == 3
        assert {s.mode for s in subs} == {"subagent"}
        assert {s.status for s in subs} == {"completed"}
        fanout = await events_of(swarm.store, run_id, "fanout")
        assert [s["task"] for s in fanout[0]["subagents"]] == tasks
        finished = await events_of(swarm.store, run_id, "subagent_finished")
        assert sorted(f["answer"] for f in finished) == [
            "Result for topic 1.", "Result for topic 2.", "Result for topic 3."]
        # The orchestrator saw every answer in its tool result, in task order.
        result = (await events_of(swarm.store, run_id, "tool_result"))[0]["output"]
        assert result.index("topic 1.") < result.index("topic 2.") < result.index("topic 3.")
        metrics = record.metrics
        assert metrics == (await events_of(swarm.store, run_id, "swarm_metrics"))[0]
        # Stage 1: the orchestrator's step + one sub-agent step; stage 2: the synthesis.
        assert metrics["critical_steps"] == 3
        assert metrics["total_steps"] == 2 + 3
        assert metrics["subagents"] == 3 and metrics["subagents_failed"] == 0
        assert metrics["stages"] == [{"step": 1, "subagents": 3, "max_subagent_steps": 1,
                                      "critical": 2}]
        assert metrics["parallelism"] >= 0
        assert metrics["tokens"]["subagents"]["completion_tokens"] > 0
        sub = await swarm.store.get(subs[0].id)
        assert sub is not None and sub.parent_id == run_id
    finally:
        await close(swarm)


async def test_sub_agent_tool_steps_count_in_the_critical_path(
        start_simulator: Any, tmp_path: Path) -> None:
    rules = [
        {"match": {**ORCH, "after_tool": True}, "reply": {"content": "Done."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents",
                                   "arguments": {"tasks": ["Topic 1", "Long topic 2"]}}]}},
        {"match": {**SUB, "user": "Long", "step": 0},
         "reply": {"tool_calls": [{"name": "echo", "arguments": {"text": "a"}}]}},
        {"match": {**SUB, "user": "Long", "step": 1},
         "reply": {"tool_calls": [{"name": "echo", "arguments": {"text": "b"}}]}},
        {"match": {**SUB, "user": "Long", "step": 2}, "reply": {"content": "long done"}},
        {"match": SUB, "reply": {"content": "short done"}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    try:
        run_id, _ = await run_swarm(swarm)
        record = await swarm.store.get(run_id)
        assert record is not None
        m = record.metrics
        assert m["critical_steps"] == (1 + 3) + 1
        assert m["total_steps"] == 2 + 1 + 3
        assert m["tool_calls"] == 1 + 2
        progress = await events_of(swarm.store, run_id, "subagent_progress")
        assert any(p["last_tool"] == "echo" for p in progress)
    finally:
        await close(swarm)


async def test_hundred_sub_agents_queue_under_a_low_cap(start_simulator: Any,
                                                        tmp_path: Path) -> None:
    tasks = [f"Topic {i}" for i in range(100)]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", write_script(tmp_path, fan_out_rules(tasks, sub_ttft=0.05)))
    swarm = await make_swarm(sim, tmp_path, max_concurrent=8)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Synthesis done."
        finished = await events_of(swarm.store, run_id, "subagent_finished")
        assert len(finished) == 100
        assert {f["status"] for f in finished} == {"completed"}
        assert sorted(f["answer"] for f in finished) == sorted(
            f"Result for topic {i}." for i in range(100))
        # Never more than 8 running at once: sweep over the start/finish times.
        marks = sorted([(f["started_at"], 1) for f in finished]
                       + [(f["finished_at"], -1) for f in finished], key=lambda m: (m[0], m[1]))
        running = peak = 0
        for _, delta in marks:
            running += delta
            peak = max(peak, running)
        assert peak <= 8
        assert peak >= 2  # they did run side by side
        record = await swarm.store.get(run_id)
        assert record is not None and record.metrics["subagents"] == 100
        assert record.metrics["parallelism"] > 1.0
    finally:
        await close(swarm)


async def test_fan_out_over_the_limit_is_refused_not_trimmed(start_simulator: Any,
                                                             tmp_path: Path) -> None:
    rules = [
        {"match": {**ORCH, "after_tool": True, "tool_result": "at most 3"},
         "reply": {"content": "Too many for one call."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents", "arguments": {
             "tasks": [f"Topic {i}" for i in range(5)]}}]}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path, max_per_fanout=3)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Too many for one call."
        assert await swarm.store.list_runs(parent_id=run_id) == []
        result = (await events_of(swarm.store, run_id, "tool_result"))[0]
        assert result["is_error"] and "Split them over several calls" in result["output"]
    finally:
        await close(swarm)


async def test_invalid_fan_out_arguments_get_one_repair_round(start_simulator: Any,
                                                              tmp_path: Path) -> None:
    rules = [
        {"match": {"system": "correct the JSON arguments"},
         "reply": {"content": '```json\n{"tasks": ["Topic 7"]}\n```'}},
        {"match": {**ORCH, "after_tool": True}, "reply": {"content": "Repaired and done."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents",
                                   "arguments": '{"tasks": "Topic 7"'}]}},
        *fan_out_rules([])[2:],
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Repaired and done."
        result = (await events_of(swarm.store, run_id, "tool_result"))[0]
        assert not result["is_error"]
        assert result["meta"]["repaired"] is True
        assert "Result for topic 7." in result["output"]
        # The repair request asked for the schema as a constrained response format.
        stats = json.loads(await asyncio.to_thread(_get, sim.url + "/sim/stats"))
        formats = [r["body"].get("response_format") for r in stats["last_requests"]
                   if isinstance(r.get("body"), dict) and r["body"].get("response_format")]
        assert formats and formats[0]["type"] == "json_schema"
    finally:
        await close(swarm)


async def test_unrepairable_arguments_come_back_as_an_error(start_simulator: Any,
                                                            tmp_path: Path) -> None:
    rules = [
        {"match": {"system": "correct the JSON arguments"}, "reply": {"content": "no idea"}},
        {"match": {**ORCH, "after_tool": True, "tool_result": "repair round"},
         "reply": {"content": "Gave up."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents", "arguments": '{"tasks": 5}'}]}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Gave up."
        assert await swarm.store.list_runs(parent_id=run_id) == []
    finally:
        await close(swarm)


async def test_failed_sub_agent_is_reported_and_resumed_without_redoing_work(
        start_simulator: Any, tmp_path: Path) -> None:
    rules = [
        {"name": "resume", "match": {**ORCH, "after_tool": True, "step": 1,
                                     "tool_result": r"\[2\] (?P<id>run_\w+) · failed"},
         "reply": {"tool_calls": [{"name": "resume_subagents",
                                   "arguments": {"ids": ["${id}"]}}]}},
        {"match": {**ORCH, "after_tool": True}, "reply": {"content": "All done."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents",
                                   "arguments": {"tasks": ["Topic 1", "Flaky topic 2"]}}]}},
        {"match": {**SUB, "user": "Flaky", "step": 0},
         "reply": {"tool_calls": [{"name": "echo", "arguments": {"text": "step one"}}]}},
        # Its second step fails twice (the first try and the one retry), then works.
        {"match": {**SUB, "user": "Flaky", "step": 1}, "fault": "500", "times": 2,
         "reply": {"content": "never sent"}},
        {"match": {**SUB, "user": "Flaky", "step": 1}, "reply": {"content": "flaky done"}},
        {"match": SUB, "reply": {"content": "short done"}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path, step_retries=1)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "All done."
        finished = await events_of(swarm.store, run_id, "subagent_finished")
        failed = [f for f in finished if f["status"] == "failed"]
        assert len(failed) == 1 and "500" in failed[0]["error"]
        resumed = [f for f in finished if f["id"] != failed[0]["id"]
                   and f["index"] == failed[0]["index"]]
        assert resumed and resumed[0]["status"] == "completed"
        assert resumed[0]["answer"] == "flaky done"
        old = await swarm.store.get(failed[0]["id"])
        new = await swarm.store.get(resumed[0]["id"])
        assert old is not None and new is not None
        assert old.metrics["resumed_by"] == new.id
        assert new.params["resumed_from"] == old.id and new.parent_id == run_id
        # The finished step (the echo call and its result) was kept, not redone.
        assert swarm.echo.calls == ["step one"]
        assert any(m.get("role") == "tool" and m.get("content") == "echo: step one"
                   for m in new.messages)
        retries = await events_of(swarm.store, old.id, "step_retry")
        assert len(retries) == 1
        record = await swarm.store.get(run_id)
        assert record is not None and record.metrics["subagents"] == 3
        assert record.metrics["subagents_failed"] == 1
    finally:
        await close(swarm)


async def test_a_timed_out_sub_agent_is_reported(start_simulator: Any, tmp_path: Path) -> None:
    rules = [
        {"match": {**ORCH, "after_tool": True, "tool_result": "max_time"},
         "reply": {"content": "One timed out."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents",
                                   "arguments": {"tasks": ["Topic 1", "Slow topic 2"]}}]}},
        {"match": {**SUB, "user": "Slow"}, "reply": {"content": "too late"}, "ttft": 30},
        {"match": SUB, "reply": {"content": "quick"}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path, sub_budgets=Budgets(100, None, 1.0))
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "One timed out."
        finished = {f["answer"]: f for f in
                    await events_of(swarm.store, run_id, "subagent_finished")}
        assert finished["quick"]["status"] == "completed"
        slow = next(f for f in finished.values() if f["answer"] != "quick")
        assert slow["stop_reason"] == "max_time"
        assert slow["duration"] < 10
    finally:
        await close(swarm)


async def test_cancelling_the_swarm_cancels_every_sub_agent(start_simulator: Any,
                                                            tmp_path: Path) -> None:
    tasks = [f"Topic {i}" for i in range(6)]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", write_script(tmp_path, fan_out_rules(tasks, sub_ttft=60)))
    swarm = await make_swarm(sim, tmp_path, max_concurrent=4)
    try:
        request = ChatRequest(messages=[{"role": "user", "content": "go"}], thinking=True)
        stream = swarm.service.stream(request)

        async def consume() -> list[Any]:
            return [e async for e in stream]

        consumer = asyncio.create_task(consume())
        for _ in range(200):
            runs = await swarm.store.list_runs(mode="subagent", status="running")
            if len(runs) == 4:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the sub-agents never started")
        run_id = (await swarm.store.list_runs(mode="swarm"))[0].id
        assert await swarm.store.cancel(run_id)
        # The consumer is told in words: the run was cancelled (DELETE /v1/runs/{id}).
        with pytest.raises(RunCancelled):
            await asyncio.wait_for(consumer, 15)
        record = await swarm.store.get(run_id)
        assert record is not None and record.status == "cancelled"
        subs = await swarm.store.list_runs(parent_id=run_id)
        assert len(subs) == 6
        assert {s.status for s in subs} == {"cancelled"}
        # The simulator saw the sub-agents' requests go away.
        for _ in range(100):
            stats = json.loads(await asyncio.to_thread(_get, sim.url + "/sim/stats"))
            if stats["cancelled"] >= 4:
                break
            await asyncio.sleep(0.05)
        assert stats["cancelled"] >= 4
    finally:
        await close(swarm)


async def test_cancelling_one_sub_agent_reports_it_and_the_swarm_goes_on(
        start_simulator: Any, tmp_path: Path) -> None:
    rules = [
        {"match": {**ORCH, "after_tool": True, "tool_result": "cancelled"},
         "reply": {"content": "One was cancelled."}},
        {"match": {**ORCH, "after_tool": False},
         "reply": {"tool_calls": [{"name": "spawn_subagents",
                                   "arguments": {"tasks": ["Topic 1", "Stuck topic 2"]}}]}},
        {"match": {**SUB, "user": "Stuck"}, "reply": {"content": "never"}, "ttft": 60},
        {"match": SUB, "reply": {"content": "quick"}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    try:
        async def cancel_stuck() -> None:
            for _ in range(200):
                for run in await swarm.store.list_runs(mode="subagent", status="running"):
                    if "Stuck" in run.task:
                        await swarm.store.cancel(run.id)
                        return
                await asyncio.sleep(0.05)

        canceller = asyncio.create_task(cancel_stuck())
        run_id, answer = await asyncio.wait_for(run_swarm(swarm), 30)
        await canceller
        assert answer == "One was cancelled."
        record = await swarm.store.get(run_id)
        assert record is not None and record.status == "completed"
        statuses = sorted(s.status for s in await swarm.store.list_runs(parent_id=run_id))
        assert statuses == ["cancelled", "completed"]
    finally:
        await close(swarm)


async def test_declining_to_fan_out(start_simulator: Any, tmp_path: Path) -> None:
    rules = [{"match": ORCH, "reply": {"content": "Simple: 4."}}]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    try:
        run_id, answer = await run_swarm(swarm, "2+2?")
        assert answer == "Simple: 4."
        record = await swarm.store.get(run_id)
        assert record is not None
        assert record.metrics["subagents"] == 0 and record.metrics["critical_steps"] == 1
    finally:
        await close(swarm)


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_a_request_time_limit_bounds_the_fan_out(start_simulator: Any,
                                                       tmp_path: Path) -> None:
    tasks = ["Topic 1", "Topic 2"]
    sim = start_simulator("--ttft", "0", "--tpot", "0",
                          "--script", write_script(tmp_path, fan_out_rules(tasks, sub_ttft=60)))
    swarm = await make_swarm(sim, tmp_path)
    try:
        request = ChatRequest(messages=[{"role": "user", "content": "go"}], thinking=True)
        options = ModeOptions(agent=AgentOptions(max_time=1.5))
        started = asyncio.get_running_loop().time()
        async for _ in swarm.service.stream(request, options):
            pass
        assert asyncio.get_running_loop().time() - started < 20
        run = (await swarm.store.list_runs(mode="swarm"))[0]
        assert run.status == "completed" and run.stop_reason == "max_time"
        subs = await swarm.store.list_runs(parent_id=run.id)
        assert {s.status for s in subs} == {"cancelled"}
        result = (await events_of(swarm.store, run.id, "tool_result"))[0]
        assert result["is_error"] and "did not finish within 1.5 s" in result["output"]
    finally:
        await close(swarm)


async def test_templates_and_two_fan_outs_in_one_step(start_simulator: Any,
                                                      tmp_path: Path) -> None:
    rules = [
        {"match": {**ORCH, "after_tool": True}, "reply": {"content": "Both done."}},
        {"match": {**ORCH, "after_tool": False}, "reply": {"tool_calls": [
            {"name": "spawn_subagents",
             "arguments": {"tasks": ["1", "2"], "template": "Research Topic {item} well."}},
            {"name": "spawn_subagents",
             "arguments": {"tasks": ["Topic 3"], "template": "Please research:",
                           "context": "Background for all."}}]}},
        *fan_out_rules([])[2:],
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Both done."
        tasks = sorted(s["task"] for f in await events_of(swarm.store, run_id, "fanout")
                       for s in f["subagents"])
        assert tasks == ["Background for all.\n\nYour sub-task: Please research:\n\nTopic 3",
                         "Research Topic 1 well.", "Research Topic 2 well."]
        record = await swarm.store.get(run_id)
        assert record is not None
        # Both fan-outs ran in the same orchestrator step: one stage of three sub-agents.
        assert record.metrics["stages"] == [{"step": 1, "subagents": 3,
                                             "max_subagent_steps": 1, "critical": 2}]
        indexes = sorted(s["index"] for f in await events_of(swarm.store, run_id, "fanout")
                         for s in f["subagents"])
        assert indexes == [0, 1, 2]
    finally:
        await close(swarm)


def test_agent_swarm_checks_every_rule_before_anything_starts() -> None:
    from kimi_modes.modes.swarm.agent_swarm import SwarmCallError, plan

    launches, resumes = plan({"description": "d", "prompt_template": "Review {{item}} now.",
                              "items": ["a.py", "b.py"], "resume_agent_ids": {"run_1": "go"}})
    assert launches == [("a.py", "Review a.py now."), ("b.py", "Review b.py now.")]
    assert resumes == [("run_1", "go")]
    assert plan({"description": "d", "resume_agent_ids": {"run_1": "continue"}})[0] == []
    for arguments, message in [
        ({"prompt_template": "x {{item}}", "items": ["one"]}, "at least 2 items"),
        ({"items": ["a", "b"]}, "prompt_template is required"),
        ({"prompt_template": "no slot", "items": ["a", "b"]}, "must include"),
        ({"prompt_template": "same", "items": ["a", "b"], "x": 1}, "must include"),
        ({"prompt_template": "{{item}}", "items": ["a", "a"]}, "Duplicate subagent prompts"),
        ({"prompt_template": "{{item}}", "items": [str(i) for i in range(129)]}, "at most 128"),
    ]:
        with pytest.raises(SwarmCallError, match=message):
            plan({"description": "d", **arguments})


def test_agent_swarm_report_is_one_envelope_with_resume_hints() -> None:
    from kimi_modes.modes.swarm.agent_swarm import render_report
    from kimi_modes.modes.swarm.metrics import SubagentOutcome

    done = SubagentOutcome("run_a", 0, "t", 1, status="completed", answer="A" * 5000,
                           item='x"<y>')
    failed = SubagentOutcome("run_b", 1, "t", 1, status="failed", error="boom", item="z")
    text = render_report([done, failed], output_limit=2000)
    assert text.startswith("<agent_swarm_result>\n<summary>completed: 1, failed: 1</summary>")
    assert "<resume_hint>" in text and 'agent_id="run_b"' in text
    assert 'item="x&quot;&lt;y&gt;"' in text and "characters cut" in text
    assert len(text) < 2500 and text.endswith("</agent_swarm_result>")


def test_the_launch_ramp_is_kimi_codes() -> None:
    ramp = LaunchRamp()
    assert [ramp.delay(i) for i in range(8)] == pytest.approx(
        [0, 0, 0, 0, 0, 0.7, 1.4, 2.1])


async def test_agent_swarm_fans_out_with_a_ramp(start_simulator: Any, tmp_path: Path) -> None:
    """The orchestrator calls AgentSwarm with a template and 4 items; with a ramp of 2 then
    one every 0.3 s the last sub-agent starts about 0.6 s after the first."""
    rules = [
        {"match": {"tool": "AgentSwarm", "after_tool": True},
         "reply": {"content": "Done."}},
        {"match": {"tool": "AgentSwarm", "after_tool": False},
         "reply": {"tool_calls": [{"name": "AgentSwarm", "arguments": {
             "description": "d", "prompt_template": "Topic {{item}}",
             "items": ["1", "2", "3", "4"]}}]}},
        {"match": {**SUB, "user": r"Topic (?P<n>\d+)"}, "reply": {"content": "R${n}."}},
    ]
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", write_script(tmp_path, rules))
    swarm = await make_swarm(sim, tmp_path)
    swarm.service.workers.settings = replace(swarm.service.workers.settings,
                                             ramp=LaunchRamp(2, 0.3))
    try:
        run_id, answer = await run_swarm(swarm)
        assert answer == "Done."
        subs = await swarm.store.list_runs(parent_id=run_id)
        assert sorted(s.task for s in subs) == [f"Topic {i}" for i in "1234"]
        started = sorted(e["started_at"] for e in await events_of(
            swarm.store, run_id, "subagent_finished"))
        assert started[-1] - started[0] == pytest.approx(0.6, abs=0.25)
        step = [e for e in await swarm.store.events(run_id) if e.type == "tool_result"]
        assert "<agent_swarm_result>" in json.dumps([e.data for e in step])
    finally:
        await close(swarm)
