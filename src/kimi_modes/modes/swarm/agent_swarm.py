"""``AgentSwarm``: the fan-out tool contract Kimi models were trained with (kimi-code's).

The orchestrator is offered this tool first; ``spawn_subagents`` and ``resume_subagents``
(:mod:`.fanout`) stay as aliases. Arguments, as kimi-code's AgentSwarm takes them:

- ``description``: a short description of the whole swarm (required);
- ``prompt_template`` containing ``{{item}}`` and ``items`` (up to 128): one new sub-agent
  per item, the item put in the template; the filled prompts must be distinct;
- ``resume_agent_ids``: ``{agent_id: prompt}``, sub-agents of this swarm to continue, each
  from its transcript so far with the prompt as its next user message, keeping its agent id:
  one that answered gets a follow-up (as often as asked, call after call), one that failed,
  was cancelled or ran out of budget goes on from its last finished step; they start before
  the new ones;
- ``subagent_type``: accepted and recorded; every sub-agent here has the same tools.

At least 2 items unless ``resume_agent_ids`` is given. Every rule is checked before any
sub-agent starts; a violation is an error result the model can correct. AgentSwarm must be the
only tool call of its response: a second fan-out call in the same step is refused (not run).
The answer is one aggregated report, kimi-code's envelope::

    <agent_swarm_result>
    <summary>completed: 2, failed: 1</summary>
    <resume_hint>Call AgentSwarm with resume_agent_ids ...</resume_hint>
    <subagent agent_id="run_..." item="src/a.py" outcome="completed">answer</subagent>
    <subagent mode="resume" agent_id="run_..." item="src/b.py" outcome="failed">...</subagent>
    ...
    </agent_swarm_result>
"""

from __future__ import annotations

from typing import Any

from kimi_modes.modes.swarm.fanout import (
    RESUME,
    SPAWN,
    SwarmRefused,
    SwarmRun,
    answer_share,
    cut_answer,
)
from kimi_modes.modes.swarm.metrics import SubagentOutcome
from kimi_modes.modes.swarm.workers import ResumeError
from kimi_modes.tools.base import RunContext, ToolResult

AGENT_SWARM = "AgentSwarm"
PLACEHOLDER = "{{item}}"
#: kimi-code's MAX_AGENT_SWARM_SUBAGENTS.
MAX_SUBAGENTS = 128

ORCHESTRATOR_NOTE = (
    "You are the orchestrator of an agent swarm. You do not use tools yourself: call "
    f"{AGENT_SWARM} to hand independent sub-tasks to sub-agents that run in parallel, each "
    "with its own context and tools (code execution, files, web); you see only their final "
    "answers. Write each sub-task so it can be done without seeing the others. Fan out again "
    "if their results call for more work, then write the final answer from their results. "
    f"If one agent is enough, use {SPAWN} with one task; if no tools are needed, answer "
    f"directly. {AGENT_SWARM}'s resume_agent_ids continues a sub-agent with its context: "
    "ask one that answered a follow-up, or let one that failed go on (a failed one also "
    f"with {RESUME})."
)

_DESCRIPTION = (
    "Launch multiple subagents from one prompt template, existing agent resumes, or both. "
    "Use AgentSwarm when many subagents should run the same kind of task over different "
    f"inputs. The placeholder is exactly {PLACEHOLDER}: with prompt_template \"Review "
    f"{PLACEHOLDER} for likely regressions.\" and items [\"src/a.py\", \"src/b.py\"], "
    "AgentSwarm launches two subagents with those two prompts. Use resume_agent_ids to "
    "continue subagents of this swarm that already exist, with everything they did so far: "
    "map each agent id to the prompt it continues with, a follow-up question for one that "
    "completed, usually \"continue\" for one that failed or ran out of budget; a subagent "
    "can be resumed again in later calls. Do not repeat resumed work in items. Enforced "
    "before any subagent starts: at least 2 items unless resume_agent_ids is given; with "
    f"items, prompt_template is required and contains {PLACEHOLDER}; the "
    f"filled prompts are distinct; at most {MAX_SUBAGENTS} subagents. Launches are queued "
    "automatically. If AgentSwarm is called, it must be the only tool call in the response."
)


def agent_swarm_parameters() -> dict[str, Any]:
    """AgentSwarm's JSON schema (kimi-code's fields, without its ``fork`` and ``model``)."""
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "properties": {
            "description": {**text, "description": "Short description for the whole swarm."},
            "subagent_type": {**text, "description": "Subagent type for every new subagent "
                                                     "(recorded; all have the same tools)."},
            "prompt_template": {**text, "description": "Prompt template for each subagent; "
                                                       f"{PLACEHOLDER} is replaced with each "
                                                       "item."},
            "items": {"type": "array", "items": text, "maxItems": MAX_SUBAGENTS,
                      "description": f"Values used to fill {PLACEHOLDER}. Each item launches "
                                     "one new subagent."},
            "resume_agent_ids": {"type": "object", "additionalProperties": text,
                                 "description": "Map of an existing subagent's agent_id to "
                                                "the prompt it resumes with (its next "
                                                "message); these start before the new "
                                                "ones."},
        },
        "required": ["description"],
        "additionalProperties": False,
    }


