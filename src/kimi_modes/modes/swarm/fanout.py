"""The swarm's per-run state and our own fan-out tools, ``spawn_subagents`` and
``resume_subagents`` (aliases of AgentSwarm, :mod:`.agent_swarm`, which the orchestrator is
offered first).

One :class:`SwarmRun` per orchestrator run holds what its sub-agents did (their outcomes,
for the result text and the metrics) and the limits: at most ``max_per_fanout`` sub-agents in
one call and ``max_per_run`` over the run. A fan-out over a limit is refused with a message
saying how to split it (never trimmed silently). Each call waits for all of its sub-agents
and returns, per sub-agent, its status and final answer (answers shortened so that the whole
result fits ``output_limit``), and reports ``fanout`` / ``subagent_*`` events on the
orchestrator's run. Cancelling the call cancels every sub-agent it started.

``spawn_subagents`` is ``repairable``: arguments that fail validation get one repair round
(:func:`make_repairer`) before the call fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Sequence
from typing import Any

from kimi_modes.engines.base import ChatRequest, Engine, EngineError, UpstreamRejected
from kimi_modes.engines.message import collect
from kimi_modes.modes.agent.loop import Budgets, Emit
from kimi_modes.modes.swarm.metrics import SubagentOutcome, swarm_metrics
from kimi_modes.modes.swarm.workers import ResumeError, SwarmWorkers
from kimi_modes.runs import RunRecord
from kimi_modes.tools.base import RunContext, Tool, ToolResult

SPAWN = "spawn_subagents"
RESUME = "resume_subagents"

ORCHESTRATOR_NOTE = (
    "You are the orchestrator of an agent swarm. You do not use tools yourself: call "
    f"{SPAWN} to hand independent sub-tasks to sub-agents that run in parallel, each with its "
    "own context and tools (code execution, files, web); you see only their final answers. "
    "Write each sub-task so it can be done without seeing the others. Fan out again if their "
    "results call for more work, then write the final answer from their results. If one "
    "agent is enough, use one sub-agent; if no tools are needed, answer directly. A sub-agent "
    f"that failed can be continued with {RESUME}."
)

#: The template slots accepted: AgentSwarm's ``{{item}}`` and our earlier ``{item}``.
_TEMPLATE_SLOTS = ("{{item}}", "{item}")


def spawn_parameters() -> dict[str, Any]:
    """The fan-out tool's JSON schema (kept simple enough for grammar-constrained engines:
    ``tasks`` is required, so a forced call always carries some; AgentSwarm's
    ``prompt_template`` + ``items`` shape is :mod:`.agent_swarm`'s tool)."""
    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "description": "One self-contained instruction per sub-agent; or, with "
                               "template, the items to put into it.",
            },
            "template": {
                "type": "string",
                "description": "Optional: an instruction containing {{item}}; each entry of "
                               "tasks replaces {{item}} to make one sub-agent's task "
                               "(without it, the entry is appended to the instruction).",
            },
            "context": {
                "type": "string",
                "description": "Optional: background every sub-agent needs.",
            },
        },
        "required": ["tasks"],
    }


def fill_template(template: str, item: str) -> str:
    """``template`` with ``item`` in its ``{{item}}`` (or ``{item}``) slots; a template
    without a slot gets the item appended."""
    for slot in _TEMPLATE_SLOTS:
        if slot in template:
            return template.replace(slot, item)
    return f"{template.strip()}\n\n{item}"


