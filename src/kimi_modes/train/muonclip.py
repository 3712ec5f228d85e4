"""MuonClip's QK-Clip (Kimi K2 paper, arXiv 2507.20534, §2.1, Algorithm 1) on transformers models.

After every optimizer step, each attention head whose largest pre-softmax logit
``scaling · q·k`` seen during that step exceeds the threshold τ gets γ = τ / max, and its
query and key weights are scaled so that its logits scale by exactly γ:

* MLA (DeepseekV3, Kimi K2 and later): the head's no-RoPE query rows (``q_b_proj``, or
  ``q_proj`` without a query LoRA rank) and no-RoPE key rows (``kv_b_proj``) × √γ; its
  rotary query rows × γ; the shared rotary key (``kv_a_proj_with_mqa``) and the value rows
  are never touched, since the rotary key feeds every head.
* MHA/GQA (``q_proj``/``k_proj``): a KV group's key rows × √γ_min over the query heads that
  share it, each query head × γ_h / √γ_min. With one query head per KV head that is √γ on
  both, as the paper states; with GQA a head under τ keeps its logits.

Heads at or under τ are left bit-for-bit alone. The maxima are recorded by an attention
function registered with transformers' ``AttentionInterface`` under :data:`ATTENTION`
(it computes the logits without gradient, then runs the library's SDPA attention) and only
while the attention module is in training mode; they are kept per module in a
non-persistent buffer (never saved) and reset after each clip.

QK-Clip edits the base projection weights, so it refuses LoRA-wrapped query/key projections:
a LoRA run's saved adapter would not carry the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

#: The name of the recording attention function (and its mask function) in transformers.
ATTENTION = "kimi_modes_qk_clip"
#: The per-head maxima buffer each clipped attention module carries (never saved).
MAX_LOGIT_BUFFER = "qk_clip_max_logit"


def clip_scales(max_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """γ per head: ``threshold / max`` where ``max > threshold``, else exactly 1."""
    ones = torch.ones_like(max_logits)
    return torch.where(max_logits > threshold, threshold / max_logits, ones)


def head_max_logits(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
) -> torch.Tensor:
    """The largest ``scaling · q·k`` per query head over the positions the mask lets through.

    ``query`` is ``[batch, heads, q_len, dim]``, ``key`` ``[batch, kv_heads, k_len, dim]``
    (kv_heads divides heads); ``attention_mask`` a boolean (True = attend) or additive float
    mask broadcastable to ``[batch, heads, q_len, k_len]``, or ``None`` for plain causal
    attention aligned to the end of the keys. Returns ``[heads]`` in float32.
    """
    with torch.no_grad():
        groups = query.shape[1] // key.shape[1]
        keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key
        logits = torch.matmul(query.float(), keys.float().transpose(2, 3)) * scaling
        q_len, k_len = logits.shape[-2], logits.shape[-1]
        if attention_mask is None:
            allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=logits.device)
            logits = logits.masked_fill(~allowed.tril(diagonal=k_len - q_len), -math.inf)
        elif attention_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attention_mask[..., :k_len], -math.inf)
        else:
            logits = logits + attention_mask[..., :k_len].float()
        return logits.amax(dim=(0, 2, 3))


def _recording_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    buffer = module._buffers.get(MAX_LOGIT_BUFFER)
    if module.training and buffer is not None:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        seen = head_max_logits(query, key, attention_mask, scale)
        buffer.copy_(torch.maximum(buffer, seen.to(buffer.device)))
    result: tuple[torch.Tensor, torch.Tensor | None] = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    return result


def register_attention() -> None:
    """Make :data:`ATTENTION` a valid ``attn_implementation`` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _recording_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


@dataclass(frozen=True, slots=True)
class ClipReport:
    """One step's clip: the largest logit seen, and how many heads were scaled (of how many)."""

    max_logit: float
    clipped_heads: int
    heads: int


