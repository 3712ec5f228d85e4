"""The task file of ``kimi-modes bench agents``: JSONL, one task a line.

Each line is a JSON object:

- ``id`` (string, unique in the file);
- ``prompt`` (string: one user message) or ``messages`` (an OpenAI chat message list);
- ``check``: how the answer is judged (:mod:`kimi_modes.bench.agents.check`);
- ``modes`` (optional): the modes the task is meant for, a subset of ``agent`` and ``swarm``
  (default: every mode benchmarked);
- ``extra_body`` (optional): a JSON object merged into this task's request bodies, over the
  command's ``--extra-body`` (e.g. ``{"swarm": {"fan_out": "required"}}``).

Blank lines and lines starting with ``#`` are skipped. Any other problem (bad JSON, a
missing or unknown key, a duplicate id, a checker that cannot be used) raises
:class:`TaskFileError` whose one-line message names the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from kimi_modes.bench._jsonl import JsonlError, read_objects
from kimi_modes.bench.agents.check import Checker, CheckerError, parse_checkers

#: The modes a task may name.
MODES = ("agent", "swarm")
_KEYS = {"id", "prompt", "messages", "check", "modes", "extra_body"}
_ROLES = {"system", "developer", "user", "assistant", "tool"}


class TaskFileError(ValueError):
    """The task file cannot be used; the message is one line (``FILE:LINE: what``)."""


@dataclass(frozen=True, slots=True)
class Task:
    """One benchmark task. ``modes`` empty means every mode."""

    id: str
    messages: list[dict[str, Any]]
    checkers: list[Checker]
    modes: tuple[str, ...] = ()
    extra_body: dict[str, Any] = field(default_factory=dict)

    def wants(self, mode: str) -> bool:
        """Whether the task runs in ``mode`` (``agent`` or ``swarm``)."""
        return not self.modes or mode in self.modes


def sample_tasks_path() -> Path:
    """The shipped sample task file (``bench/data/agent_tasks.jsonl``)."""
    return Path(str(resources.files("kimi_modes.bench") / "data" / "agent_tasks.jsonl"))


def load_tasks(path: Path, limit: int | None = None) -> list[Task]:
    """The tasks of ``path``, in file order (the first ``limit`` when given)."""
    tasks: list[Task] = []
    seen: set[str] = set()
    try:
        for line in read_objects(path, comments=True):
            try:
                task = parse_task(line.value)
            except (TaskFileError, CheckerError) as exc:
                raise TaskFileError(f"{line.where}: {exc}") from None
            if task.id in seen:
                raise TaskFileError(f"{line.where}: duplicate task id {task.id!r}")
            seen.add(task.id)
            tasks.append(task)
    except JsonlError as exc:
        raise TaskFileError(str(exc)) from None
    if not tasks:
        raise TaskFileError(f"{path}: no tasks in the file")
    return tasks[:limit] if limit is not None else tasks


def parse_task(raw: dict[str, Any]) -> Task:
    """One task from one line's JSON object (raises :class:`TaskFileError` or
    :class:`~kimi_modes.bench.agents.check.CheckerError`)."""
    unknown = set(raw) - _KEYS
    if unknown:
        raise TaskFileError(f"unknown key {', '.join(sorted(unknown))} (a task has "
                            f"{', '.join(sorted(_KEYS))})")
    task_id = raw.get("id")
    if not isinstance(task_id, str) or not task_id.strip():
        raise TaskFileError("id must be a non-empty string")
    where = f"task {task_id!r}: "
    if ("prompt" in raw) == ("messages" in raw):
        raise TaskFileError(where + "give prompt or messages (one of them)")
    if "prompt" in raw:
        if not isinstance(raw["prompt"], str) or not raw["prompt"].strip():
            raise TaskFileError(where + "prompt must be a non-empty string")
        messages = [{"role": "user", "content": raw["prompt"]}]
    else:
        messages = _messages(raw["messages"], where)
    if "check" not in raw:
        raise TaskFileError(where + "check is missing (how is the answer judged?)")
    try:
        checkers = parse_checkers(raw["check"])
    except CheckerError as exc:
        raise TaskFileError(where + str(exc)) from None
    modes = raw.get("modes", [])
    if (not isinstance(modes, list) or not all(isinstance(m, str) for m in modes)
            or set(modes) - set(MODES)):
        raise TaskFileError(where + f"modes must be a list of {', '.join(MODES)}")
    extra = raw.get("extra_body", {})
    if not isinstance(extra, dict):
        raise TaskFileError(where + "extra_body must be a JSON object")
    return Task(task_id, messages, checkers, tuple(dict.fromkeys(modes)), extra)


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise TaskFileError(where + "messages must be a non-empty list")
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise TaskFileError(where + "each message is an object with a role "
                                f"({', '.join(sorted(_ROLES))})")
    if value[-1].get("role") != "user":
        raise TaskFileError(where + "the last message must be the user's")
    return [dict(m) for m in value]