class SwarmCallError(ValueError):
    """An AgentSwarm call that breaks a rule; the message goes back to the model."""


def plan(arguments: dict[str, Any], max_per_call: int = MAX_SUBAGENTS
         ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (item, prompt) pairs to launch and the (agent id, prompt) pairs to resume for an
    AgentSwarm call, in kimi-code's order of checks; :class:`SwarmCallError` for a call that
    breaks a rule (nothing has started then)."""
    resumes = [(str(k).strip(), str(v).strip())
               for k, v in (arguments.get("resume_agent_ids") or {}).items()]
    items = [str(i).strip() for i in arguments.get("items") or []]
    if not resumes and len(items) < 2:
        raise SwarmCallError(f"{AGENT_SWARM} requires at least 2 items unless "
                             "resume_agent_ids is provided.")
    limit = min(max_per_call, MAX_SUBAGENTS)
    if len(items) + len(resumes) > limit:
        raise SwarmCallError(f"{AGENT_SWARM} supports at most {limit} subagents per call; "
                             f"{len(items) + len(resumes)} were asked for. Split them over "
                             "several calls.")
    template = str(arguments.get("prompt_template") or "").strip()
    if items and not template:
        raise SwarmCallError("prompt_template is required when items are provided.")
    if template and PLACEHOLDER not in template:
        raise SwarmCallError(f"prompt_template must include the {PLACEHOLDER} placeholder.")
    launches: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for number, item in enumerate(items, 1):
        prompt = template.replace(PLACEHOLDER, item)
        if prompt in seen:
            raise SwarmCallError(f"Duplicate subagent prompts from items {seen[prompt]} and "
                                 f"{number}. {AGENT_SWARM} requires distinct subagents.")
        seen[prompt] = number
        launches.append((item, prompt))
    return launches, resumes


def render_report(outcomes: list[SubagentOutcome], output_limit: int) -> str:
    """The aggregated result of one call: kimi-code's ``<agent_swarm_result>`` envelope
    (answers cut so that the whole fits ``output_limit``). Each sub-agent is named by its
    agent id (the same after any number of continuations), with the item it was launched
    for; a continued one is marked ``mode="resume"``. The resume hint is there when any
    did not complete."""
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("completed", "failed", "cancelled")}
    others = len(outcomes) - sum(counts.values())
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
    if others:
        summary += f"{', ' if summary else ''}other: {others}"
    lines = ["<agent_swarm_result>", f"<summary>{summary}</summary>"]
    if any(o.status != "completed" for o in outcomes):
        lines.append(f"<resume_hint>Call {AGENT_SWARM} with resume_agent_ids using the "
                     "agent_id values in this result to continue unfinished work from its "
                     "last finished step.</resume_hint>")
    share = answer_share(output_limit - 200 * len(outcomes), len(outcomes))
    for o in outcomes:
        attrs = ' mode="resume"' if o.resumed_from else ""
        attrs += f' agent_id="{o.agent_id}"'
        if o.item is not None:
            attrs += f' item="{_attribute(o.item)}"'
        if o.status == "completed":
            body = cut_answer(o.answer, share)
        else:
            body = f"{o.error or o.status} (stop: {o.stop_reason or 'none'}; {o.steps} steps)"
        lines.append(f'<subagent{attrs} outcome="{o.status}">{body}</subagent>')
    lines.append("</agent_swarm_result>")
    return "\n".join(lines)


def _attribute(value: str) -> str:
    return (value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


class AgentSwarmTool:
    """``AgentSwarm``: see the module docstring."""

    name = AGENT_SWARM
    description = _DESCRIPTION
    repairable = True

    def __init__(self, swarm: SwarmRun, *, timeout: float) -> None:
        self.swarm = swarm
        self.timeout: float | None = timeout
        self.parameters = agent_swarm_parameters()
        self._steps: set[int] = set()

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        if ctx.step in self._steps:
            return ToolResult(f"Error: {AGENT_SWARM} must be the only tool call in its "
                              "response; this call was not run. Wait for the result of the "
                              "first one.", True)
        self._steps.add(ctx.step)
        try:
            launches, resumes = plan(arguments, self.swarm.max_per_fanout)
            outcomes = await self.swarm.fan_out([p for _, p in launches], ctx.step, resumes,
                                                 items=[i for i, _ in launches])
        except (SwarmCallError, SwarmRefused, ResumeError) as exc:
            return ToolResult(f"Error: {exc}", True)
        meta = {"subagents": len(outcomes), "description": arguments.get("description")}
        if arguments.get("subagent_type"):
            meta["subagent_type"] = arguments["subagent_type"]
        return ToolResult(render_report(outcomes, self.swarm.output_limit), meta=meta)
