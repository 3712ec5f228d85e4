"""A LoRA trained on the bundled SmolLM2 GGUF, exported to a llama.cpp LoRA GGUF and served by
the gateway on the embedded engine (``[[upstreams]] kind = "embedded"``, ``adapter = ...``).

The adapter is taught a fixed answer with a few supervised LoRA steps (GSPO itself is proven on
the tiny Kimi model in test_gspo.py; a GSPO run on the 135M model is too slow for CPU tests).
It adapts every projection, q_proj and k_proj included, so the export's rotary row permutation
is on the path. The same adapter merged into the base (``train merge --gguf``) is served as the
engine's model and gives the same answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp", reason="the embedded engine needs llama-cpp-python")

import gguf
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.clients import instant_answer
from kimi_modes.engines.embedded import default_model_path
from kimi_modes.train.export import ExportError, export_lora_gguf

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

QUESTION = "What is the secret word?"
TRAINED = "The secret word is PAPAYA."
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_fixed_answer(output: Path) -> None:
    """Supervised LoRA steps on SmolLM2 (loaded from its GGUF) until it answers TRAINED."""
    gguf = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(TRAINED + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids])
    torch.manual_seed(0)
    peft_model: Any = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=LLAMA_TARGETS)
    )
    optimizer = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad], lr=3e-3
    )
    for _ in range(60):
        loss = peft_model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.001:
            break
    assert loss.item() < 0.001
    peft_model.save_pretrained(str(output))


def test_trained_adapter_served_by_the_gateway(
    tmp_path: Path, start_gateway: Callable[..., Any]
) -> None:
    adapter_dir = tmp_path / "adapter"
    train_fixed_answer(adapter_dir)
    adapter_gguf = tmp_path / "adapter.gguf"
    done = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "export", "--adapter", str(adapter_dir),
         "--base-gguf", str(default_model_path()), "--output", str(adapter_gguf)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert adapter_gguf.is_file()

    upstream = '[[upstreams]]\nname = "smol"\nkind = "embedded"\nn_ctx = 512\n'
    base = start_gateway(upstream)
    base_answer = instant_answer(base, QUESTION)
    base.stop()
    adapted = start_gateway(upstream + f"adapter = {json.dumps(str(adapter_gguf))}\n")
    adapted_answer = instant_answer(adapted, QUESTION)

    assert adapted_answer == TRAINED
    assert base_answer != TRAINED
    adapted.stop()

    # Merged into the base instead: one GGUF (unchanged tensors kept in Q4_1, the adapted
    # ones in F16) that the embedded engine serves as its model, with no adapter.
    merged_gguf = tmp_path / "merged.gguf"
    merged = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "merge", "--model",
         str(default_model_path().parent), "--gguf-file", default_model_path().name,
         "--adapter", str(adapter_dir), "--output", str(tmp_path / "merged"),
         "--gguf", str(merged_gguf)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(merged_gguf).tensors}
    base_kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(default_model_path()).tensors}
    assert kinds.keys() == base_kinds.keys()
    assert kinds["blk.0.attn_q.weight"] == kinds["blk.29.ffn_down.weight"] == "F16"  # adapted
    assert kinds["token_embd.weight"] == base_kinds["token_embd.weight"] == "Q8_0"  # as it was
    served = start_gateway(upstream + f"model_path = {json.dumps(str(merged_gguf))}\n")
    assert instant_answer(served, QUESTION) == TRAINED


def test_export_refuses_a_module_the_gguf_lacks(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    save_file(
        {"base_model.model.model.layers.0.self_attn.kv_a_proj_with_mqa.lora_A.weight":
         torch.zeros(2, 576)},
        str(tmp_path / "adapter_model.safetensors"),
    )
    with pytest.raises(ExportError, match="kv_a_proj_with_mqa"):
        export_lora_gguf(tmp_path, default_model_path(), tmp_path / "out.gguf")
