"""Training prompts from task files: the seed scenarios and any ``bench agents`` task file.

One format for both: ``bench agents``' JSONL tasks (:mod:`kimi_modes.bench.agents.tasks`),
with the tools offered in ``extra_body.tools``. Each task becomes one dataset row:

* ``prompt``: the messages rendered by the model's own chat template, tools included, ending
  with the assistant's turn opener (so TRL treats it as text and Kimi sees its tools as it
  would in serving);
* ``tools``: the tools as JSON text (``""`` when none), read by
  :class:`~kimi_modes.train.rewards.ToolCallValidity`;
* ``check``: the task's checkers as JSON text, read by
  :class:`~kimi_modes.train.rewards.TaskCheck`;
* ``task_id``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from kimi_modes.bench.agents.tasks import Task, load_tasks

#: The seed guide's scenarios, shipped as task files.
SCENARIOS = ("customer_service", "technical_support", "sales")


def scenario_path(name: str) -> Path:
    """The shipped task file of a seed scenario (one of :data:`SCENARIOS`)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (one of {', '.join(SCENARIOS)})")
    return Path(str(resources.files("kimi_modes.train") / "scenarios" / f"{name}.jsonl"))


def task_row(
    task: Task, tokenizer: Any, extra_tools: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    """The dataset row of one task (see the module docstring); ``extra_tools`` are offered
    after the task's own (e.g. the sandboxed tools of an agentic rollout)."""
    tools = [*(task.extra_body.get("tools") or []), *(extra_tools or [])] or None
    prompt: str = tokenizer.apply_chat_template(
        task.messages, tools=tools, add_generation_prompt=True, tokenize=False
    )
    return {
        "task_id": task.id,
        "prompt": prompt,
        "tools": json.dumps(tools) if tools else "",
        "check": json.dumps([checker.to_dict() for checker in task.checkers]),
    }


def load_dataset(
    paths: list[Path],
    tokenizer: Any,
    *,
    repeat: int = 1,
    extra_tools: list[dict[str, Any]] | None = None,
) -> Any:
    """A ``datasets.Dataset`` of every task of ``paths`` (each listed ``repeat`` times)."""
    from datasets import Dataset

    rows = [
        task_row(task, tokenizer, extra_tools) for path in paths for task in load_tasks(path)
    ]
    return Dataset.from_list(rows * repeat)
