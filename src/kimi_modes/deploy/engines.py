"""The serving engines the planner lays a model out for, and how each one spends memory.

Data only. Each engine states which checkpoint formats it loads for Kimi, how it shares a
device's memory between weights, activations and the KV cache, and how it spans nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kimi_modes.deploy.models import Format

#: How the KV pool is sized.
#: ``share_of_total``: ``memory × fraction − reserve − weights`` (vLLM, ATOM, SGLang);
#: ``share_of_free``: ``fraction × (memory − reserve − weights)`` (TensorRT-LLM);
#: ``pooled``: GPUs and CPU RAM summed into one pool (llama.cpp); ``unified``: Apple (exo).
MemoryModel = Literal["share_of_total", "share_of_free", "pooled", "unified"]

#: How one replica spans nodes: TP inside a node × PP across nodes, TP across all GPUs,
#: or not at all.
MultiNode = Literal["tp_pp", "tp", "none"]


@dataclass(frozen=True)
class Engine:
    """One engine's facts for planning; ``fraction_flag`` names the knob behind ``fraction``."""

    key: str
    name: str
    vendors: frozenset[str]
    formats: frozenset[Format]
    memory_model: MemoryModel
    fraction: float
    fraction_flag: str
    reserve_gib: float
    multi_node: MultiNode
    #: expert parallelism over the GPUs of a node (TensorRT-LLM's ``ep_size``), else 1.
    ep_per_node: bool = False
    #: largest TP per vendor where the engine's kernels cap it.
    max_tp: dict[str, int] = field(default_factory=dict)
    #: FP8 KV whenever ``--kv-dtype auto`` (the engine's published Kimi recipes all set it).
    fp8_kv_by_default: bool = False
    source: str = ""


ENGINES: dict[str, Engine] = {
    e.key: e
    for e in (
        Engine(
            "vllm", "vLLM", frozenset({"nvidia", "amd"}),
            frozenset({"bf16", "fp8", "int4", "nvfp4", "mxfp4"}),
            "share_of_total", 0.90, "--gpu-memory-utilization (default 0.9)",
            # The K2-Thinking TP8 run on H200 at 0.9 logged 46.80 GiB of KV next to ~69 GiB of
            # weights: 0.9 × 141 − 69.2 − 46.8 ≈ 10 GiB went to activations and runtime
            # (vllm-project/recipes moonshotai/Kimi-K2-Think.md; derived).
            10.0, "tp_pp",
            source="vllm-project/recipes models/moonshotai/*.yaml (TP8; TP8×PP2 across nodes)",
        ),
        Engine(
            "sglang", "SGLang", frozenset({"nvidia", "amd"}),
            frozenset({"bf16", "fp8", "int4", "nvfp4", "mxfp4"}),
            # Activations and CUDA graphs live outside --mem-fraction-static, so no reserve
            # inside it. 0.85 is llm-d's K3 value; SGLang picks its own default by GPU size.
            "share_of_total", 0.85, "--mem-fraction-static (0.85 as llm-d's K3 statefulset)",
            0.0, "tp",
            # AITER MLA needs heads_per_gpu % 16 == 0: with 64 heads TP ≤ 4 on AMD
            # (sgl-project/sgl-cookbook docs/autoregressive/Moonshotai/Kimi-K2.5.md).
            max_tp={"amd": 4},
            source="MoonshotAI/Kimi-K2 docs/deploy_guidance.md (--tp 16 --nnodes 2)",
        ),
        Engine(
            "trtllm", "TensorRT-LLM", frozenset({"nvidia"}), frozenset({"bf16", "fp8", "nvfp4"}),
            # kv_cache_config.free_gpu_memory_fraction: share of what is free after loading
            # (0.9 is the library default, unverified; the curated K2-Thinking file uses 0.75).
            "share_of_free", 0.90, "kv_cache_config.free_gpu_memory_fraction (0.9)",
            10.0, "tp", ep_per_node=True,
            source="NVIDIA/TensorRT-LLM examples/configs/curated/kimi-k2-thinking.yaml "
            "(tp 8, ep 8); Moonshot multi-node: --tp_size 16 --ep_size 8",
        ),
        Engine(
            "atom", "ATOM", frozenset({"amd"}), frozenset({"int4", "mxfp4", "w4a8"}),
            "share_of_total", 0.90, "--gpu-memory-utilization (as vLLM; ATOM's K3 uses 0.93)",
            10.0, "none", fp8_kv_by_default=True,
            source="ROCm/ATOM recipes/Kimi-K2.5.md, recipes/Kimi-K3.md (single node, "
            "--kv_cache_dtype fp8)",
        ),
        Engine(
            "llama.cpp", "llama.cpp", frozenset({"nvidia", "amd", "apple", "cpu"}),
            frozenset({"gguf"}),
            # unsloth's rule: RAM + VRAM ≈ the quant's size, else it pages from disk (slow).
            # 2 GiB per GPU for compute buffers is our assumption.
            "pooled", 1.0, "--fit on", 2.0, "none",
            source="ggml-org/llama.cpp tools/server/README.md; unsloth's Kimi guides",
        ),
        Engine(
            "exo", "exo", frozenset({"apple"}), frozenset({"mlx"}),
            "unified", 1.0, "ram_available (measured by exo)", 0.0, "tp_pp",
            source="exo-explore/exo src/exo/master/placement.py, placement_utils.py",
        ),
    )
}

#: Memory a CPU host or a Mac keeps for its OS and everything else (our assumption).
HOST_RESERVE_GIB = 16.0


def engine(key: str) -> Engine:
    """The engine called ``key``; KeyError naming the known ones."""
    try:
        return ENGINES[key.lower()]
    except KeyError:
        raise KeyError(f"unknown engine {key!r} (known: best, {', '.join(ENGINES)})") from None
