"""Optimizer steps per second on CPU: Muon (+ AdamW for the rest) vs AdamW, same run.

    python benchmarks/train_optimizers.py                  # 30 timed steps each, 1 thread
    python benchmarks/train_optimizers.py --steps 100 --hidden 128 --threads 4

Builds a small DeepseekV3-shaped model in memory (MLA, one dense layer, then MoE layers, as
Kimi; nothing downloaded), and times full training steps (forward, backward, optimizer step)
on random token batches: first with ``torch.optim.AdamW`` over every parameter, then with
:func:`kimi_modes.train.optim.build_optimizer` (``torch.optim.Muon`` on the Linear weights,
AdamW on the rest), each from the same initial weights after a few warm-up steps. Prints the
steps per second of each, the optimizer step's own share, and the ratio Muon / AdamW.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import transformers

from kimi_modes.train.optim import build_optimizer


def make_model(hidden: int, layers: int, seed: int) -> Any:
    torch.manual_seed(seed)
    config = transformers.DeepseekV3Config(
        vocab_size=512, hidden_size=hidden, intermediate_size=2 * hidden,
        moe_intermediate_size=hidden // 2, num_hidden_layers=layers, first_k_dense_replace=1,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=1, topk_group=1,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=hidden // 2,
        kv_lora_rank=hidden // 2, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        max_position_embeddings=512, tie_word_embeddings=False,
    )
    return transformers.DeepseekV3ForCausalLM(config).float()


def time_steps(model: Any, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor],
               warmup: int) -> tuple[float, float]:
    """Steps per second over ``batches`` (after ``warmup`` of them) and the optimizer's share."""
    in_step = 0.0
    started = 0.0
    for index, ids in enumerate(batches):
        if index == warmup:
            started, in_step = time.perf_counter(), 0.0
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before = time.perf_counter()
        optimizer.step()
        in_step += time.perf_counter() - before
    elapsed = time.perf_counter() - started
    timed = len(batches) - warmup
    return timed / elapsed, in_step / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 512, (args.batch, args.seq), generator=generator)
               for _ in range(args.warmup + args.steps)]
    builders: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
        "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1),
        "muon": lambda m: build_optimizer(m, lr=1e-3),
    }
    results = {}
    for name, build in builders.items():
        model = make_model(args.hidden, args.layers, seed=0)
        results[name] = time_steps(model, build(model), batches, args.warmup)
    params = sum(p.numel() for p in make_model(args.hidden, args.layers, 0).parameters())
    print(f"tiny DeepseekV3: {params:,} parameters, batch {args.batch}×{args.seq}, "
          f"{args.threads} thread(s), {args.steps} timed steps")
    for name, (rate, share) in results.items():
        print(f"  {name:<6} {rate:7.2f} steps/s   optimizer step {share:6.1%} of the time")
    print(f"Muon / AdamW: {results['muon'][0] / results['adamw'][0]:.2f}× the steps per second")


if __name__ == "__main__":
    main()
