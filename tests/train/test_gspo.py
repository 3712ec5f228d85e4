"""GSPO with LoRA on the tiny Kimi-shaped model (CPU): the reward rises; the CLI shows each step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from datasets import Dataset

from kimi_modes.train.gspo import StepLog, train_gspo
from kimi_modes.train.presets import KIMI, grpo_config
from kimi_modes.train.rewards import load_reward_file

REWARD_FILE = """
def digit_share(completions, **_):
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]

def brevity(completion_ids, **_):
    return [1.0 - len(ids) / 8 for ids in completion_ids]

REWARDS = [digit_share, brevity]
WEIGHTS = [1.0, 0.0]
"""


def test_the_kimi_preset_switches_gspo_on_explicitly(tmp_path: Path) -> None:
    config = grpo_config(KIMI, tmp_path, use_cpu=True)
    assert config.importance_sampling_level == "sequence"
    assert (config.loss_type, config.beta) == ("grpo", 0.0)
    assert (config.epsilon, config.epsilon_high) == (3e-4, 4e-4)
    assert (config.num_generations, config.learning_rate) == (8, 3e-6)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (1, 16)
    assert config.steps_per_generation == 64 > config.gradient_accumulation_steps  # off-policy
    assert (KIMI.lora_rank, KIMI.lora_alpha) == (64, 128)


def test_mean_reward_rises_on_a_clear_reward(
    tmp_path: Path, lively_model: Any, tokenizer: Any
) -> None:
    reward_path = tmp_path / "rewards.py"
    reward_path.write_text(REWARD_FILE)
    rewards = load_reward_file(reward_path)
    prompts = ["Number: ", "Count: ", "Value: ", "Total: "] * 8
    preset = KIMI.with_(
        learning_rate=5e-2,
        lora_rank=8,
        lora_alpha=16,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        minibatches_per_generation=2,
        max_completion_length=8,
        max_steps=40,
        seed=0,
    )
    steps = train_gspo(
        lively_model,
        tokenizer,
        Dataset.from_list([{"prompt": p} for p in prompts]),
        rewards,
        preset,
        tmp_path / "adapter",
        use_cpu=True,
        disable_tqdm=True,
    )
    scored = [s for s in steps if s.reward is not None]
    assert len(steps) == 40 and len(scored) == 20  # one generation per two optimizer steps
    assert set(scored[0].rewards) == {"digit_share", "brevity"}  # each objective logged
    first = sum(s.rewards["digit_share"] for s in scored[:4]) / 4
    last = sum(s.rewards["digit_share"] for s in scored[-4:]) / 4
    assert last > first + 0.3, (first, last)
    assert any(s.clip_ratio > 0 for s in steps)  # the sequence ratio was clipped off-policy
    assert all(s.kl is None for s in steps)  # β = 0: no KL term
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_step_line_shows_reward_kl_and_clip() -> None:
    logs = {"reward": 0.5, "reward_std": 0.1, "clip_ratio/region_mean": 0.25,
            "rewards/answer_format/mean": 0.75, "rewards/tool_call_validity/mean": None,
            "loss": 0.0}
    line = StepLog.from_logs(3, logs).line()
    assert line == "step 3 | reward 0.500 ± 0.100 | kl - | clip 0.250 | answer_format 0.750"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_cli_targets_prints_the_match_and_refuses_the_seed_list(tiny_model_dir: Path) -> None:
    shown = _cli("targets", "--model", str(tiny_model_dir), "--rank", "4")
    assert shown.returncode == 0, shown.stderr
    assert "DeepseekV3ForCausalLM: 16 modules adapted" in shown.stdout
    assert "kv_b_proj" in shown.stdout and "model.layers.0.self_attn.kv_b_proj" in shown.stdout
    refused = _cli("targets", "--model", str(tiny_model_dir),
                   "--targets", "q_proj,k_proj,v_proj,o_proj")
    assert refused.returncode == 2
    assert "q_proj, k_proj, v_proj match nothing" in refused.stderr
    assert "attention is MLA" in refused.stderr


def test_cli_run_prints_each_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = _cli(
        "run", "--model", str(tiny_model_dir), "--output", str(tmp_path / "out"),
        "--scenario", "sales", "--max-steps", "2", "--num-generations", "2",
        "--gradient-accumulation-steps", "1", "--max-completion-length", "4", "--cpu",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == 2
    assert "| kl - | clip " in lines[0] and "answer_format" in lines[0]
    assert "tool_call_validity" in lines[0] and "task_check" in lines[0]
    metrics = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2  # one record per step, the plot drawn from them at the end
    assert (tmp_path / "out" / "metrics.png").stat().st_size > 0
    assert "{'loss'" not in done.stdout  # transformers' raw log dicts are not printed
