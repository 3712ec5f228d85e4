"""Kimi models and their released checkpoints, as data.

Every number carries its source in a comment. "(derived)" marks our own arithmetic,
"(unverified)" a figure not checked against a primary source, and a checkpoint's ``estimate``
says in words why its size is not a measured one. The planner (:mod:`.planner`) and the exo
placement (:mod:`.exo`) read only what is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kimi_modes.protocol.families import Family

#: How a checkpoint stores its weights. ``gguf`` runs on llama.cpp, ``mlx`` on exo / mlx-lm.
Format = Literal["bf16", "fp8", "int4", "nvfp4", "mxfp4", "w4a8", "gguf", "mlx"]


@dataclass(frozen=True)
class Architecture:
    """What the memory arithmetic needs from a model's ``config.json``.

    ``mla_layers`` is the number of layers that keep a per-token MLA cache; ``None`` when the
    published config leaves it open (K3), in which case ``mla_layers_estimate`` is used and
    the planner says so.
    """

    n_layers: int | None
    hidden_size: int
    attention_heads: int
    routed_experts: int
    kv_lora_rank: int
    qk_rope_head_dim: int
    context_length: int
    mla_layers: int | None
    mla_layers_estimate: int
    estimate_note: str | None = None

    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """MLA caches the compressed latent plus the shared rope key: kv_lora_rank + rope dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def cached_layers(self) -> int:
        """Layers holding a per-token KV cache (the estimate when the config leaves it open)."""
        return self.mla_layers if self.mla_layers is not None else self.mla_layers_estimate


@dataclass(frozen=True)
class Checkpoint:
    """One loadable set of weights of a model.

    ``weights_bytes`` is what sits in accelerator memory once loaded (for ATOM's W4A8 that is
    the FP8 re-quantised size, not the size on disk). ``requires`` names the accelerator
    families that can run it (``None``: any GPU of a vendor in ``vendors``).
    """

    key: str
    repo: str
    format: Format
    weights_bytes: int
    vendors: frozenset[str]
    source: str
    estimate: str | None = None
    requires: frozenset[str] | None = None
    #: MLX only: the ``quantization`` label exo's card gives it ("" where exo gives none).
    quantization: str = ""


@dataclass(frozen=True)
class Model:
    """A Kimi model: its architecture and checkpoints; ``checkpoints[0]`` is the native one.
    ``family`` names its :class:`kimi_modes.protocol.families.Family` (parsers, thinking
    switch); ``vision``: it ships the MoonViT encoder (K2.5 on, K3)."""

    key: str
    name: str
    architecture: Architecture
    checkpoints: tuple[Checkpoint, ...]
    family: Family
    vision: bool = False

    def checkpoint(self, key: str | None) -> Checkpoint:
        """The checkpoint called ``key`` (the native one when ``None``); KeyError otherwise."""
        if key is None:
            return self.checkpoints[0]
        for checkpoint in self.checkpoints:
            if checkpoint.key == key:
                return checkpoint
        known = ", ".join(c.key for c in self.checkpoints)
        raise KeyError(f"{self.name} has no checkpoint {key!r} (known: {known})")


GPU_VENDORS = frozenset({"nvidia", "amd"})
ANY_VENDOR = frozenset({"nvidia", "amd", "apple", "cpu"})
APPLE = frozenset({"apple"})
BLACKWELL = frozenset({"blackwell"})

# K2.x (MoonshotAI/Kimi-K2 README.md and docs/deploy_guidance.md; MoonshotAI/Kimi-K2.5
# README.md): 61 layers (layer 0 dense), hidden 7168, MLA with 64 heads, kv_lora_rank 512,
# qk_rope_head_dim 64, 384 routed experts. Contexts: vllm-project/recipes
# models/moonshotai/*.yaml (0905: a third-party summary of the card, unverified).
_K2_LAYERS = 61


def _k2(context_length: int) -> Architecture:
    return Architecture(
        n_layers=_K2_LAYERS, hidden_size=7168, attention_heads=64, routed_experts=384,
        kv_lora_rank=512, qk_rope_head_dim=64, context_length=context_length,
        mla_layers=_K2_LAYERS, mla_layers_estimate=_K2_LAYERS,
    )