class SwarmRun:
    """The state of one orchestrator run: its sub-agents and limits."""

    def __init__(self, run_id: str, emit: Emit, workers: SwarmWorkers, *,
                 max_per_fanout: int = 100, max_per_run: int = 100,
                 output_limit: int = 64_000, budgets: Budgets | None = None,
                 max_tokens: int | None = None) -> None:
        self.run_id = run_id
        self.emit = emit
        self.workers = workers
        self.max_per_fanout = max_per_fanout
        self.max_per_run = max_per_run
        self.output_limit = output_limit
        #: The sub-agents' budgets (None: the workers' settings) and per-call token limit.
        self.budgets = budgets
        self.max_tokens = max_tokens
        self.outcomes: list[SubagentOutcome] = []
        self.started = time.monotonic()
        self._lock = asyncio.Lock()  # index numbering and the per-run count

    @property
    def used(self) -> int:
        return len(self.outcomes)

    async def fan_out(self, tasks: Sequence[str], stage: int,
                      resumes: Sequence[tuple[str, str | None]] = (),
                      items: Sequence[str] | None = None) -> list[SubagentOutcome]:
        """Continue the sub-agents of ``resumes`` ((agent or run id, prompt to continue with)
        pairs; see :meth:`SwarmWorkers.prepare_resumes`), start one per task (``items``: the
        AgentSwarm item of each, recorded), wait for all, and return their outcomes (resumed
        ones first). Raises :class:`ResumeError` for a sub-agent that cannot be continued,
        ``SwarmRefused`` over the run's limit; either before anything starts."""
        prepared: list[tuple[RunRecord, SubagentOutcome, Budgets | None]] = []
        async with self._lock:
            left = self.max_per_run - self.used
            if len(tasks) + len(resumes) > left:
                raise SwarmRefused(
                    f"this swarm run may start {self.max_per_run} sub-agents in all and "
                    f"{left} are left; {len(tasks) + len(resumes)} were asked for. Merge "
                    "sub-tasks or answer with what you have.")
            continued = await self.workers.prepare_resumes(resumes, parent_id=self.run_id)
            for new, budgets in continued:
                if self.budgets is not None:
                    budgets = Budgets(min(budgets.max_steps, self.budgets.max_steps),
                                      budgets.max_tokens, self.budgets.max_time)
                prepared.append((new, self._outcome(new, stage), budgets))
            for number, task in enumerate(tasks):
                params = {"item": items[number]} if items is not None else None
                record = await self.workers.create(self.run_id, task, index=self.used,
                                                   params=params)
                prepared.append((record, self._outcome(record, stage), self.budgets))
        return await self._run_all(prepared, stage)

    async def resume(self, ids: Sequence[str], stage: int) -> list[SubagentOutcome]:
        """Continue sub-agents of this run that have unfinished work; returns their
        outcomes."""
        return await self.fan_out((), stage, [(i, None) for i in ids])

    def _outcome(self, record: RunRecord, stage: int) -> SubagentOutcome:
        outcome = self.workers.outcome(record, stage)
        self.outcomes.append(outcome)
        return outcome

    async def _run_all(self, started: list[tuple[RunRecord, SubagentOutcome, Budgets | None]],
                       stage: int) -> list[SubagentOutcome]:
        await self.emit("fanout", {
            "step": stage,
            "subagents": [{"id": r.id, "index": o.index, "task": o.task, "agent_id": o.agent_id,
                           **({"resumed_from": o.resumed_from} if o.resumed_from else {})}
                          for r, o, _ in started],
        })

        async def on_event(kind: str, data: dict[str, Any]) -> None:
            await self.emit(kind, data)

        ramp = self.workers.settings.ramp

        async def one(i: int, record: RunRecord, outcome: SubagentOutcome,
                      budgets: Budgets | None) -> None:
            if ramp is not None and ramp.delay(i) > 0:
                await asyncio.sleep(ramp.delay(i))
            await self.workers.run(record, outcome, on_event, budgets=budgets,
                                   max_tokens=self.max_tokens)
            await self.emit("subagent_finished", outcome.finished_event())

        tasks = [asyncio.create_task(one(i, r, o, b)) for i, (r, o, b) in enumerate(started)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for (record, _, _), task in zip(started, tasks, strict=True):
                if not task.done():
                    self.workers.cancel_from_parent(record.id, task)
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [o for _, o, _ in started]

    def result_text(self, outcomes: list[SubagentOutcome]) -> str:
        """The result of a ``spawn_subagents`` / ``resume_subagents`` call: a head line, then
        per sub-agent its status and answer (cut to share ``output_limit``) or its error with
        a resume hint."""
        done = sum(o.status == "completed" for o in outcomes)
        head = (f"{len(outcomes)} sub-agent{'s' if len(outcomes) != 1 else ''} finished: "
                f"{done} completed, {len(outcomes) - done} failed or cancelled.")
        share = answer_share(self.output_limit - len(head), len(outcomes))
        parts = [head]
        for o in outcomes:
            line = f"\n[{o.index + 1}] {o.agent_id} · {o.status}"
            if o.stop_reason not in (None, "answer"):
                line += f" ({o.stop_reason})"
            line += f" · {o.steps} steps, {o.tool_calls} tool calls"
            if o.status == "completed":
                line += "\n" + cut_answer(o.answer, share)
            else:
                line += f"\nError: {o.error or o.status}. Resume it with {RESUME} " \
                        f"{{\"ids\": [\"{o.agent_id}\"]}} to continue from its last finished " \
                        "step."
            parts.append(line)
        return "\n".join(parts)

    def metrics(self, orchestrator_steps: int, orchestrator_tool_calls: int,
                orchestrator_usage: dict[str, Any] | None) -> dict[str, Any]:
        return swarm_metrics(
            wall_time=time.monotonic() - self.started,
            orchestrator_steps=orchestrator_steps,
            orchestrator_tool_calls=orchestrator_tool_calls,
            orchestrator_usage=orchestrator_usage,
            outcomes=self.outcomes,
        )


def answer_share(room: int, count: int) -> int:
    """Characters each of ``count`` answers may keep so that all fit in ``room``."""
    return max(200, room // max(1, count) - 120)


def cut_answer(answer: str | None, share: int) -> str:
    """A sub-agent's answer, stripped, cut to ``share`` characters with a marker."""
    text = (answer or "").strip() or "(no answer)"
    if len(text) > share:
        text = text[:share] + f" [… {len(text) - share} characters cut]"
    return text


class SwarmRefused(Exception):
    """A fan-out the limits do not allow; the message goes back to the model."""


class SpawnTool:
    """``spawn_subagents``: fan a list of sub-tasks out to parallel sub-agents."""

    name = SPAWN
    repairable = True

    def __init__(self, swarm: SwarmRun, *, timeout: float) -> None:
        self.swarm = swarm
        self.timeout: float | None = timeout
        self.parameters = spawn_parameters()
        self.description = (
            f"Start one sub-agent per task (at most {swarm.max_per_fanout} per call), run "
            "them in parallel and return each one's status and final answer. Sub-agents "
            "have code execution, files and web tools but not this one.")

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        tasks = [str(t).strip() for t in arguments["tasks"]]
        template = arguments.get("template")
        if isinstance(template, str) and template.strip():
            tasks = [fill_template(template, t) for t in tasks]
        if not tasks or any(not t for t in tasks):
            return ToolResult("Error: every task must be a non-empty instruction.", True)
        if len(tasks) > self.swarm.max_per_fanout:
            return ToolResult(
                f"Error: at most {self.swarm.max_per_fanout} sub-agents per call; "
                f"{len(tasks)} were asked for. Split them over several calls.", True)
        context = arguments.get("context")
        if isinstance(context, str) and context.strip():
            tasks = [f"{context.strip()}\n\nYour sub-task: {t}" for t in tasks]
        try:
            outcomes = await self.swarm.fan_out(tasks, ctx.step)
        except SwarmRefused as exc:
            return ToolResult(f"Error: {exc}", True)
        return ToolResult(self.swarm.result_text(outcomes), meta={"subagents": len(tasks)})


class ResumeTool:
    """``resume_subagents``: continue failed sub-agents from their last finished step."""

    name = RESUME
    description = ("Continue sub-agents of this swarm that failed, were cancelled or ran out "
                   "of budget, from their last finished step; returns their results like "
                   f"{SPAWN}. (To ask one that answered a follow-up, use AgentSwarm's "
                   "resume_agent_ids.)")

    def __init__(self, swarm: SwarmRun, *, timeout: float) -> None:
        self.swarm = swarm
        self.timeout: float | None = timeout
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": {"ids": {"type": "array", "items": {"type": "string"},
                                   "minItems": 1, "description": "The sub-agents' run ids."}},
            "required": ["ids"],
        }

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        try:
            outcomes = await self.swarm.resume([str(i) for i in arguments["ids"]], ctx.step)
        except (ResumeError, SwarmRefused) as exc:
            return ToolResult(f"Error: {exc}", True)
        return ToolResult(self.swarm.result_text(outcomes),
                          meta={"subagents": len(arguments["ids"])})


