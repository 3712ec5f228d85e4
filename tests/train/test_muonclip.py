"""QK-Clip: exact per-head scale factors, logit capture, and one clipped step on a tiny MLA model.

In the spirit of MaxText's tests/unit/qk_clip_test.py (τ = 10, maxima [20, 5] → head 0's
no-RoPE rows × √0.5, rotary rows × 0.5, values untouched, head 1 untouched) and Megatron's
TestClipQK.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import transformers

from kimi_modes.train.muonclip import MAX_LOGIT_BUFFER, QKClip, clip_scales, head_max_logits
from kimi_modes.train.optim import build_optimizer


def test_scale_factors_per_head_from_hand_built_maxima() -> None:
    gamma = clip_scales(torch.tensor([20.0, 5.0, 10.0, 80.0]), threshold=10.0)
    assert gamma.tolist() == [0.5, 1.0, 1.0, 0.125]


def _attention(model: Any, layer: int = 0) -> Any:
    return model.model.layers[layer].self_attn


def test_mla_rows_scaled_like_maxtext(tiny_model: Any) -> None:
    clip = QKClip(tiny_model, threshold=10.0)
    attention = _attention(tiny_model)
    for part in (attention.q_b_proj, attention.kv_b_proj, attention.kv_a_proj_with_mqa):
        torch.nn.init.ones_(part.weight)
    attention.get_buffer(MAX_LOGIT_BUFFER).copy_(torch.tensor([20.0, 5.0]))

    report = clip.clip()

    assert (report.clipped_heads, report.heads, report.max_logit) == (1, 4, 20.0)
    q = attention.q_b_proj.weight.view(2, 8 + 4, -1)  # per head: 8 no-RoPE rows, 4 rotary
    kv = attention.kv_b_proj.weight.view(2, 8 + 8, -1)  # per head: 8 key rows, 8 value rows
    assert torch.allclose(q[0, :8], torch.full_like(q[0, :8], math.sqrt(0.5)))
    assert torch.equal(q[0, 8:], torch.full_like(q[0, 8:], 0.5))
    assert torch.allclose(kv[0, :8], torch.full_like(kv[0, :8], math.sqrt(0.5)))
    assert torch.equal(kv[0, 8:], torch.ones_like(kv[0, 8:]))  # values untouched
    assert torch.equal(q[1], torch.ones_like(q[1]))  # head under τ untouched
    assert torch.equal(kv[1], torch.ones_like(kv[1]))
    assert torch.equal(attention.kv_a_proj_with_mqa.weight, torch.ones(16 + 4, 32))
    assert torch.isinf(attention.get_buffer(MAX_LOGIT_BUFFER)).all()  # reset for the next step


def test_head_maxima_match_an_einsum_reference() -> None:
    torch.manual_seed(1)
    query, key = torch.randn(2, 4, 5, 6), torch.randn(2, 2, 5, 6)
    logits = torch.einsum("bhqd,bhkd->bhqk", query, key.repeat_interleave(2, dim=1)) * 0.3
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    expected = logits.masked_fill(~causal, -math.inf).amax(dim=(0, 2, 3))
    assert torch.allclose(head_max_logits(query, key, None, 0.3), expected)
    padded = causal.expand(2, 1, 5, 5).clone()
    padded[1, :, :, 0] = False  # a left-padded second row
    additive = torch.zeros(2, 1, 5, 5).masked_fill(~padded, torch.finfo(torch.float32).min)
    expected = logits.masked_fill(~padded, -math.inf).amax(dim=(0, 2, 3))
    assert torch.allclose(head_max_logits(query, key, padded, 0.3), expected)
    assert torch.allclose(head_max_logits(query, key, additive, 0.3), expected)


def test_maxima_recorded_in_training_only(tiny_model: Any, tokenizer: Any) -> None:
    clip = QKClip(tiny_model, threshold=100.0)
    batch = tokenizer(["hello there", "hi"], return_tensors="pt", padding=True)
    tiny_model.eval()
    tiny_model(**batch)
    assert all(torch.isinf(seen).all() for seen in clip.max_logits().values())
    tiny_model.train()
    tiny_model(**batch)
    assert all(torch.isfinite(seen).all() for seen in clip.max_logits().values())


def _max_logits_after_forward(model: Any, clip: QKClip, batch: Any) -> dict[str, torch.Tensor]:
    model(**batch)
    seen = clip.max_logits()
    for name in seen:
        model.get_submodule(name).get_buffer(MAX_LOGIT_BUFFER).fill_(-math.inf)
    return seen


def test_one_step_clips_the_hot_head_to_tau_and_leaves_the_rest(
    tiny_model: Any, tokenizer: Any
) -> None:
    attention = _attention(tiny_model)
    with torch.no_grad():
        attention.q_b_proj.weight.view(2, 12, -1)[0] *= 300.0  # force head 0 of layer 0 hot
    clip = QKClip(tiny_model, threshold=1.0)
    tiny_model.train()
    batch = tokenizer(["the quick brown fox", "jumps over it"], return_tensors="pt", padding=True)
    before = _max_logits_after_forward(tiny_model, clip, batch)
    assert before["model.layers.0.self_attn"][0] > 1.0  # above τ
    assert before["model.layers.0.self_attn"][1] < 1.0
    assert (before["model.layers.1.self_attn"] < 1.0).all()
    weights_before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}

    optimizer = build_optimizer(tiny_model, lr=0.0, weight_decay=0.0)  # isolate the clip
    clip.attach(optimizer)
    tiny_model(**batch).logits.sum().backward()
    optimizer.step()

    assert clip.last is not None and clip.last.clipped_heads == 1
    after = _max_logits_after_forward(tiny_model, clip, batch)
    assert after["model.layers.0.self_attn"][0] == pytest.approx(1.0, rel=1e-4)
    assert after["model.layers.0.self_attn"][1] == before["model.layers.0.self_attn"][1]
    # layer 1's logits move with layer 0's output, but none of its weights do (checked below)
    changed = {n for n, p in tiny_model.named_parameters() if not torch.equal(p, weights_before[n])}
    assert changed == {
        "model.layers.0.self_attn.q_b_proj.weight",
        "model.layers.0.self_attn.kv_b_proj.weight",
    }
    kv = tiny_model.model.layers[0].self_attn.kv_b_proj.weight.view(2, 16, -1)
    old_kv = weights_before["model.layers.0.self_attn.kv_b_proj.weight"].view(2, 16, -1)
    assert torch.equal(kv[0, 8:], old_kv[0, 8:])  # values
    assert torch.equal(kv[1], old_kv[1])  # the cool head


def test_gqa_heads_scale_by_their_own_gamma() -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8,
    )
    model = transformers.LlamaForCausalLM(config)
    attention = model.model.layers[0].self_attn
    clip = QKClip(model, threshold=10.0)
    x = torch.randn(3, 32)

    def logits() -> torch.Tensor:  # per head: q_h · k_{group(h)} for a few token pairs
        q = attention.q_proj(x).view(3, 4, 8)
        k = attention.k_proj(x).view(3, 2, 8).repeat_interleave(2, dim=1)
        return torch.einsum("ihd,jhd->hij", q, k)

    before = logits().detach()
    attention.get_buffer(MAX_LOGIT_BUFFER).copy_(torch.tensor([40.0, 5.0, 20.0, 80.0]))
    clip.clip()
    ratio = (logits().detach() / before).flatten(1)
    for head, gamma in enumerate([0.25, 1.0, 0.5, 0.125]):
        assert torch.allclose(ratio[head], torch.full_like(ratio[head], gamma), rtol=1e-4)


def test_lora_wrapped_projections_are_refused(tiny_model: Any) -> None:
    import peft

    wrapped = peft.get_peft_model(
        tiny_model, peft.LoraConfig(r=2, target_modules=["q_b_proj", "kv_b_proj"])
    )
    with pytest.raises(ValueError, match="not a plain Linear"):
        QKClip(wrapped)
