"""LoRA targets on a tiny DeepseekV3 (Kimi's layout): exactly the MLA and MLP modules named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.train.targets import (
    DEFAULT_TARGETS,
    KIMI_TARGETS,
    MLA_ATTENTION,
    TargetError,
    adapted_modules,
    apply_lora,
    check_targets,
    load_lora,
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


def test_peft_alone_moves_the_mlp_onto_the_routed_experts(tiny_model: Any) -> None:
    # Why apply_lora switches PEFT's v4→v5 conversion off: PEFT 0.21 + transformers v5 turn
    # gate/up/down_proj on DeepseekV3 into the fused routed experts, leaving the dense and
    # shared MLP unadapted. (When this fails, PEFT has stopped doing so.)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=2, lora_alpha=4, target_modules=list(KIMI_TARGETS))
    adapted = adapted_modules(get_peft_model(tiny_model, config))
    assert "model.layers.0.mlp.gate_proj" not in adapted
    assert "model.layers.1.mlp.experts" in adapted


def test_the_default_adapts_exactly_mla_dense_and_shared_mlp(tiny_model: Any) -> None:
    assert tuple(DEFAULT_TARGETS) == tuple(KIMI_TARGETS)
    report = match_targets(tiny_model, DEFAULT_TARGETS)
    assert report.modules == EXPECTED
    wrapped = apply_lora(tiny_model, rank=4, alpha=8)
    assert adapted_modules(wrapped) == EXPECTED  # what PEFT actually wrapped
    assert not any("experts.gate_up_proj" in n for n, _ in wrapped.named_parameters()
                   if "lora" in n)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert sum(p.numel() for n, p in wrapped.named_parameters() if n in trainable) == (
        report.lora_parameters(4)
    )


def test_a_saved_adapter_loads_back_onto_the_same_modules(
    tiny_model: Any, tmp_path: Path, model_factory: Callable[[], Any]
) -> None:
    import torch

    wrapped = apply_lora(tiny_model, rank=4, alpha=8)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if ".lora_B." in name:
                param.fill_(0.01)  # B starts at zero: make the adapter change the output
    wrapped.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = wrapped(input_ids=ids).logits
    loaded = load_lora(model_factory(), tmp_path / "adapter")
    assert adapted_modules(loaded) == EXPECTED
    assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-6)
    assert not torch.allclose(model_factory()(input_ids=ids).logits, expected, atol=1e-4)


def test_the_mla_list_alone_adapts_only_the_mla(tiny_model: Any) -> None:
    wrapped = apply_lora(tiny_model, MLA_ATTENTION, rank=4, alpha=8)
    assert adapted_modules(wrapped) == MLA


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
    assert adapted_modules(wrapped) == EXPECTED | {"model.layers.1.mlp.experts"}


def test_routed_experts_refused_on_a_quantised_checkpoint(tiny_model: Any) -> None:
    tiny_model.config.quantization_config = {"quant_method": "compressed-tensors"}
    with pytest.raises(TargetError, match="quantised"):
        check_targets(match_targets(tiny_model, KIMI_TARGETS, routed_experts=True))


def test_the_skeleton_is_read_from_the_checkpoint_without_weights(tiny_model_dir: Path) -> None:
    skeleton = load_skeleton(tiny_model_dir)
    assert next(skeleton.parameters()).device.type == "meta"
    assert match_targets(skeleton, KIMI_TARGETS).modules == EXPECTED
