"""Launch configs for a cluster: accelerate with DeepSpeed ZeRO-3 or FSDP2, one file per node.

``kimi-modes train run`` is a plain accelerate program: on a cluster it runs under
``accelerate launch --config_file NODE.yaml -m kimi_modes train run ...`` on every node.
:func:`write_configs` writes those files for a :class:`Cluster`:

* ``zero3``: ``ds_zero3.json`` (DeepSpeed's own config: ZeRO stage 3, bf16, the batch and
  clipping fields left ``"auto"`` for the trainer to fill) and, per node, an accelerate
  config pointing at it;
* ``fsdp``: per node, an accelerate config with FSDP2 (``fsdp_version: 2``), the decoder layer
  as the wrapping unit, full-state-dict saving (what PEFT needs to save an adapter).

Multi-node files differ only in ``machine_rank``; all point at the first node's address.
These fit LoRA and mid-size full-parameter runs. A full-parameter run of a 1T-parameter Kimi
belongs on Megatron-based RL frameworks instead (:data:`FULL_1T`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Strategy = Literal["zero3", "fsdp"]

#: Where a full-parameter 1T Kimi RL run belongs, with their Kimi recipes.
FULL_1T = (
    "A full-parameter run of a 1T Kimi (K2 and later) needs Megatron-style expert and pipeline "
    "parallelism on about 256 GPUs; use verl or slime, not accelerate:\n"
    "  verl:  https://github.com/volcengine/verl  "
    "examples/grpo_trainer/run_kimi_k2_6_glm5_1_megatron_lite.sh (GSPO: "
    "actor_rollout_ref.actor.policy_loss.loss_mode=gspo)\n"
    "  slime: https://github.com/THUDM/slime  scripts/run-kimi-k2-Thinking.sh"
)


@dataclass(frozen=True, slots=True)
class Cluster:
    """``nodes`` machines with ``gpus_per_node`` GPUs each; node 0 at ``main_ip``."""

    nodes: int = 1
    gpus_per_node: int = 8
    main_ip: str = "127.0.0.1"
    main_port: int = 29500
    mixed_precision: str = "bf16"

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError("a cluster has at least one node with one GPU")


def deepspeed_zero3(*, offload: bool = False) -> dict[str, Any]:
    """DeepSpeed's config for ZeRO-3 (``"auto"``: filled by the trainer from its arguments)."""
    device = "cpu" if offload else "none"
    return {
        "bf16": {"enabled": "auto"},
        "zero_optimization": {
            "stage": 3,
            "offload_optimizer": {"device": device},
            "offload_param": {"device": device},
            "overlap_comm": True,
            "contiguous_gradients": True,
            "stage3_gather_16bit_weights_on_model_save": True,
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "reduce_bucket_size": "auto",
        },
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }


def accelerate_config(
    cluster: Cluster,
    strategy: Strategy,
    machine_rank: int,
    *,
    deepspeed_file: Path | None = None,
    layer_class: str = "DeepseekV3DecoderLayer",
) -> dict[str, Any]:
    """accelerate's config (as ``accelerate config`` writes it) for one node of ``cluster``."""
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "downcast_bf16": "no",
        "machine_rank": machine_rank,
        "main_training_function": "main",
        "mixed_precision": cluster.mixed_precision,
        "num_machines": cluster.nodes,
        "num_processes": cluster.nodes * cluster.gpus_per_node,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    if cluster.nodes > 1:
        config["main_process_ip"] = cluster.main_ip
        config["main_process_port"] = cluster.main_port
    if strategy == "zero3":
        if deepspeed_file is None:
            raise ValueError("ZeRO-3 needs the DeepSpeed config file")
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {
            "deepspeed_config_file": str(deepspeed_file),
            "deepspeed_multinode_launcher": "standard",
            "zero3_init_flag": True,
        }
        config.pop("mixed_precision")  # the DeepSpeed file decides
        config.pop("downcast_bf16")
    else:
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": layer_class,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": False,
            "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_activation_checkpointing": False,
        }
    return config


def write_configs(
    cluster: Cluster, strategy: Strategy, directory: Path, *, offload: bool = False
) -> list[Path]:
    """Write the configs for ``cluster`` into ``directory``; return the files written (the
    DeepSpeed file first for ZeRO-3, then ``accelerate-<strategy>-node<R>.yaml`` per node)."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    deepspeed_file = None
    if strategy == "zero3":
        deepspeed_file = (directory / "ds_zero3.json").resolve()
        deepspeed_file.write_text(json.dumps(deepspeed_zero3(offload=offload), indent=2) + "\n")
        written.append(deepspeed_file)
    for rank in range(cluster.nodes):
        path = directory / f"accelerate-{strategy}-node{rank}.yaml"
        config = accelerate_config(cluster, strategy, rank, deepspeed_file=deepspeed_file)
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        written.append(path)
    return written