def make_repairer(engine: Engine, *, max_tokens: int = 8192) -> Any:
    """A :data:`~kimi_modes.tools.toolset.Repairer` asking ``engine`` for corrected
    arguments, under the tool's JSON schema as ``response_format`` (constrained decoding on
    engines that have it: vLLM, SGLang, the embedded engine); an engine that rejects
    ``response_format`` is asked again without it."""

    async def repair(tool: Tool, arguments: str, problem: str) -> str | None:
        messages = [
            {"role": "system", "content": "You correct the JSON arguments of a function call. "
                                          "Reply with the corrected JSON object only."},
            {"role": "user", "content": (
                f"Function: {tool.name}\nJSON schema of its arguments: "
                f"{json.dumps(tool.parameters)}\nThe arguments written: {arguments}\n"
                f"Problem: {problem}\nWrite the corrected arguments, keeping their meaning "
                "and every item.")},
        ]
        fmt = {"type": "json_schema",
               "json_schema": {"name": tool.name, "schema": tool.parameters}}
        for extra in ({"response_format": fmt}, {}):
            request = ChatRequest(messages=messages, thinking=False, temperature=0.0,
                                  max_tokens=max_tokens, extra=extra)
            try:
                text = (await collect(engine.stream(request))).message.content or ""
            except UpstreamRejected:
                continue
            except EngineError:
                return None
            return _json_object(text)
        return None

    return repair


def _json_object(text: str) -> str | None:
    """The JSON object in a reply (code fences and surrounding prose tolerated)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    candidate = fenced.group(1) if fenced else text
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end <= start:
        return None
    body = candidate[start:end + 1]
    try:
        json.loads(body)
    except ValueError:
        return None
    return body