# K3 (vllm-project/recipes models/moonshotai/Kimi-K3.yaml; ROCm/ATOM recipes/Kimi-K3.md):
# hidden 7168, 896 routed experts, 1,048,576 context, hybrid KDA + Gated MLA. Its layer count
# and how many layers are MLA are not published; only the MLA layers keep per-token KV (the KDA
# layers keep a fixed state per sequence). We plan with K2's 61 layers, all counted as MLA with
# K2's latent width (512 + 64): an upper bound on the per-token cache if K3 has no more layers.
# Its head count is unknown too; we assume K2's 64 for the TP divisibility rule.
K3_ARCHITECTURE = Architecture(
    n_layers=None, hidden_size=7168, attention_heads=64, routed_experts=896,
    kv_lora_rank=512, qk_rope_head_dim=64, context_length=1_048_576,
    mla_layers=None, mla_layers_estimate=_K2_LAYERS,
    estimate_note=(
        "K3's config leaves its layer count and its MLA/KDA split open: the KV per token "
        "assumes K2's 61 layers all caching a 576-wide MLA latent (an upper bound if K3 has "
        "no more layers), the per-sequence KDA state is not counted, and the TP rule assumes "
        "K2's 64 heads"
    ),
)

# Weights (derived, deploy-facts §2.1): routed experts 60 × 384 × 3 × 7168 × 2048 =
# 1,014,686,023,680 parameters; everything else ~11.7 B parameters kept in BF16 (23.4 GB).
_K2_BF16_BYTES = 2_052_772_047_360  # (1,014.686 G + 11.7 G) × 2 B (derived)
_K2_FP8_RESIDENT = 1_038_086_023_680  # experts 1 B each + 23.4 GB BF16 rest (derived)
_K2_FP8_CHECKPOINT = 1_030_000_000_000  # ~1.03 TB, block FP8 (derived; unsloth lists 1.09 TB)
_K2_INT4 = 595_000_000_000  # ~595 GB, recipes Kimi-K2-Thinking.yaml / Kimi-K2.5.yaml


def _bf16(name: str) -> Checkpoint:
    return Checkpoint(
        "bf16", f"(BF16 upcast of {name})", "bf16", _K2_BF16_BYTES, GPU_VENDORS,
        "derived: 1.0264 T parameters × 2 B", estimate="no BF16 checkpoint is published; the "
        "size is our arithmetic",
    )


def _gguf(key: str, repo: str, size: int, source: str) -> Checkpoint:
    return Checkpoint(f"gguf-{key}", f"{repo}:{key.upper()}", "gguf", size, ANY_VENDOR, source)


def _mlx(key: str, repo: str, size: int, source: str, label: str = "") -> Checkpoint:
    return Checkpoint(f"mlx-{key}", repo, "mlx", size, APPLE, source, quantization=label)


_EXO = "exo-explore/exo resources/inference_model_cards/ (HEAD b5375f8)"
_SEED = "the seed notes' exo card list (not in exo HEAD b5375f8)"

_K2_INSTRUCT_CHECKPOINTS = (
    Checkpoint("fp8", "moonshotai/Kimi-K2-Instruct", "fp8", _K2_FP8_CHECKPOINT, GPU_VENDORS,
               "Kimi-K2 README §4; recipes Kimi-K2-Instruct.yaml (vram_minimum_gb 1200)",
               estimate="~1.03 TB is our arithmetic over the architecture"),
    _bf16("K2-Instruct"),
    _gguf("ud-tq1_0", "unsloth/Kimi-K2-Instruct-GGUF", 245_000_000_000,
          "https://docs.unsloth.ai/basics/kimi-k2-how-to-run-locally"),
    _gguf("ud-q2_k_xl", "unsloth/Kimi-K2-Instruct-GGUF", 381_000_000_000,
          "https://docs.unsloth.ai/basics/kimi-k2-how-to-run-locally"),
    _gguf("q8_0", "unsloth/Kimi-K2-Instruct-GGUF", 1_090_000_000_000,
          "https://docs.unsloth.ai/basics/kimi-k2-how-to-run-locally"),
    _mlx("4bit", "mlx-community/Kimi-K2-Instruct-4bit", 620_622_774_272, _EXO, "4bit"),
)

