"""Aggregates and the printed table of ``kimi-modes bench agents``.

:func:`summarize` folds task runs into one row per task and target (over repeats) and one
total per target. Every figure is a mean over the runs that have it (``None`` when none
has: an endpoint without the runs API has no steps), except ``tokens`` (summed) and the
counts. :func:`print_table` prints both as one rich table.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kimi_modes.bench.agents.results import Target, TaskRun

if TYPE_CHECKING:
    from rich.console import Console

_MEANS = ("wall_time", "run_time", "critical_steps", "total_steps", "tool_calls",
          "subagents", "parallelism")


def aggregate(runs: Sequence[TaskRun]) -> dict[str, Any]:
    """The figures of a group of runs (see the module docstring)."""
    n = len(runs)
    ok = sum(r.success for r in runs)
    out: dict[str, Any] = {"runs": n, "succeeded": ok,
                           "success_rate": round(ok / n, 4) if n else None,
                           "errors": sum(r.error is not None for r in runs)}
    for name in _MEANS:
        out[name] = _mean(getattr(r, name) for r in runs)
    walls = [r.wall_time for r in runs]
    out["wall_time_median"] = round(statistics.median(walls), 4) if walls else None
    out["wall_time_total"] = round(sum(walls), 4)
    tokens = [r.tokens for r in runs if r.tokens is not None]
    out["tokens"] = ({key: sum(t.get(key, 0) for t in tokens)
                      for key in ("prompt_tokens", "completion_tokens", "reasoning_tokens",
                                  "total_tokens")} if tokens else None)
    out["metrics_available"] = sum(r.metrics_source == "runs_api" for r in runs)
    failures = [r for r in runs if not r.success]
    out["first_failure"] = (failures[0].error or failures[0].check) if failures else None
    return out


def summarize(runs: Sequence[TaskRun], targets: Sequence[Target]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(totals, per_task)``: one total per target, one row per task and target (tasks in
    the order they first appear)."""
    totals: list[dict[str, Any]] = []
    per_task: list[dict[str, Any]] = []
    task_ids = list(dict.fromkeys(r.task for r in runs))
    for target in targets:
        mine = [r for r in runs if (r.mode, r.model) == (target.mode, target.model)]
        if not mine:
            continue
        totals.append({"mode": target.mode, "model": target.model, "label": target.label,
                       "tasks": len({r.task for r in mine}), **aggregate(mine)})
    for task_id in task_ids:
        for target in targets:
            mine = [r for r in runs if r.task == task_id
                    and (r.mode, r.model) == (target.mode, target.model)]
            if mine:
                per_task.append({"task": task_id, "mode": target.mode, "model": target.model,
                                 "label": target.label, **aggregate(mine)})
    return totals, per_task


def print_table(totals: Sequence[dict[str, Any]], per_task: Sequence[dict[str, Any]],
                console: Console | None = None, *, title: str = "bench agents") -> None:
    """Print the per-task rows, then a total per target, as one table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name, justify in (("task", "left"), ("mode", "left"), ("ok", "right"),
                          ("wall s", "right"), ("crit. steps", "right"),
                          ("total steps", "right"), ("tool calls", "right"),
                          ("tokens", "right"), ("parallel.", "right"), ("note", "left")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=name != "note", overflow="fold")
    for row in per_task:
        table.add_row(row["task"], row["label"], *_cells(row),
                      _note(row["first_failure"]))
    table.add_section()
    for row in totals:
        rate = row["success_rate"]
        note = f"{rate:.0%} succeeded" if rate is not None else ""
        table.add_row(f"total ({row['tasks']} tasks)", row["label"], *_cells(row), note,
                      style="bold")
    if console is None:
        console = Console()
        if not console.is_terminal:  # a file or a pipe: do not fold the table to 80 columns
            console = Console(width=160)
    console.print(table)


def _cells(row: dict[str, Any]) -> list[str]:
    tokens = row["tokens"]["total_tokens"] if row["tokens"] else None
    return [f"{row['succeeded']}/{row['runs']}", _num(row["wall_time"], 2),
            _num(row["critical_steps"], 1), _num(row["total_steps"], 1),
            _num(row["tool_calls"], 1), f"{tokens:,}" if tokens is not None else "–",
            _num(row["parallelism"], 2)]


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits == 1 else \
        f"{value:.{digits}f}"


def _note(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= 80 else text[:79] + "…"


def _mean(values: Iterable[Any]) -> float | None:
    present = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return round(statistics.fmean(present), 4) if present else None
