"""A run's per-step metrics as JSONL, and the plot drawn from them (matplotlib, Agg backend).

:class:`MetricsRecorder` is a :class:`~kimi_modes.train.gspo.StepLog` sink (``train_gspo``'s
``on_step``): it appends one JSON object per optimizer step to ``metrics.jsonl`` (the
:class:`StepLog` fields, plus ``seconds`` since the recorder started) and redraws
``metrics.png`` from that file every ``every`` steps and when it is closed.
:func:`plot_metrics` draws any such JSONL: reward mean ± std, each reward objective's mean,
the clip ratio, and the KL (a note instead when the run has no KL term, GSPO's β = 0).
Steps that reused a generation batch have no reward (``null``) and are left out of the reward
panels.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from kimi_modes.train.gspo import StepLog

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"


class PlotError(RuntimeError):
    """The plot cannot be drawn (matplotlib missing)."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(
            "the training plot needs matplotlib (part of the `train` extra): "
            "pip install matplotlib"
        ) from None
    return plt


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The step records of a ``metrics.jsonl``, in file order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(metrics: Path, output: Path, *, title: str = "") -> Path:
    """Draw ``metrics`` (a ``metrics.jsonl``) into ``output`` (PNG, or SVG by its suffix)."""
    plt = _pyplot()
    records = read_metrics(metrics)
    scored = [r for r in records if r.get("reward") is not None]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    reward_ax, objectives_ax, clip_ax, kl_ax = axes.flat

    steps = [r["step"] for r in scored]
    means = [r["reward"] for r in scored]
    stds = [r.get("reward_std") or 0.0 for r in scored]
    reward_ax.plot(steps, means, marker="o", color="tab:blue", label="mean")
    reward_ax.fill_between(steps, [m - s for m, s in zip(means, stds, strict=True)],
                           [m + s for m, s in zip(means, stds, strict=True)],
                           color="tab:blue", alpha=0.2, label="± std")
    reward_ax.set_title("reward")
    reward_ax.legend(loc="best")

    names = sorted({name for r in scored for name in r.get("rewards", {})})
    for name in names:
        points = [(r["step"], r["rewards"][name]) for r in scored if name in r["rewards"]]
        objectives_ax.plot(*zip(*points, strict=True), marker=".", label=name)
    objectives_ax.set_title("reward per objective (mean)")
    if names:
        objectives_ax.legend(loc="best")

    clip_ax.plot([r["step"] for r in records], [r["clip_ratio"] for r in records],
                 marker=".", color="tab:red")
    clip_ax.set_title("clip ratio (sequence ratio outside the clip range)")
    clip_ax.set_xlabel("optimizer step")

    with_kl = [r for r in records if r.get("kl") is not None]
    if with_kl:
        kl_ax.plot([r["step"] for r in with_kl], [r["kl"] for r in with_kl], marker=".",
                   color="tab:purple")
    else:
        kl_ax.text(0.5, 0.5, "no KL term (β = 0)", ha="center", va="center",
                   transform=kl_ax.transAxes)
    kl_ax.set_title("KL to the reference policy")
    kl_ax.set_xlabel("optimizer step")

    fig.suptitle(title or f"GSPO: {len(records)} steps")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


class MetricsRecorder:
    """Writes each step to ``folder/metrics.jsonl``; redraws ``folder/metrics.png`` every
    ``every`` steps and on :meth:`close` (``every=0``: no plot, JSONL only).

    The folder is created, and an existing ``metrics.jsonl`` in it is replaced. With plotting
    on, a missing matplotlib raises :class:`PlotError` here, before any training starts.
    """

    def __init__(self, folder: Path, *, every: int = 10) -> None:
        if every < 0:
            raise ValueError("every must be ≥ 0")
        if every:
            _pyplot()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / METRICS_FILE
        self.plot_path: Path | None = folder / PLOT_FILE if every else None
        self.every = every
        self.path.write_text("")
        self._steps = 0
        self._started = time.monotonic()

    def __call__(self, step: StepLog) -> None:
        record = asdict(step) | {"seconds": round(time.monotonic() - self._started, 3)}
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")
        self._steps += 1
        if self.every and self._steps % self.every == 0:
            self._plot()

    def _plot(self) -> None:
        if self.plot_path is not None and self._steps:
            plot_metrics(self.path, self.plot_path)

    def close(self) -> None:
        """Draw the final plot (when plotting is on and a step was recorded)."""
        self._plot()

    def __enter__(self) -> MetricsRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
