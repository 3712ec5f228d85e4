"""Training tasks from your own agent runs: the run store's trajectories as GSPO prompts.

``kimi-modes serve`` keeps every Agent and Swarm run (:mod:`kimi_modes.runs`): the task as
given, each step's reasoning, content and tool calls with their results, and the final
answer. :func:`read_trajectories` reads the runs a filter picks (mode, status, owner) with
their steps; :func:`trajectory_rows` turns each into one dataset row in the shape of
:mod:`~kimi_modes.train.tasks`:

* ``prompt``: the run's task messages rendered by the model's chat template (tools included
  when given), ending with the assistant's turn opener: the model is trained to do the task
  the run did;
* ``check``: the checkers of the ``bench agents`` task whose messages the run was given (when
  a task file is passed), read by :class:`~kimi_modes.train.rewards.TaskCheck`; ``"[]"``
  otherwise, and then a reward function of your own scores the row;
* ``reference``: the run's final answer, ``trajectory``: its steps as JSON (the tool calls,
  their outputs): columns a reward function may read (TRL passes every column);
* ``tools`` (``""`` or JSON), ``task_id`` (the run's id).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_modes.bench.agents.tasks import Task
from kimi_modes.runs import COMPLETED, RunStore, assemble_steps


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One stored run: its task, what it did step by step, and how it ended."""

    run_id: str
    mode: str
    owner: str | None
    status: str
    messages: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    final_answer: str | None


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to read: ``None`` fields do not filter. ``limit``: the newest this many."""

    mode: str | None = None
    status: str | None = COMPLETED
    owner: str | None = None
    limit: int = 1000


def read_trajectories(path: Path, runs: RunFilter = RunFilter()) -> list[Trajectory]:
    """The runs of the store at ``path`` that ``runs`` picks, newest first, with their steps.

    Opens the store as the gateway does (a run that a stopped gateway left running is marked
    interrupted there), so point it at a copy when a gateway is serving from the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no run store at {path}")
    return asyncio.run(_read(path, runs))


async def _read(path: Path, runs: RunFilter) -> list[Trajectory]:
    found = []
    async with RunStore(path) as store:
        summaries = await store.list_runs(
            runs.limit, status=runs.status, mode=runs.mode, owner=runs.owner
        )
        for summary in summaries:
            record = await store.get(summary.id)
            if record is None:
                continue
            steps = assemble_steps(await store.events(summary.id))
            found.append(
                Trajectory(
                    run_id=record.id,
                    mode=record.mode,
                    owner=record.owner,
                    status=record.status,
                    messages=record.messages,
                    steps=steps,
                    final_answer=record.final_answer,
                )
            )
    return found


def trajectory_rows(
    trajectories: list[Trajectory],
    tokenizer: Any,
    *,
    tasks: Sequence[Task] = (),
    tools: list[dict[str, Any]] | None = None,
) -> list[dict[str, str]]:
    """One dataset row per trajectory (see the module docstring).

    A run takes the checkers of the task in ``tasks`` it was given (same messages); ``tools``
    are offered in every prompt (e.g. the sandboxed tools' schemas for agentic rollouts).
    """
    checks = {_key(task.messages): task.checkers for task in tasks}
    rows = []
    for trajectory in trajectories:
        checkers = checks.get(_key(trajectory.messages), [])
        prompt: str = tokenizer.apply_chat_template(
            trajectory.messages, tools=tools, add_generation_prompt=True, tokenize=False
        )
        rows.append(
            {
                "task_id": trajectory.run_id,
                "prompt": prompt,
                "tools": json.dumps(tools) if tools else "",
                "check": json.dumps([checker.to_dict() for checker in checkers]),
                "reference": trajectory.final_answer or "",
                "trajectory": json.dumps(trajectory.steps),
            }
        )
    return rows


def _key(messages: list[dict[str, Any]]) -> str:
    """Messages compared by role and content only (a stored run may add fields)."""
    return json.dumps([[m.get("role"), m.get("content")] for m in messages], sort_keys=True)
