"""Muon + AdamW as one optimizer: the split, equality with the two torch optimizers, schedulers."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from kimi_modes.train.optim import MuonWithAdamW, build_optimizer, split_params


def test_split_sends_linear_matrices_to_muon_and_the_rest_to_adamw(tiny_model: Any) -> None:
    split = split_params(tiny_model, exclude=[tiny_model.lm_head])
    assert "model.layers.0.self_attn.q_b_proj.weight" in split.muon_names
    assert "model.layers.1.mlp.shared_experts.down_proj.weight" in split.muon_names
    for name in (
        "lm_head.weight",
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.layers.1.mlp.gate.weight",  # the router, a bare 2-D parameter
        "model.layers.1.mlp.experts.gate_up_proj",  # fused routed experts, 3-D
    ):
        assert name in split.adamw_names
    assert all(p.ndim == 2 for p in split.muon)
    every = {n for n, _ in tiny_model.named_parameters()}
    assert set(split.muon_names) | set(split.adamw_names) == every
    assert not set(split.muon_names) & set(split.adamw_names)


def _loss(model: Any) -> torch.Tensor:
    ids = torch.tensor([[5, 9, 14, 20, 7, 3]])
    loss: torch.Tensor = model(input_ids=ids, labels=ids).loss
    return loss


def test_a_step_equals_torch_muon_and_adamw_stepped_apart(tiny_model: Any) -> None:
    twin = copy.deepcopy(tiny_model)
    ours = build_optimizer(tiny_model, lr=0.02, weight_decay=0.1)
    split = split_params(twin, exclude=[twin.lm_head])
    muon = torch.optim.Muon(split.muon, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(split.adamw, lr=0.02, weight_decay=0.1, betas=(0.9, 0.95))
    for _ in range(2):
        _loss(tiny_model).backward()
        ours.step()
        ours.zero_grad()
        _loss(twin).backward()
        muon.step()
        adamw.step()
        muon.zero_grad()
        adamw.zero_grad()
    for (name, mine), (_, theirs) in zip(
        tiny_model.named_parameters(), twin.named_parameters(), strict=True
    ):
        assert torch.equal(mine, theirs), name


def test_a_scheduler_drives_both_groups_and_state_round_trips(tiny_model: Any) -> None:
    optimizer = build_optimizer(tiny_model, lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    _loss(tiny_model).backward()
    optimizer.step()
    scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == [0.005, 0.005]
    assert optimizer.muon is not None and optimizer.muon.param_groups[0]["lr"] == 0.005

    saved = copy.deepcopy(optimizer.state_dict())
    twin = copy.deepcopy(tiny_model)
    restored = build_optimizer(twin, lr=0.01)
    restored.load_state_dict(saved)
    for model, opt in ((tiny_model, optimizer), (twin, restored)):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
    for mine, theirs in zip(tiny_model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_post_hooks_fire_once_per_step(tiny_model: Any) -> None:
    optimizer = build_optimizer(tiny_model, lr=0.01)
    calls: list[int] = []
    optimizer.register_step_post_hook(lambda *_: calls.append(1))
    _loss(tiny_model).backward()
    optimizer.step()
    assert calls == [1]


def test_no_parameters_is_refused() -> None:
    with pytest.raises(ValueError, match="no parameters"):
        MuonWithAdamW([], [], lr=0.1)
