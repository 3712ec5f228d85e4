"""Merging a trained LoRA into the tiny Kimi-shaped model: the merged checkpoint computes what
the adapter did, loads without PEFT, and the refusals are clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kimi_modes.train.merge import MergeError, merge_checkpoint, merge_lora
from kimi_modes.train.targets import apply_lora, load_lora


def _trained_adapter(model: Any, output: Path) -> None:
    """An adapter with non-zero B factors (a fresh LoRA's B is zero: it would merge to the
    base and prove nothing), saved as `train run` saves it."""
    wrapped = apply_lora(model, rank=4, alpha=8)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    wrapped.save_pretrained(str(output))


def _logits(model: Any, tokenizer: Any) -> torch.Tensor:
    ids = tokenizer(["Number: 42 and more", "Count: 7"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**ids).logits  # type: ignore[no-any-return]


def test_merged_logits_equal_the_adapter_models(
    tmp_path: Path, tiny_model_dir: Path, model_factory: Any, tokenizer: Any
) -> None:
    adapter = tmp_path / "adapter"
    _trained_adapter(model_factory(), adapter)
    adapted = load_lora(model_factory(), adapter).eval()
    base_logits = _logits(model_factory().eval(), tokenizer)
    adapter_logits = _logits(adapted, tokenizer)
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)  # the adapter matters

    merged_dir = merge_checkpoint(tiny_model_dir, adapter, tmp_path / "merged")
    files = {path.name for path in merged_dir.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert "adapter_config.json" not in files
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()  # no PEFT involved
    assert not any("lora" in name for name, _ in merged.named_parameters())
    merged_logits = _logits(merged, AutoTokenizer.from_pretrained(merged_dir))
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)


def test_merge_lora_in_memory_adds_the_delta_to_adapted_weights_only(
    tmp_path: Path, model_factory: Any
) -> None:
    adapter = tmp_path / "adapter"
    _trained_adapter(model_factory(), adapter)
    base = model_factory().state_dict()
    merged = merge_lora(model_factory(), adapter).state_dict()
    assert merged.keys() == base.keys()
    changed = {k.removesuffix(".weight") for k in base if not torch.equal(base[k], merged[k])}
    assert "model.layers.0.self_attn.kv_b_proj" in changed
    assert "model.layers.1.mlp.shared_experts.down_proj" in changed
    assert not any("embed" in k or "norm" in k or "experts.gate_up" in k for k in changed)


def test_a_quantised_base_is_refused_before_its_weights_load(
    tmp_path: Path, tiny_model_dir: Path, model_factory: Any
) -> None:
    adapter = tmp_path / "adapter"
    _trained_adapter(model_factory(), adapter)
    config_path = tiny_model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = {"quant_method": "compressed-tensors", "format": "int4"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(MergeError, match=r"quantised \(compressed-tensors\)"):
        merge_checkpoint(tiny_model_dir, adapter, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_an_adapter_for_another_model_and_a_used_output_are_refused(
    tmp_path: Path, tiny_model_dir: Path, model_factory: Any
) -> None:
    adapter = tmp_path / "adapter"
    _trained_adapter(model_factory(), adapter)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(MergeError, match="not empty"):
        merge_checkpoint(tiny_model_dir, adapter, tmp_path / "used")
    with pytest.raises(MergeError, match="adapter's directory"):
        merge_checkpoint(tiny_model_dir, adapter, adapter)
    with pytest.raises(MergeError, match="not a LoRA adapter"):
        merge_checkpoint(tiny_model_dir, tmp_path / "used", tmp_path / "merged")

    config = json.loads((tiny_model_dir / "config.json").read_text())
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    wider = DeepseekV3ForCausalLM(DeepseekV3Config(**{**config, "q_lora_rank": 8}))
    with pytest.raises(MergeError, match="cannot be merged into this model"):
        merge_lora(wider, adapter)


def test_cli_merge_writes_the_checkpoint_and_refuses_gguf_without_a_gguf_base(
    tmp_path: Path, tiny_model_dir: Path, model_factory: Any
) -> None:
    adapter = tmp_path / "adapter"
    _trained_adapter(model_factory(), adapter)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kimi_modes", "train", "merge", "--model",
             str(tiny_model_dir), "--adapter", str(adapter), *args],
            capture_output=True, text=True, env=env, timeout=300,
        )

    done = cli("--output", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "merged model saved to" in done.stdout
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    refused = cli("--output", str(tmp_path / "again"), "--gguf", str(tmp_path / "m.gguf"))
    assert refused.returncode == 2
    assert "give --gguf-file too" in refused.stderr
