"""Muon for the hidden matrices, AdamW for the rest, as one optimizer a trainer accepts.

Muon is PyTorch's own (``torch.optim.Muon``, torch ≥ 2.9): momentum, Newton–Schulz
orthogonalisation, decoupled weight decay, and the learning-rate adjustment per matrix shape.
PyTorch leaves the grouping to the caller and accepts only 2-D parameters, so this module
does the grouping (:func:`split_params`) and wraps the two optimizers in one
:class:`torch.optim.Optimizer` (:class:`MuonWithAdamW`) whose ``param_groups`` are the
union of theirs. A learning-rate scheduler, accelerate's wrapper and TRL's trainer therefore
drive both, and a step post-hook (MuonClip's) fires once per step.

The default ``adjust_lr_fn="match_rms_adamw"`` is Moonshot's rule (Moonlight, arXiv
2502.16982; used for Kimi K2): Muon's update is scaled to AdamW's RMS, so one learning rate
and one weight decay serve both groups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

AdjustLr = Literal["original", "match_rms_adamw"]


@dataclass(frozen=True, slots=True)
class ParamSplit:
    """Trainable parameters by optimizer: ``muon`` (2-D Linear weights), ``adamw`` (the rest)."""

    muon: list[nn.Parameter]
    adamw: list[nn.Parameter]
    muon_names: list[str]
    adamw_names: list[str]


def split_params(model: nn.Module, *, exclude: Iterable[nn.Module] = ()) -> ParamSplit:
    """Split ``model``'s trainable parameters between Muon and AdamW.

    Muon gets the weight of every ``nn.Linear`` (LoRA's ``lora_A``/``lora_B`` factors are
    Linears too) except those inside a module of ``exclude`` (pass the output head). AdamW gets
    everything else: embeddings, norms, biases, a MoE router's weight (a bare parameter in
    DeepseekV3, not a Linear) and fused 3-D expert tensors. Frozen parameters are left out.
    """
    excluded = {id(p) for module in exclude for p in module.parameters()}
    linear_weights = {
        id(module.weight) for module in model.modules() if isinstance(module, nn.Linear)
    }
    split = ParamSplit([], [], [], [])
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        to_muon = id(param) in linear_weights and id(param) not in excluded and param.ndim == 2
        (split.muon if to_muon else split.adamw).append(param)
        (split.muon_names if to_muon else split.adamw_names).append(name)
    return split


def output_head(model: nn.Module) -> nn.Module | None:
    """The output projection of a transformers model (PEFT-wrapped or not), else ``None``."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if isinstance(base, PreTrainedModel):
        head = base.get_output_embeddings()  # type: ignore[no-untyped-call]
        return head if isinstance(head, nn.Module) else None
    return None


class MuonWithAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` over ``muon_params`` and ``torch.optim.AdamW`` over ``adamw_params``.

    One optimizer to the outside: ``param_groups`` lists Muon's groups first, then AdamW's
    (the same dicts the two inner optimizers read, so a scheduler's ``lr`` reaches both);
    ``state`` is one mapping both inner optimizers write to; ``state_dict`` and
    ``load_state_dict`` round-trip both; ``step`` steps both, then runs the step post-hooks.
    Either list may be empty, not both.
    """

    def __init__(
        self,
        muon_params: Iterable[nn.Parameter],
        adamw_params: Iterable[nn.Parameter],
        *,
        lr: float,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        adjust_lr_fn: AdjustLr = "match_rms_adamw",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
    ) -> None:
        muon_list, adamw_list = list(muon_params), list(adamw_params)
        inner: list[torch.optim.Optimizer] = []
        if muon_list:
            inner.append(
                torch.optim.Muon(
                    muon_list,
                    lr=lr,
                    weight_decay=weight_decay,
                    momentum=momentum,
                    adjust_lr_fn=adjust_lr_fn,
                )
            )
        if adamw_list:
            adamw = torch.optim.AdamW(
                adamw_list, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps
            )
            inner.append(adamw)
        if not inner:
            raise ValueError("MuonWithAdamW got no parameters")
        self._inner = inner
        self._group_counts = [len(optimizer.param_groups) for optimizer in inner]
        groups = [group for optimizer in inner for group in optimizer.param_groups]
        super().__init__(groups, {"lr": lr})
        self._link()

    @property
    def muon(self) -> torch.optim.Optimizer | None:
        """The inner ``torch.optim.Muon``, ``None`` when no parameter went to it."""
        found = [opt for opt in self._inner if isinstance(opt, torch.optim.Muon)]
        return found[0] if found else None

    def _link(self) -> None:
        """Point the inner optimizers at this optimizer's groups and its one state mapping."""
        start = 0
        for optimizer, count in zip(self._inner, self._group_counts, strict=True):
            optimizer.param_groups = self.param_groups[start : start + count]
            optimizer.state = self.state
            start += count

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Evaluate ``closure`` (if any) with gradients on, then step Muon and AdamW."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self._inner:
            optimizer.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` of an optimizer built over the same parameters."""
        super().load_state_dict(state_dict)
        self._link()


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.1,
    adjust_lr_fn: AdjustLr = "match_rms_adamw",
) -> MuonWithAdamW:
    """:class:`MuonWithAdamW` over ``model``'s trainable parameters, the output head on AdamW."""
    head = output_head(model)
    split = split_params(model, exclude=[head] if head is not None else [])
    return MuonWithAdamW(
        split.muon, split.adamw, lr=lr, weight_decay=weight_decay, adjust_lr_fn=adjust_lr_fn
    )
