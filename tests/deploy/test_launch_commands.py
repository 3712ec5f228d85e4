"""Launch commands per engine: parsers and switches from the family facts, multi-node forms,
what each engine refuses, and every printed command as argv tokens (all_argv)."""

from __future__ import annotations

import shlex

import pytest
import yaml

from kimi_modes.deploy.models import model
from kimi_modes.deploy.render import (
    ENGINE_KEYS,
    RenderError,
    Target,
    all_argv,
    checkpoint_for,
    launch,
    targets,
)
from kimi_modes.engines.dialects import DIALECTS
from kimi_modes.protocol.families import Family, family_info


def _flag(args: tuple[str, ...], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_all_argv_covers_every_engine_and_every_family() -> None:
    seen = list(all_argv())
    engines = {engine for engine, _ in seen}
    assert set(ENGINE_KEYS) - {"exo"} <= engines  # exo takes no arguments: ("exo", ())
    assert ("exo", ()) in seen and ("dynamo.frontend", ("--http-port", "8000", "--router-mode",
                                                        "kv")) in seen
    families = {target.model.family for target in targets("vllm")}
    assert families == set(Family)
    for _, args in seen:
        assert all(isinstance(token, str) and token for token in args)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "ktransformers"])
def test_parsers_come_from_the_family(engine: str) -> None:
    for target in targets(engine):  # type: ignore[arg-type]
        args = launch(engine, target).args
        info = family_info(target.model.family)
        assert _flag(args, "--tool-call-parser") == info.engine_parser
        if info.thinking == "none":
            assert "--reasoning-parser" not in args
        else:
            assert _flag(args, "--reasoning-parser") == info.engine_parser


def test_k3_gets_kimi_k3_and_k2_instruct_no_reasoning_parser() -> None:
    k3 = model("k3")
    args = launch("vllm", Target(k3, checkpoint_for("vllm", k3))).args
    assert _flag(args, "--tool-call-parser") == "kimi_k3"
    assert _flag(args, "--reasoning-parser") == "kimi_k3"
    k2 = model("k2-instruct")
    args = launch("sglang", Target(k2, checkpoint_for("sglang", k2))).args
    assert "--reasoning-parser" not in args
    assert _flag(args, "--model-path") == "moonshotai/Kimi-K2-Instruct"


def test_vision_models_get_the_encoder_mode_and_k2_thinking_does_not() -> None:
    for key, vision in (("k2.5", True), ("k2-thinking", False)):
        m = model(key)
        args = launch("vllm", Target(m, checkpoint_for("vllm", m))).args
        assert ("--mm-encoder-tp-mode" in args) is vision


def test_multi_node_vllm_and_sglang_have_a_leader_and_headless_workers() -> None:
    m = model("k2-instruct")
    target = Target(m, checkpoint_for("vllm", m), tp=8, pp=2)
    command = launch("vllm", target)
    assert target.nodes == 2
    assert _flag(command.args, "--pipeline-parallel-size") == "2"
    assert _flag(command.args, "--node-rank") == "0"
    assert "--headless" not in command.args
    assert command.worker_args is not None and "--headless" in command.worker_args
    assert _flag(command.worker_args, "--node-rank") == "$(LWS_WORKER_INDEX)"
    sg = launch("sglang", target)
    assert _flag(sg.args, "--tp-size") == "16"
    assert _flag(sg.args, "--dist-init-addr") == "$(LWS_LEADER_ADDRESS):20000"
    with pytest.raises(RenderError, match="one node"):
        launch("lmdeploy", target)


def test_llama_server_offloads_experts_and_uses_the_family_sampling() -> None:
    m = model("k2.5")
    command = launch("llama.cpp", Target(m, checkpoint_for("llama.cpp", m), context=16384))
    assert command.program == ("llama-server",)
    assert _flag(command.args, "-ot") == ".ffn_.*_exps.=CPU"
    assert _flag(command.args, "-hf") == "unsloth/Kimi-K2.5-GGUF:UD-TQ1_0"
    sampling = family_info("k2.5").default_sampling()
    assert _flag(command.args, "--temp") == f"{sampling.temperature:g}"
    assert "--jinja" in command.args


def test_trtllm_reads_its_yaml_and_uses_kimi_k25_for_the_k25_template() -> None:
    m = model("k2.6")
    command = launch("trtllm", Target(m, checkpoint_for("trtllm", m), ep=8))
    assert command.args[0] == "nvidia/Kimi-K2.6-NVFP4"
    assert _flag(command.args, "--reasoning_parser") == "kimi_k25"
    assert _flag(command.args, "--config") == "/config/trtllm.yaml"
    options = yaml.safe_load(command.files["trtllm.yaml"])
    assert options["tensor_parallel_size"] == 8 and options["moe_expert_parallel_size"] == 8
    thinking = model("k2-thinking")
    args = launch("trtllm", Target(thinking, checkpoint_for("trtllm", thinking))).args
    assert _flag(args, "--reasoning_parser") == "kimi_k2"


def test_engines_refuse_what_they_cannot_serve() -> None:
    with pytest.raises(RenderError, match="no --tool-call-parser kimi_k3"):
        checkpoint_for("lmdeploy", model("k3"))
    with pytest.raises(RenderError, match="no published parsers"):
        checkpoint_for("llama.cpp", model("k3"))
    with pytest.raises(RenderError, match="no checkpoint"):
        checkpoint_for("ktransformers", model("k2-instruct"))
    with pytest.raises(RenderError, match="does not load"):
        checkpoint_for("vllm", model("k2.5"), "gguf-ud-tq1_0")
    m = model("k2.5")
    with pytest.raises(RenderError, match="unknown engine"):
        launch("tgi", Target(m, m.checkpoints[0]))


def test_each_engine_names_a_known_thinking_dialect_and_its_shell_line_round_trips() -> None:
    for engine in ENGINE_KEYS:
        for target in targets(engine):
            command = launch(engine, target)
            assert command.dialect in DIALECTS
            line = command.shell()
            tokens = shlex.split(line)
            assert tokens[len(command.env):] == list(command.argv)


def test_exo_ships_the_model_card() -> None:
    m = model("k2.6")
    command = launch("exo", Target(m, checkpoint_for("exo", m)))
    assert command.args == ()
    (name, card), = command.files.items()
    assert name.endswith(".toml") and 'model_id = "' in card
