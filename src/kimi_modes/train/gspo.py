"""A GSPO run with LoRA: TRL's ``GRPOTrainer`` in sequence mode, PEFT, our targets and rewards.

No RL loop or optimizer is written here: TRL samples the groups, computes the sequence-level
ratio and the clipped objective, and steps the optimizer (AdamW, or :mod:`.optim`'s Muon +
AdamW). This module wires the parts together and reports each step as a :class:`StepLog`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kimi_modes.train.optim import build_optimizer
from kimi_modes.train.presets import GspoPreset, grpo_config
from kimi_modes.train.rewards import Rewards
from kimi_modes.train.targets import DEFAULT_TARGETS, apply_lora, no_v4_conversion

OptimizerName = Literal["adamw", "muon"]


@dataclass(frozen=True, slots=True)
class StepLog:
    """What TRL logged for one optimizer step.

    ``reward`` (mean over the batch), ``reward_std`` and ``rewards`` (each objective's mean)
    are ``None``/empty on a step that reused an earlier generation batch (``rewards`` leaves
    out an objective that scored no row of the batch); ``kl`` is ``None``
    when the run has no KL term (β = 0, GSPO's setting); ``clip_ratio`` is the share of tokens
    whose sequence ratio was clipped (0 on a step that generated, where the ratio is 1).
    """

    step: int
    reward: float | None
    reward_std: float | None
    kl: float | None
    clip_ratio: float
    rewards: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_logs(cls, step: int, logs: Mapping[str, float | None]) -> StepLog:
        per = {  # a reward that scored no row of the batch (all None) is logged as None
            key.removeprefix("rewards/").removesuffix("/mean"): float(value)
            for key, value in logs.items()
            if key.startswith("rewards/") and key.endswith("/mean") and value is not None
        }
        def number(key: str) -> float | None:
            value = logs.get(key)
            return float(value) if value is not None else None

        return cls(
            step=step,
            reward=number("reward"),
            reward_std=number("reward_std"),
            kl=number("kl"),
            clip_ratio=number("clip_ratio/region_mean") or 0.0,
            rewards=per,
        )

    @classmethod
    def from_trainer_logs(
        cls, step: int, logs: Mapping[str, float | None] | None
    ) -> StepLog | None:
        """The step's log when ``logs`` (a ``TrainerCallback.on_log`` payload) is an optimizer
        step's (it has a ``loss``); ``None`` for other logs (e.g. the run's summary)."""
        return cls.from_logs(step, logs) if logs and "loss" in logs else None

    def line(self) -> str:
        """One line for a terminal: step, reward, KL, clip ratio, then each objective."""
        kl = "-" if self.kl is None else f"{self.kl:.4f}"
        reward = "-" if self.reward is None else f"{self.reward:.3f} ± {self.reward_std or 0:.3f}"
        parts = [
            f"step {self.step}",
            f"reward {reward}",
            f"kl {kl}",
            f"clip {self.clip_ratio:.3f}",
        ]
        parts += [f"{name} {value:.3f}" for name, value in self.rewards.items()]
        return " | ".join(parts)


def _step_callback(sink: Callable[[StepLog], None]) -> Any:
    from transformers import TrainerCallback

    class _Steps(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            step = StepLog.from_trainer_logs(int(state.global_step), logs)
            if step is not None:
                sink(step)

    return _Steps()


def train_gspo(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    rewards: Rewards,
    preset: GspoPreset,
    output_dir: Path,
    *,
    targets: Sequence[str] = DEFAULT_TARGETS,
    routed_experts: bool = False,
    optimizer: OptimizerName = "adamw",
    on_step: Callable[[StepLog], None] | None = None,
    rollout: Callable[[list[Any], Any], dict[str, list[Any]]] | None = None,
    callbacks: Sequence[Any] = (),
    **config: Any,
) -> list[StepLog]:
    """Run GSPO with LoRA on ``model`` over ``dataset`` (rows with ``prompt``, and columns the
    rewards read, e.g. ``tools``); return one :class:`StepLog` per logged step.

    The LoRA target list is checked first (:func:`~kimi_modes.train.targets.apply_lora`).
    ``optimizer="muon"`` trains the LoRA factors with Muon + AdamW (experimental: Muon's
    shape rule scales ``lora_B``'s step by √(out / r)). ``callbacks`` are further
    ``TrainerCallback`` objects (e.g. :class:`~kimi_modes.train.progress.LiveProgress`);
    ``on_step`` is called before them for each step (transformers' ``PrinterCallback``, which
    would print each raw log dict, is removed). ``config`` passes further
    ``GRPOConfig`` fields. The adapter is saved to ``output_dir``.
    """
    from transformers.trainer_callback import PrinterCallback
    from trl.trainer.grpo_trainer import GRPOTrainer

    wrapped = apply_lora(
        model,
        targets,
        rank=preset.lora_rank,
        alpha=preset.lora_alpha,
        routed_experts=routed_experts,
    )
    args = grpo_config(
        preset,
        output_dir,
        reward_weights=rewards.resolved_weights(),
        multi_objective_aggregation=rewards.aggregation,
        logging_steps=1,
        **config,
    )
    optimizers: tuple[Any, Any] = (None, None)
    if optimizer == "muon":
        optimizers = (build_optimizer(wrapped, lr=preset.learning_rate), None)
    steps: list[StepLog] = []

    def record(step: StepLog) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    with no_v4_conversion():  # with β > 0, TRL copies the adapter as "ref" through PEFT
        trainer = GRPOTrainer(
            model=wrapped,
            reward_funcs=list(rewards.funcs),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            optimizers=optimizers,
            callbacks=[_step_callback(record), *callbacks],
            rollout_func=rollout,
        )
    trainer.remove_callback(PrinterCallback)  # raw log dicts; the steps go to on_step
    trainer.train()
    trainer.save_model(str(output_dir))
    return steps