class _Heads:
    """The query/key weight rows of one attention module, and how to scale them per head."""

    def __init__(self, name: str, module: nn.Module) -> None:
        self.name = name
        self.module = module
        config: Any = module.config
        self.heads: int = config.num_attention_heads
        modules = module._modules
        for part in ("q_norm", "k_norm"):
            if part in modules:
                raise ValueError(
                    f"{name}: QK-Clip cannot act through {part} (a norm after the projection "
                    "undoes the scaling)"
                )
        self.mla = "kv_b_proj" in modules
        if self.mla:
            self.nope: int = config.qk_nope_head_dim
            self.rope: int = config.qk_rope_head_dim
            self.v: int = config.v_head_dim
            query = modules.get("q_b_proj") or modules.get("q_proj")
            self.query = _plain_linear(name, "q_b_proj/q_proj", query)
            self.key = _plain_linear(name, "kv_b_proj", modules.get("kv_b_proj"))
        else:
            self.query = _plain_linear(name, "q_proj", modules.get("q_proj"))
            self.key = _plain_linear(name, "k_proj", modules.get("k_proj"))
            self.head_dim = self.query.out_features // self.heads
            self.kv_heads = self.key.out_features // self.head_dim
        buffer = torch.full((self.heads,), -math.inf, device=self.query.weight.device)
        module.register_buffer(MAX_LOGIT_BUFFER, buffer, persistent=False)

    @property
    def max_logits(self) -> torch.Tensor:
        buffer = self.module._buffers[MAX_LOGIT_BUFFER]
        assert buffer is not None
        return buffer

    def scale(self, gamma: torch.Tensor) -> None:
        """Scale this module's query/key rows so that head h's logits scale by ``gamma[h]``."""
        root = gamma.sqrt()
        if self.mla:
            q_rows = torch.cat(
                [root[:, None].expand(-1, self.nope), gamma[:, None].expand(-1, self.rope)], dim=1
            )
            k_rows = torch.cat(
                [root[:, None].expand(-1, self.nope), torch.ones(self.heads, self.v)], dim=1
            )
        else:
            group = self.heads // self.kv_heads
            key_root = root.view(self.kv_heads, group).amin(dim=1)
            query_scale = gamma / key_root.repeat_interleave(group)
            q_rows = query_scale[:, None].expand(-1, self.head_dim)
            k_rows = key_root[:, None].expand(-1, self.head_dim)
        _scale_rows(self.query, q_rows.reshape(-1))
        _scale_rows(self.key, k_rows.reshape(-1))

    def reset(self) -> None:
        self.max_logits.fill_(-math.inf)


def _plain_linear(owner: str, part: str, module: nn.Module | None) -> nn.Linear:
    if isinstance(module, nn.Linear):
        return module
    if module is None:
        raise ValueError(f"{owner}: no {part} to clip")
    raise ValueError(
        f"{owner}.{part} is a {type(module).__name__}, not a plain Linear: QK-Clip edits base "
        "weights, which a LoRA adapter does not carry (clip a full-parameter run instead)"
    )


def _scale_rows(linear: nn.Linear, factors: torch.Tensor) -> None:
    with torch.no_grad():
        factors = factors.to(linear.weight.device, torch.float32)
        changed = factors != 1
        rows = linear.weight[changed].float() * factors[changed, None]
        linear.weight[changed] = rows.to(linear.weight.dtype)
        if linear.bias is not None:
            bias = linear.bias[changed].float() * factors[changed]
            linear.bias[changed] = bias.to(linear.bias.dtype)


class QKClip:
    """QK-Clip over every attention module of ``model`` (MLA or MHA/GQA), threshold τ.

    Construction switches ``model`` to the recording attention (:data:`ATTENTION`); call
    :meth:`attach` with the optimizer to clip after each of its steps, or :meth:`clip`
    yourself. ``ValueError`` when the model has no attention module it can clip, or one it
    cannot (LoRA-wrapped projections, q/k norms).
    """

    def __init__(self, model: nn.Module, threshold: float = 100.0) -> None:
        if threshold <= 0:
            raise ValueError("the QK-Clip threshold must be positive")
        self.threshold = threshold
        self._heads = [
            _Heads(name, module)
            for name, module in model.named_modules()
            if type(module).__name__.endswith("Attention") and "config" in module.__dict__
        ]
        if not self._heads:
            raise ValueError("no attention module to clip (expected *Attention modules)")
        register_attention()
        from transformers import PreTrainedModel

        for module in model.modules():
            if isinstance(module, PreTrainedModel):
                module.set_attn_implementation(ATTENTION)
                break
        self.last: ClipReport | None = None

    def max_logits(self) -> dict[str, torch.Tensor]:
        """The per-head maxima recorded since the last clip, by attention module name."""
        return {heads.name: heads.max_logits.clone() for heads in self._heads}

    def clip(self) -> ClipReport:
        """Scale every head whose recorded maximum exceeds τ, then reset the maxima."""
        largest, clipped, total = -math.inf, 0, 0
        for heads in self._heads:
            seen = heads.max_logits
            if bool(torch.isnan(seen).any() or torch.isposinf(seen).any()):
                raise ValueError(f"{heads.name}: non-finite attention logits")
            gamma = clip_scales(seen, self.threshold)
            over = int((gamma < 1).sum())
            if over:
                heads.scale(gamma.cpu())
            largest = max(largest, float(seen.max()))
            clipped += over
            total += heads.heads
            heads.reset()
        self.last = ClipReport(max_logit=largest, clipped_heads=clipped, heads=total)
        return self.last

    def attach(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Clip after each ``optimizer.step()`` (a step post-hook); the handle removes it."""

        def after_step(*_: object) -> None:
            self.clip()

        return optimizer.register_step_post_hook(after_step)
