"""A genuine GSPO run on the bundled SmolLM2 (its GGUF loaded into transformers) through
``kimi-modes train run``, then the adapter exported and served by the gateway's embedded engine.

One generation batch of G = 4 answers to one prompt, split into 4 optimizer steps (the preset's
4 minibatches per generation, one answer each): step 1 is on-policy, steps 2-4 are off-policy,
where GSPO's sequence ratio is clipped. Short completions and no gradient checkpointing keep
it to about a minute of training on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp", reason="the embedded engine needs llama-cpp-python")

import httpx
from safetensors.torch import load_file

from kimi_modes.engines.embedded import default_model_path

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

QUESTION = "What is 3 + 4? Reply with the number only."
LLAMA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
STEPS = 4
#: A reward that differs within a group (answers of different lengths), so the group's
#: advantages are not all zero even when every answer fails the task's check.
REWARD_FILE = """
def brevity(completions, **_):
    return [max(0.0, 1.0 - len(text) / 60) for text in completions]

REWARDS = [brevity]
"""


def ask(gateway: Any) -> str:
    answer = httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": "kimi-k2.5-instant", "temperature": 0, "max_tokens": 16,
              "messages": [{"role": "user", "content": QUESTION}]},
        timeout=120,
    )
    answer.raise_for_status()
    return str(answer.json()["choices"][0]["message"]["content"]).strip()


def test_gspo_on_smollm2_trains_an_adapter_the_embedded_engine_serves(
    tmp_path: Path, start_gateway: Callable[..., Any]
) -> None:
    gguf = default_model_path()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({
        "id": "sum", "messages": [{"role": "user", "content": QUESTION}], "check": {"number": 7},
    }) + "\n")
    (tmp_path / "rewards.py").write_text(REWARD_FILE)
    out = tmp_path / "adapter"
    done = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "run", "--model", str(gguf.parent),
         "--gguf-file", gguf.name, "--cpu", "--targets", LLAMA_TARGETS, "--task", str(tasks),
         "--reward-file", str(tmp_path / "rewards.py"),
         "--repeat", "4", "--max-steps", str(STEPS), "--num-generations", "4",
         "--gradient-accumulation-steps", "1", "--max-completion-length", "12",
         "--lora-rank", "8", "--lora-alpha", "16", "--learning-rate", "1e-2",
         "--no-gradient-checkpointing", "--plot-every", "2", "--output", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # TRL's metrics for every step: the group's rewards on the step that generated, the
    # sequence-level clip on the off-policy steps after it.
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert records[0]["reward"] is not None
    # no tools in the task: tool_call_validity scored nothing and is left out
    assert set(records[0]["rewards"]) == {"answer_format", "task_check", "brevity"}
    assert records[0]["reward_std"] > 0
    assert all(r["reward"] is None for r in records[1:])  # one generation batch, 4 minibatches
    assert all(r["kl"] is None for r in records)  # GSPO: β = 0
    assert (out / "metrics.png").stat().st_size > 0
    lines = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == STEPS

    # LoRA's B factors start at zero: non-zero ones were trained.
    weights = load_file(str(out / "adapter_model.safetensors"))
    b_factors = [w for key, w in weights.items() if ".lora_B." in key]
    assert len(b_factors) == 30 * 7
    assert all(float(w.abs().max()) > 0 for w in b_factors), done.stdout

    exported = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "export", "--adapter", str(out),
         "--base-gguf", str(gguf), "--output", str(tmp_path / "adapter.gguf")],
        capture_output=True, text=True, timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    upstream = '[[upstreams]]\nname = "smol"\nkind = "embedded"\nn_ctx = 512\n'
    base = start_gateway(upstream)
    base_answer = ask(base)
    base.stop()
    adapted = start_gateway(upstream + f"adapter = {json.dumps(str(tmp_path / 'adapter.gguf'))}\n")
    adapted_answer = ask(adapted)
    assert adapted_answer != base_answer  # the GSPO-trained adapter is applied
