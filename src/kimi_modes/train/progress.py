"""A live progress display for a training run: a ``transformers`` ``TrainerCallback`` drawing a
``rich`` progress bar with the latest reward, KL and clip ratio, and printing each step's line
(:meth:`~kimi_modes.train.gspo.StepLog.line`) above it.

Needs the ``train`` extra (transformers); rich is a core dependency. On a console that is not a
terminal (a pipe, a log file) the bar is not drawn and only the step lines are printed, whole
(never wrapped).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback

from kimi_modes.train.gspo import StepLog


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class LiveProgress(TrainerCallback):  # type: ignore[misc]
    """Progress bar over the run's optimizer steps (``state.max_steps``) with the last
    reward (mean, from the last step that generated), KL and clip ratio; each logged step's
    line is printed above the bar. Pass it in ``train_gspo(callbacks=[...])``; use one
    instance per run.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._progress = Progress(
            TextColumn("[bold]GSPO"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("reward {task.fields[reward]}  kl {task.fields[kl]}  "
                       "clip {task.fields[clip]}"),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self._task: TaskID | None = None
        self._reward: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=int(state.max_steps) or None, reward="-", kl="-", clip="-"
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=int(state.global_step))

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
        step = StepLog.from_trainer_logs(int(state.global_step), logs)
        if step is None:
            return
        self.console.print(step.line(), markup=False, highlight=False, soft_wrap=True)
        if step.reward is not None:
            self._reward = step.reward
        if self._task is not None:
            self._progress.update(
                self._task,
                reward=_number(self._reward),
                kl=_number(step.kl, 4),
                clip=_number(step.clip_ratio),
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._progress.stop()