MODELS: dict[str, Model] = {
    "k2-instruct": Model("k2-instruct", "Kimi-K2-Instruct", _k2(131_072),
                         _K2_INSTRUCT_CHECKPOINTS, Family.K2_INSTRUCT),
    "k2-instruct-0905": Model(
        "k2-instruct-0905", "Kimi-K2-Instruct-0905", _k2(262_144),
        tuple(
            Checkpoint(c.key, c.repo.replace("K2-Instruct", "K2-Instruct-0905"), c.format,
                       c.weights_bytes, c.vendors, c.source, c.estimate, c.requires)
            for c in _K2_INSTRUCT_CHECKPOINTS if c.format in ("fp8", "bf16")
        ),
        Family.K2_INSTRUCT,
    ),
    "k2-thinking": Model("k2-thinking", "Kimi-K2-Thinking", _k2(262_144), (
        Checkpoint("int4", "moonshotai/Kimi-K2-Thinking", "int4", _K2_INT4, GPU_VENDORS,
                   "recipes Kimi-K2-Thinking.yaml (~595 GB, native INT4 QAT)"),
        Checkpoint("nvfp4", "nvidia/Kimi-K2-Thinking-NVFP4", "nvfp4", 591_000_000_000,
                   frozenset({"nvidia"}), "recipes Kimi-K2-Thinking.yaml",
                   estimate="~591 GB is a forum figure (unverified)", requires=BLACKWELL),
        _bf16("K2-Thinking"),
        _gguf("ud-tq1_0", "unsloth/Kimi-K2-Thinking-GGUF", 245_000_000_000,
              "unsloth K2-Thinking guide"),
        _mlx("mlx", "mlx-community/Kimi-K2-Thinking", 706_522_120_192, _EXO),
    ), Family.K2_THINKING),
    "k2.5": Model("k2.5", "Kimi-K2.5", _k2(262_144), (
        Checkpoint("int4", "moonshotai/Kimi-K2.5", "int4", _K2_INT4, GPU_VENDORS,
                   "recipes Kimi-K2.5.yaml (~595 GB, compressed-tensors INT4 g32)"),
        Checkpoint("nvfp4", "nvidia/Kimi-K2.5-NVFP4", "nvfp4", 591_000_000_000,
                   frozenset({"nvidia"}), "recipes Kimi-K2.5.yaml",
                   estimate="~591 GB is a forum figure (unverified)", requires=BLACKWELL),
        Checkpoint("mxfp4", "amd/Kimi-K2.5-MXFP4", "mxfp4", 557_000_000_000,
                   frozenset({"amd"}), "recipes Kimi-K2.5.yaml (vram_minimum_gb 669)",
                   requires=frozenset({"cdna4"})),
        Checkpoint("w4a8", "amd/Kimi-K2.5-W4A8", "w4a8", _K2_FP8_RESIDENT, frozenset({"amd"}),
                   "ROCm/ATOM recipes/Kimi-K2.5.md (experts re-quantised to FP8 at load)",
                   estimate="resident size is our arithmetic: experts as FP8 (1.015 TB) plus "
                   "23.4 GB BF16"),
        _bf16("K2.5"),
        _gguf("ud-tq1_0", "unsloth/Kimi-K2.5-GGUF", 240_000_000_000,
              "https://unsloth.ai/docs/de/modelle/kimi-k2.5"),
        _gguf("ud-q2_k_xl", "unsloth/Kimi-K2.5-GGUF", 375_000_000_000,
              "https://unsloth.ai/docs/de/modelle/kimi-k2.5"),
        _mlx("4bit", "mlx-community/Kimi-K2.5", 662_498_705_408, _EXO),
        _mlx("3.6bit", "inferencerlabs/Kimi-K2.5-MLX-3.6bit", 470_011_424_768, _SEED, "3.6bit"),
        _mlx("4.2bit", "inferencerlabs/Kimi-K2.5-MLX-4.2bit", 545_523_496_960, _SEED, "4.2bit"),
    ), Family.K2_5, vision=True),
    "k2.6": Model("k2.6", "Kimi-K2.6", _k2(262_144), (
        Checkpoint("int4", "moonshotai/Kimi-K2.6", "int4", 595_148_192_736, GPU_VENDORS,
                   _EXO + " moonshotai--Kimi-K2.6.toml storage_size"),
        Checkpoint("nvfp4", "nvidia/Kimi-K2.6-NVFP4", "nvfp4", 591_000_000_000,
                   frozenset({"nvidia"}), "recipes Kimi-K2.6.yaml",
                   estimate="~591 GB is a forum figure (unverified)", requires=BLACKWELL),
        _bf16("K2.6"),
        _gguf("ud-q2_k_xl", "unsloth/Kimi-K2.6-GGUF", 340_000_000_000,
              "https://unsloth.ai/docs/zh/mo-xing/kimi-k2.6 (dynamic 2-bit)"),
        _gguf("ud-q4_k_xl", "unsloth/Kimi-K2.6-GGUF", 584_000_000_000,
              "https://unsloth.ai/docs/zh/mo-xing/kimi-k2.6"),
        _gguf("ud-q8_k_xl", "unsloth/Kimi-K2.6-GGUF", 595_000_000_000,
              "https://unsloth.ai/docs/zh/mo-xing/kimi-k2.6"),
        _mlx("3bit", "mlx-community/Kimi-K2.6-mlx-DQ3_K_M-q8", 470_628_683_776, _EXO, "3bit"),
        _mlx("int4", "moonshotai/Kimi-K2.6", 595_148_192_736, _EXO),
    ), Family.K2_6, vision=True),
    "k2.7-code": Model("k2.7-code", "Kimi-K2.7-Code", _k2(262_144), (
        Checkpoint("int4", "moonshotai/Kimi-K2.7-Code", "int4", 595_204_986_173, GPU_VENDORS,
                   _EXO + " moonshotai--Kimi-K2.7-Code.toml storage_size"),
        _bf16("K2.7-Code"),
        _mlx("int4", "moonshotai/Kimi-K2.7-Code", 595_204_986_173, _EXO),
    ), Family.K2_7_CODE, vision=True),
    "k3": Model("k3", "Kimi-K3", K3_ARCHITECTURE, (
        Checkpoint("mxfp4", "moonshotai/Kimi-K3", "mxfp4", 1_560_000_000_000, GPU_VENDORS,
                   "recipes Kimi-K3.yaml (vram_minimum_gb 1680 = 2.8 T × 0.5 B × 1.2)",
                   estimate="~1.56 TB on disk is a third-party figure (unverified); the "
                   "recipe itself only estimates"),
        Checkpoint("nvfp4", "RedHatAI/Kimi-K3-NVFP4", "nvfp4", 1_375_000_000_000,
                   frozenset({"nvidia"}), "recipes Kimi-K3.yaml (vram_minimum_gb 1650)",
                   estimate="1650 GB / 1.2 headroom, the recipe's own sizing rule (derived)",
                   requires=BLACKWELL),
    ), Family.K3, vision=True),
}


def model(key: str) -> Model:
    """The model called ``key`` (case-insensitive, e.g. ``k2.5``); KeyError with the known keys."""
    try:
        return MODELS[key.lower()]
    except KeyError:
        raise KeyError(f"unknown model {key!r} (known: {', '.join(MODELS)})") from None


def kv_bytes_per_token(architecture: Architecture, dtype_bytes: int) -> int:
    """Bytes one token occupies in the KV cache over all cached layers (one copy).

    K2.x in BF16: 61 × (512 + 64) × 2 = 70,272; in FP8 half that.
    """
    return architecture.cached_layers * architecture.kv_elements_per_token_per_layer * dtype_bytes
