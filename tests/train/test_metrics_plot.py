"""The per-step metrics of a run: JSONL written as steps arrive, the plot drawn from it, and the
live progress display (a TrainerCallback) in a real run on the tiny Kimi model."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from PIL import Image
from rich.console import Console

from kimi_modes.train.gspo import StepLog, train_gspo
from kimi_modes.train.metrics import MetricsRecorder, plot_metrics, read_metrics
from kimi_modes.train.presets import KIMI
from kimi_modes.train.progress import LiveProgress
from kimi_modes.train.rewards import Rewards


def digits(completions: list[str], **_: Any) -> list[float | None]:
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]


def short(completion_ids: list[list[int]], **_: Any) -> list[float | None]:
    return [1.0 - len(ids) / 4 for ids in completion_ids]


def test_recorder_writes_each_step_and_redraws_every_n(tmp_path: Path) -> None:
    recorder = MetricsRecorder(tmp_path, every=2)
    recorder(StepLog(1, 0.5, 0.1, None, 0.0, {"a": 0.25, "b": 0.75}))
    assert len(read_metrics(recorder.path)) == 1
    assert not (tmp_path / "metrics.png").exists()  # not yet: every 2 steps
    recorder(StepLog(2, None, None, None, 0.5))
    assert (tmp_path / "metrics.png").stat().st_size > 0
    recorder(StepLog(3, 0.75, 0.2, 0.01, 0.0, {"a": 0.5, "b": 1.0}))
    first_plot = (tmp_path / "metrics.png").stat().st_mtime_ns
    recorder.close()
    assert (tmp_path / "metrics.png").stat().st_mtime_ns >= first_plot

    records = read_metrics(recorder.path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1]["reward"] is None and records[1]["clip_ratio"] == 0.5
    assert records[2]["rewards"] == {"a": 0.5, "b": 1.0} and records[2]["kl"] == 0.01
    assert all(r["seconds"] >= 0 for r in records)
    with Image.open(tmp_path / "metrics.png") as image:
        assert image.size == (1100, 700)


def test_plot_as_svg_and_jsonl_only_recorder(tmp_path: Path) -> None:
    recorder = MetricsRecorder(tmp_path / "run", every=0)
    recorder(StepLog(1, 0.5, 0.1, None, 0.0, {"a": 0.5}))
    recorder.close()
    assert not (tmp_path / "run" / "metrics.png").exists()
    svg = plot_metrics(recorder.path, tmp_path / "plot.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="every"):
        MetricsRecorder(tmp_path, every=-1)


def test_a_run_records_every_step_and_shows_its_progress(
    tmp_path: Path, lively_model: Any, tokenizer: Any
) -> None:
    preset = KIMI.with_(
        learning_rate=5e-2, lora_rank=4, lora_alpha=8, num_generations=2,
        per_device_train_batch_size=2, gradient_accumulation_steps=1,
        minibatches_per_generation=2, max_completion_length=4, max_steps=4,
    )
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    with MetricsRecorder(tmp_path, every=2) as recorder:
        steps = train_gspo(
            lively_model, tokenizer, Dataset.from_list([{"prompt": "Number: "}] * 8),
            Rewards([digits, short]), preset, tmp_path / "adapter",
            on_step=recorder, callbacks=[LiveProgress(console)],
            use_cpu=True, disable_tqdm=True,
        )
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4] == [s.step for s in steps]
    assert [r["reward"] is not None for r in records] == [True, False, True, False]
    assert set(records[0]["rewards"]) == {"digits", "short"}
    assert (tmp_path / "metrics.png").stat().st_size > 0

    shown = screen.getvalue()
    for step in steps:
        assert step.line() in shown  # each step's line, above the bar
    assert "GSPO" in shown and "4/4" in shown  # the bar reached the last step
    assert f"reward {steps[2].reward:.3f}" in shown  # the last generated step's reward
    assert "clip " in shown and "kl -" in shown


def test_progress_prints_whole_lines_when_not_a_terminal(tmp_path: Path) -> None:
    screen = io.StringIO()
    progress = LiveProgress(Console(file=screen, width=40))
    state = type("State", (), {"max_steps": 2, "global_step": 1})()
    logs = {"loss": 0.0, "reward": 0.5, "reward_std": 0.1, "clip_ratio/region_mean": 0.0,
            "rewards/answer_format/mean": 0.75, "rewards/tool_call_validity/mean": 0.5}
    progress.on_train_begin(None, state, None)
    progress.on_log(None, state, None, logs=logs)
    progress.on_log(None, state, None, logs={"train_runtime": 1.0})  # the run's summary
    progress.on_train_end(None, state, None)
    assert screen.getvalue() == StepLog.from_logs(1, logs).line() + "\n"
