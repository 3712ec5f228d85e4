"""LoRA targets on a tiny DeepseekV3 (Kimi's layout): exactly the MLA and MLP modules named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kimi_modes.train.targets import (
    DEFAULT_TARGETS,
    KIMI_TARGETS,
    TargetError,
    adapted_modules,
    apply_lora,
    check_targets,
    load_skeleton,
    match_targets,
)

ATTENTION = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
MLA = {f"model.layers.{layer}.self_attn.{part}" for layer in (0, 1) for part in ATTENTION}
EXPECTED = {
    *MLA,
    *(f"model.layers.0.mlp.{part}" for part in ("gate_proj", "up_proj", "down_proj")),
    *(f"model.layers.1.mlp.shared_experts.{p}" for p in ("gate_proj", "up_proj", "down_proj")),
}
SEED_LIST = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_kimi_targets_name_exactly_the_mla_and_mlp_modules(tiny_model: Any) -> None:
    report = match_targets(tiny_model, KIMI_TARGETS)
    assert report.unmatched == []
    assert report.modules == EXPECTED


def test_peft_swapping_the_mlp_for_routed_experts_is_refused(tiny_model: Any) -> None:
    # PEFT 0.21 + transformers v5 turn gate/up/down_proj into the fused routed experts on
    # DeepseekV3: the dense and shared MLP would silently go unadapted.
    with pytest.raises(TargetError, match="routed experts") as caught:
        apply_lora(tiny_model, KIMI_TARGETS, rank=4, alpha=8)
    assert "model.layers.0.mlp.gate_proj" in str(caught.value)


def test_the_default_adapts_exactly_the_mla_projections(tiny_model: Any) -> None:
    report = match_targets(tiny_model, DEFAULT_TARGETS)
    assert report.modules == MLA
    wrapped = apply_lora(tiny_model, rank=4, alpha=8)
    assert adapted_modules(wrapped) == MLA
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert sum(p.numel() for n, p in wrapped.named_parameters() if n in trainable) == (
        report.lora_parameters(4)
    )


def test_the_seed_list_is_refused_with_the_reason(tiny_model: Any) -> None:
    report = match_targets(tiny_model, SEED_LIST)
    assert report.unmatched == ["q_proj", "k_proj", "v_proj"]
    assert next(m.modules for m in report.matches if m.target == "o_proj") == [
        "model.layers.0.self_attn.o_proj",
        "model.layers.1.self_attn.o_proj",
    ]
    with pytest.raises(TargetError, match="q_proj, k_proj, v_proj match nothing") as caught:
        apply_lora(tiny_model, SEED_LIST, rank=4, alpha=8)
    assert "attention is MLA" in str(caught.value)
    assert "kv_b_proj" in str(caught.value)


def test_routed_experts_only_by_explicit_choice(tiny_model: Any) -> None:
    plain = match_targets(tiny_model, KIMI_TARGETS)
    assert not any("experts.gate_up_proj" in name for name in plain.modules)
    report = match_targets(tiny_model, KIMI_TARGETS, routed_experts=True)
    assert [m.modules for m in report.expert_parameters] == [
        ["model.layers.1.mlp.experts.gate_up_proj"],
        ["model.layers.1.mlp.experts.down_proj"],
    ]
    wrapped = apply_lora(tiny_model, rank=2, alpha=4, routed_experts=True)
    assert adapted_modules(wrapped) == MLA | {"model.layers.1.mlp.experts"}


def test_routed_experts_refused_on_a_quantised_checkpoint(tiny_model: Any) -> None:
    tiny_model.config.quantization_config = {"quant_method": "compressed-tensors"}
    with pytest.raises(TargetError, match="quantised"):
        check_targets(match_targets(tiny_model, KIMI_TARGETS, routed_experts=True))


def test_the_skeleton_is_read_from_the_checkpoint_without_weights(tiny_model_dir: Path) -> None:
    skeleton = load_skeleton(tiny_model_dir)
    assert next(skeleton.parameters()).device.type == "meta"
    assert match_targets(skeleton, KIMI_TARGETS).modules == EXPECTED
