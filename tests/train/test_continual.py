"""Continual learning: replayed earlier tasks at a ratio, and a KL term to the reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from kimi_modes.train.continual import mix_replay
from kimi_modes.train.gspo import train_gspo
from kimi_modes.train.presets import KIMI
from kimi_modes.train.rewards import Rewards
from kimi_modes.train.tasks import scenario_path


def test_replayed_rows_make_up_the_ratio() -> None:
    new = Dataset.from_list([{"prompt": f"new {i}", "tools": ""} for i in range(30)])
    old = Dataset.from_list([{"prompt": f"old {i}", "check": "[]"} for i in range(4)])
    mixed = mix_replay(new, old, 0.25, seed=1)
    prompts = mixed["prompt"]
    assert len(mixed) == 40 and sum(p.startswith("old") for p in prompts) == 10
    assert sorted(p for p in prompts if p.startswith("new")) == sorted(new["prompt"])
    assert set(mixed.column_names) == {"prompt", "tools", "check"}
    assert prompts != sorted(prompts, key=lambda p: p.startswith("old"))  # shuffled
    assert mix_replay(new, old, 0.0) is new
    with pytest.raises(ValueError, match="ratio"):
        mix_replay(new, old, 1.0)


def test_cli_replays_and_logs_the_kl_to_the_reference(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "run", "--model", str(tiny_model_dir),
         "--output", str(tmp_path / "out"), "--scenario", "sales",
         "--replay", str(scenario_path("customer_service")), "--replay-ratio", "0.5",
         "--kl-beta", "0.1", "--max-steps", "3",
         "--num-generations", "2", "--gradient-accumulation-steps", "1",
         "--max-completion-length", "4", "--cpu"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == 3, done.stdout
    kls = [float(line.split("| kl ")[1].split(" ")[0]) for line in lines]  # not "-": β > 0
    assert all(kl >= 0 for kl in kls)


def test_the_kl_to_the_reference_grows_as_the_adapter_moves(
    lively_model: Any, tokenizer: Any, tmp_path: Path
) -> None:
    def digit_share(completions: list[str], **_: Any) -> list[float]:
        return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]

    steps = train_gspo(
        lively_model, tokenizer,
        Dataset.from_list([{"prompt": p} for p in ["Number: ", "Count: "] * 8]),
        Rewards([digit_share]),
        KIMI.with_(beta=0.1, learning_rate=5e-2, lora_rank=4, lora_alpha=8,
                   per_device_train_batch_size=8, gradient_accumulation_steps=1,
                   minibatches_per_generation=2, max_completion_length=6, max_steps=4),
        tmp_path / "adapter", use_cpu=True, disable_tqdm=True,
    )
    kls = [s.kl for s in steps]
    assert all(kl is not None for kl in kls)
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # the adapter starts as the reference
    assert max(kl or 0.0 for kl in kls[1:]) > 1e-4, kls
