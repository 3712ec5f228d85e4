"""`kimi-modes train cluster`: the written configs load with accelerate's own classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils.deepspeed import HfDeepSpeedConfig

from kimi_modes.train.launch import Cluster, write_configs


def test_zero3_on_two_nodes(tmp_path: Path) -> None:
    written = write_configs(Cluster(nodes=2, gpus_per_node=8, main_ip="10.0.0.1"), "zero3",
                            tmp_path)
    assert [p.name for p in written] == [
        "ds_zero3.json", "accelerate-zero3-node0.yaml", "accelerate-zero3-node1.yaml"]
    deepspeed = HfDeepSpeedConfig(str(written[0]))
    assert deepspeed.is_zero3() and not deepspeed.is_offload()
    for rank, path in enumerate(written[1:]):
        config = ClusterConfig.from_yaml_file(str(path))
        assert config.distributed_type == "DEEPSPEED"
        assert (config.num_machines, config.num_processes, config.machine_rank) == (2, 16, rank)
        assert (config.main_process_ip, config.main_process_port) == ("10.0.0.1", 29500)
        assert config.deepspeed_config["deepspeed_config_file"] == str(written[0])


def test_zero3_offload(tmp_path: Path) -> None:
    written = write_configs(Cluster(nodes=1, gpus_per_node=4), "zero3", tmp_path, offload=True)
    assert HfDeepSpeedConfig(str(written[0])).is_offload()
    config = ClusterConfig.from_yaml_file(str(written[1]))
    assert (config.num_processes, config.main_process_ip) == (4, None)


def test_fsdp2_one_node(tmp_path: Path) -> None:
    from accelerate import FullyShardedDataParallelPlugin

    [path] = write_configs(Cluster(nodes=1, gpus_per_node=8), "fsdp", tmp_path)
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type == "FSDP" and config.num_processes == 8
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        transformer_cls_names_to_wrap=[fsdp["fsdp_transformer_layer_cls_to_wrap"]],
        reshard_after_forward=fsdp["fsdp_reshard_after_forward"],
        cpu_ram_efficient_loading=fsdp["fsdp_cpu_ram_efficient_loading"],
    )
    assert plugin.transformer_cls_names_to_wrap == ["DeepseekV3DecoderLayer"]


def test_a_cluster_needs_a_gpu() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Cluster(nodes=1, gpus_per_node=0)


def test_cli_writes_the_configs_and_points_1t_runs_elsewhere(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "cluster", "--output", str(tmp_path),
         "--strategy", "fsdp", "--nodes", "2", "--main-ip", "10.0.0.2"],
        capture_output=True, text=True, env={**os.environ}, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    second = ClusterConfig.from_yaml_file(str(tmp_path / "accelerate-fsdp-node1.yaml"))
    assert second.machine_rank == 1
    assert "accelerate launch --config_file" in done.stdout
    assert "verl" in done.stdout and "slime" in done.stdout
