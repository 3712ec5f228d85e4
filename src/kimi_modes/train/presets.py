"""GSPO settings for Kimi, spelled out field by field (TRL's defaults have moved between releases).

GSPO (arXiv 2507.18071) in TRL's ``GRPOTrainer`` is ``importance_sampling_level="sequence"``
with ``loss_type="grpo"`` (the default ``"dapo"`` weights sequences by length), no KL
(``beta=0``) and the paper's clip range 3e-4 / 4e-4. The ratio only differs from 1 off-policy,
so each generation batch is split into several optimizer steps (``steps_per_generation`` >
``gradient_accumulation_steps``; the paper uses 4 minibatches).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class GspoPreset:
    """The knobs of a GSPO + LoRA run. :data:`KIMI` holds the seed guide's values."""

    num_generations: int = 8  # group size G
    learning_rate: float = 3e-6
    lora_rank: int = 64
    lora_alpha: int = 128
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 16
    minibatches_per_generation: int = 4  # steps_per_generation = this × accumulation
    epsilon: float = 3e-4
    epsilon_high: float = 4e-4
    beta: float = 0.0
    loss_type: str = "grpo"
    max_completion_length: int = 1024
    temperature: float = 1.0
    max_steps: int = 100
    seed: int = 0

    @property
    def steps_per_generation(self) -> int:
        return self.minibatches_per_generation * self.gradient_accumulation_steps

    def with_(self, **changes: Any) -> GspoPreset:
        """A copy with ``changes`` applied (unknown names raise ``TypeError``)."""
        return replace(self, **changes)


#: Kimi's preset from the seed guide: group size 8, learning rate 3e-6, LoRA rank 64 /
#: alpha 128, per-device batch 1 with 16 accumulation steps, 4 minibatches per generation.
KIMI = GspoPreset()


def grpo_config(preset: GspoPreset, output_dir: Path, **extra: Any) -> Any:
    """TRL's ``GRPOConfig`` for ``preset``: GSPO switched on, every moved default explicit.

    ``extra`` passes further ``GRPOConfig`` fields through (e.g. ``use_cpu``,
    ``reward_weights``, ``multi_objective_aggregation``, ``logging_steps``).
    """
    from trl.trainer.grpo_config import GRPOConfig

    fields = asdict(preset)
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "importance_sampling_level": "sequence",
        "loss_type": preset.loss_type,
        "beta": preset.beta,
        "epsilon": preset.epsilon,
        "epsilon_high": preset.epsilon_high,
        "num_iterations": 1,
        "num_generations": preset.num_generations,
        "learning_rate": preset.learning_rate,
        "per_device_train_batch_size": preset.per_device_train_batch_size,
        "gradient_accumulation_steps": preset.gradient_accumulation_steps,
        "steps_per_generation": preset.steps_per_generation,
        "max_completion_length": preset.max_completion_length,
        "temperature": preset.temperature,
        "max_steps": preset.max_steps,
        "seed": fields["seed"],
        "scale_rewards": "group",
        "report_to": [],
        "save_strategy": "no",
    }
    settings.update(extra)
    return GRPOConfig(**settings)
