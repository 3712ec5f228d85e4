"""Which modules a LoRA target list adapts on a model, read from the model itself.

Kimi's attention is MLA (DeepseekV3 layout): there is no ``k_proj`` or ``v_proj``, and
``q_proj`` exists only without a query LoRA rank (never on K2 and later). PEFT adapts what
matches and stays silent about the rest, so the common list ``q_proj,k_proj,v_proj,o_proj``
adapts only ``o_proj``. :func:`match_targets` reports, per requested name, the modules it
matches (with PEFT's own matcher); :func:`check_targets` refuses a list in which any name
matches nothing, saying why; :func:`apply_lora` wraps the model only after that check and
verifies PEFT adapted exactly the modules reported.

PEFT 0.21 on transformers v5 rewrites ``gate_proj``/``up_proj``/``down_proj`` on DeepseekV3-type
models into the fused routed experts (its v4→v5 adapter conversion, meant for adapters trained
on transformers v4, maps DeepseekV3 onto Qwen2-MoE's layout), so the dense and shared-expert
MLP would silently go unadapted. Our names are checked against the v5 model itself, so
:func:`apply_lora` and :func:`load_lora` switch that conversion off (:func:`no_v4_conversion`)
and then verify what PEFT wrapped.

Routed experts are fused 3-D parameters in transformers v5 (``mlp.experts.gate_up_proj`` and
``mlp.experts.down_proj``), reachable only through PEFT's ``target_parameters``, and INT4 on
K2.5 and later: they are adapted only when asked for (``routed_experts=True``), and refused
on a quantised checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

#: MLA's projections: query down/up, the joint KV down projection (with the shared rotary
#: key), KV up, and the output.
MLA_ATTENTION = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
#: The dense layers' MLP and the MoE layers' shared experts (plain Linears).
DENSE_MLP = ("gate_proj", "up_proj", "down_proj")
#: What Kimi gets by default: every MLA projection, the dense layers' MLP and the MoE layers'
#: shared experts (the routed experts are fused parameters, never matched by these names).
KIMI_TARGETS = MLA_ATTENTION + DENSE_MLP
#: What training adapts by default.
DEFAULT_TARGETS = KIMI_TARGETS
#: The fused routed-expert parameters, by suffix (PEFT ``target_parameters``).
ROUTED_EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
#: Names from dense-attention models that match nothing in MLA.
_DENSE_ATTENTION = {"q_proj", "k_proj", "v_proj", "qkv_proj"}
_ADAPTABLE = (nn.Linear, nn.Embedding)


class TargetError(ValueError):
    """A target list that would adapt less than it names (the message says what and why)."""


@dataclass(frozen=True, slots=True)
class TargetMatch:
    """One requested name: the modules (or fused parameters) it adapts."""

    target: str
    modules: list[str]
    shapes: list[tuple[int, ...]]

    @property
    def matched(self) -> bool:
        return bool(self.modules)


@dataclass(frozen=True, slots=True)
class TargetReport:
    """What a target list adapts on one model (:func:`match_targets`)."""

    architecture: str
    matches: list[TargetMatch]
    expert_parameters: list[TargetMatch] = field(default_factory=list)
    quantized: bool = False
    mla: bool = False

    @property
    def unmatched(self) -> list[str]:
        return [m.target for m in [*self.matches, *self.expert_parameters] if not m.matched]

    @property
    def modules(self) -> set[str]:
        """The modules the list adapts; a fused expert parameter counts as its container."""
        named = {name for match in self.matches for name in match.modules}
        fused = {n.rpartition(".")[0] for m in self.expert_parameters for n in m.modules}
        return named | fused

    def lora_parameters(self, rank: int) -> int:
        """How many LoRA parameters rank ``rank`` adds (r·(in + out) per matrix and expert)."""
        total = 0
        for match in [*self.matches, *self.expert_parameters]:
            for shape in match.shapes:
                experts = shape[0] if len(shape) == 3 else 1
                total += experts * rank * (shape[-1] + shape[-2])
        return total


def match_targets(
    model: nn.Module, targets: Sequence[str], *, routed_experts: bool = False
) -> TargetReport:
    """Match each name of ``targets`` against ``model``'s modules the way PEFT does.

    A name matches a module whose dotted name equals it or ends with ``.name``, and only
    Linear and Embedding modules count (what LoRA adapts here). With ``routed_experts`` the
    fused expert parameters of :data:`ROUTED_EXPERTS` are matched as well.
    """
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    named = [(name, module) for name, module in model.named_modules() if name]
    matches = []
    for target in targets:
        config = LoraConfig(target_modules=[target])
        hits = [
            (name, module)
            for name, module in named
            if isinstance(module, _ADAPTABLE) and check_target_module_exists(config, name)
        ]
        shapes = [tuple(module.weight.shape) for _, module in hits]
        matches.append(TargetMatch(target, [name for name, _ in hits], shapes))
    experts = []
    if routed_experts:
        params = dict(model.named_parameters())
        for suffix in ROUTED_EXPERTS:
            hits_p = [name for name in params if name.endswith(suffix)]
            experts.append(
                TargetMatch(suffix, hits_p, [tuple(params[name].shape) for name in hits_p])
            )
    model_config: Any = model.__dict__.get("config")
    config_dict: dict[str, Any] = model_config.to_dict() if model_config is not None else {}
    return TargetReport(
        architecture=type(model).__name__,
        matches=matches,
        expert_parameters=experts,
        quantized=bool(config_dict.get("quantization_config")),
        mla=any(name.endswith(".kv_b_proj") for name, _ in named),
    )


def check_targets(report: TargetReport) -> None:
    """Raise :class:`TargetError` unless every requested name adapts something it can."""
    if report.expert_parameters and report.quantized:
        raise TargetError(
            "routed experts are quantised in this checkpoint (INT4 on K2.5 and later): LoRA "
            "cannot adapt them; drop --routed-experts or train on dequantised weights"
        )
    missing = report.unmatched
    if not missing:
        return
    reason = f"{', '.join(missing)} match nothing in {report.architecture}"
    dense = sorted(set(missing) & _DENSE_ATTENTION)
    if dense and report.mla:
        reason += (
            f"; {', '.join(dense)} are dense-attention names, but this model's attention is MLA:"
            f" target {', '.join(MLA_ATTENTION)} instead"
        )
    raise TargetError(f"refusing the LoRA target list: {reason}")


def apply_lora(
    model: nn.Module,
    targets: Sequence[str] = DEFAULT_TARGETS,
    *,
    rank: int = 64,
    alpha: int = 128,
    dropout: float = 0.0,
    routed_experts: bool = False,
) -> Any:
    """Wrap ``model`` in a PEFT ``PeftModel`` adapting exactly ``targets`` (checked first).

    Raises :class:`TargetError` when a name matches nothing, or when the modules PEFT
    adapted differ from the report in any way (skipped or substituted).
    """
    from peft import LoraConfig, get_peft_model

    report = match_targets(model, targets, routed_experts=routed_experts)
    check_targets(report)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        target_parameters=list(ROUTED_EXPERTS) if routed_experts else None,
        task_type="CAUSAL_LM",
    )
    with no_v4_conversion():
        wrapped = get_peft_model(model, config)
    _check_adapted(wrapped, report.modules)
    return wrapped


def load_lora(model: nn.Module, adapter: str | Path, *, trainable: bool = False) -> Any:
    """Load an adapter saved by a run (``PeftModel.from_pretrained``) onto ``model``.

    PEFT's v4→v5 conversion is off here as in :func:`apply_lora` (on DeepseekV3 it would
    move the dense MLP's weights onto the routed experts); raises :class:`TargetError` when
    the modules wrapped differ from the adapter's saved weights.
    """
    from peft import PeftModel
    from safetensors import safe_open

    with no_v4_conversion():
        wrapped = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    with safe_open(str(Path(adapter) / "adapter_model.safetensors"), "pt") as handle:
        saved = {
            key.removeprefix("base_model.model.").split(".lora_")[0]
            for key in handle.keys()  # noqa: SIM118 (safe_open is not a mapping)
        }
    _check_adapted(wrapped, saved)
    return wrapped


def _check_adapted(wrapped: nn.Module, expected: set[str]) -> None:
    adapted = adapted_modules(wrapped)
    if adapted != expected:
        skipped, added = sorted(expected - adapted), sorted(adapted - expected)
        raise TargetError(
            f"refusing the LoRA target list: PEFT skipped {skipped} and adapted {added} instead"
        )


@contextmanager
def no_v4_conversion() -> Iterator[None]:
    """Switch off PEFT's transformers-v4→v5 adapter conversion for the duration.

    PEFT 0.21 has no public switch: it converts whenever transformers ≥ 5, reading the flag
    ``is_transformers_ge_v5`` in the two modules that convert (injection and state-dict
    loading). Our target names are v5 module names matched against the model itself, so the
    conversion can only substitute modules; the check after injection catches any change.
    """
    from unittest import mock

    import peft.tuners.tuners_utils as injecting
    import peft.utils.save_and_load as loading

    with (
        mock.patch.object(injecting, "is_transformers_ge_v5", False),
        mock.patch.object(loading, "is_transformers_ge_v5", False),
    ):
        yield


def adapted_modules(wrapped: nn.Module) -> set[str]:
    """The module names (as in the unwrapped model) that carry a LoRA adapter.

    A fused-parameter adapter (PEFT nests one wrapper per parameter) counts once, as its
    container.
    """
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    return {
        name.removeprefix(prefix).replace(".base_layer", "")
        for name, module in wrapped.named_modules()
        if isinstance(module, LoraLayer) and name.startswith(prefix)
    }


def load_skeleton(model: str | Path, *, trust_remote_code: bool = False) -> nn.Module:
    """A model's module tree without weights (meta device), from its config alone.

    Works for a checkpoint directory or a Hub id (the Hub needs network); a 1T-parameter
    config costs no memory.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton: nn.Module = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            config, trust_remote_code=trust_remote_code
        )
    return skeleton
