"""The engines' accepted flags: the data read from their own parsers, and ``check`` against it.

The flag names below are the ones the deploy facts cite for Kimi (vLLM, SGLang, KTransformers,
LMDeploy, Dynamo recipes), and the invented ones circulating in copied configurations.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from importlib import resources

import pytest

from kimi_modes.deploy.flags.accepted import (
    Flag,
    FlagData,
    check,
    check_command_line,
    engines,
    flag_data,
)

PYTHON_ENGINES = {"vllm", "sglang", "ktransformers", "lmdeploy", "dynamo-frontend",
                  "dynamo-vllm", "dynamo-sglang", "dynamo-trtllm"}


def kinds(problems: list) -> list[tuple[str, str]]:
    return [(p.flag, p.kind) for p in problems]


@pytest.mark.parametrize("engine", sorted(PYTHON_ENGINES))
def test_data_loads_and_names_its_version(engine: str) -> None:
    assert engine in engines()
    raw = json.loads(
        resources.files("kimi_modes.deploy.flags").joinpath("data", f"{engine}.json").read_text()
    )
    assert raw["generated_by"] == "scripts/engine_flags.py"
    data = flag_data(engine)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", data.version)
    assert data.command and len(data.flags) > 50
    assert all(name.startswith("-") for name in data.flags)
    assert "--help" in data.by_option


VLLM_K25 = (
    "vllm serve moonshotai/Kimi-K2.5 -tp 8 --mm-encoder-tp-mode data --trust-remote-code "
    "--tool-call-parser kimi_k2 --enable-auto-tool-choice --reasoning-parser kimi_k2"
)
VLLM_K3 = (
    "VLLM_ALLREDUCE_USE_FLASHINFER=1 vllm serve moonshotai/Kimi-K3 --trust-remote-code "
    "--gpu-memory-utilization 0.95 --enable-auto-tool-choice --tool-call-parser kimi_k3 "
    "--reasoning-parser kimi_k3 --load-format fastsafetensors --max-model-len "
    "1048576 --kv-cache-dtype fp8 "
    '--enable-prefix-caching --attention-config \'{"mla_prefill_backend":"flashinfer"}\''
)
VLLM_MULTINODE = (
    "vllm serve moonshotai/Kimi-K2-Instruct --tensor-parallel-size 8 --pipeline-parallel-size 2 "
    "--data-parallel-size 16 --data-parallel-size-local 8 --data-parallel-address 10.0.0.1 "
    "--data-parallel-rpc-port 13345 --enable-expert-parallel --headless "
    "--data-parallel-start-rank 8 "
    "--max-model-len 131072 --default-chat-template-kwargs '{\"thinking\": false}' "
    '--speculative-config \'{"method":"eagle3","num_speculative_tokens":3}\''
)
SGLANG_K25 = (
    "sglang serve --model-path moonshotai/Kimi-K2.5 --tp 8 --trust-remote-code "
    "--tool-call-parser kimi_k2 --reasoning-parser kimi_k2 --dp 8 --enable-dp-attention "
    "--ep-size 8 --kv-cache-dtype fp8_e4m3 --context-length 128000 --mem-fraction-static 0.85"
)
SGLANG_MULTINODE = (
    "python3 -m sglang.launch_server --model-path moonshotai/Kimi-K2-Instruct "
    "--tensor-parallel-size 16 "
    "--dist-init-addr 10.0.0.1:50000 --nnodes 2 --node-rank 0 --trust-remote-code "
    "--expert-parallel-size 16"
)
KTRANSFORMERS_K25 = (
    "python -m sglang.launch_server --model /m/kimi-k2.5 --kt-weight-path "
    "/m/kimi-k2.5 --kt-method RAWINT4 "
    "--kt-cpuinfer 96 --kt-threadpool-count 2 --kt-num-gpu-experts 30 "
    "--kt-gpu-prefill-token-threshold 400 "
    "--tensor-parallel-size 4 --mem-fraction-static 0.94 --disable-shared-experts-fusion "
    "--chunked-prefill-size 32658 --max-total-tokens 50000 --attention-backend "
    "flashinfer --trust-remote-code "
    "--reasoning-parser kimi_k2 --tool-call-parser kimi_k2"
)
LMDEPLOY_K26 = (
    "lmdeploy serve api_server moonshotai/Kimi-K2.6 --backend pytorch --tp 8 "
    "--reasoning-parser default --tool-call-parser kimi_k2 --session-len 131072 "
    "--cache-max-entry-count 0.8"
)
LLAMA_SERVER_K25 = (
    "llama-server -hf unsloth/Kimi-K2.5-GGUF:UD-Q2_K_XL --jinja --fit on --port 8001 "
    "-ot '.ffn_.*_exps.=CPU' --temp 1.0 --top-p 0.95 --min-p 0.01 --ctx-size 16384 --special "
    "--chat-template-kwargs '{\"thinking\":false}' --cpu-moe --n-cpu-moe 20 --reasoning-format auto"
)
DYNAMO_FRONTEND = (
    "python3 -m dynamo.frontend --http-port 8000 --router-mode kv "
    "--router-session-affinity-mode soft"
)

# deploy-facts §3.5 (NVIDIA's curated K2-Thinking deployment; Moonshot's multi-node K2 line)
TRTLLM_K2T = (
    "trtllm-serve nvidia/Kimi-K2-Thinking-NVFP4 --host 0.0.0.0 --port 8000 --config kimi.yaml "
    "--tool_parser kimi_k2 --reasoning_parser kimi_k2"
)
TRTLLM_MULTINODE = (
    "trtllm-serve serve moonshotai/Kimi-K2-Instruct --backend pytorch --tp_size 16 --ep_size 8 "
    "--kv_cache_free_gpu_memory_fraction 0.95"
)
# Dynamo workers: Dynamo's own flags on top of the engine's (deploy-facts §3.9)
DYNAMO_VLLM_K26 = (
    "python3 -m dynamo.vllm --model moonshotai/Kimi-K2.6 --tensor-parallel-size 8 "
    "--trust-remote-code --gpu-memory-utilization 0.85 --dyn-tool-call-parser kimi_k2 "
    "--dyn-reasoning-parser kimi_k25 --enable-multimodal"
)
DYNAMO_SGLANG_K25 = (
    "python3 -m dynamo.sglang --model-path moonshotai/Kimi-K2.5 --tp 8 --trust-remote-code "
    "--dyn-tool-call-parser kimi_k2 --dyn-reasoning-parser kimi_k25"
)


@pytest.mark.parametrize(
    ("line", "engine"),
    [
        (TRTLLM_K2T, None),
        (TRTLLM_MULTINODE, None),
        (DYNAMO_VLLM_K26, None),
        (DYNAMO_SGLANG_K25, None),
        (VLLM_K25, None),
        (VLLM_K3, None),
        (VLLM_MULTINODE, None),
        (SGLANG_K25, None),
        (SGLANG_MULTINODE, "sglang"),
        (KTRANSFORMERS_K25, "ktransformers"),
        (LMDEPLOY_K26, None),
        (DYNAMO_FRONTEND, None),
        (LLAMA_SERVER_K25, None),
    ],
)
def test_real_command_lines_are_accepted(line: str, engine: str | None) -> None:
    assert check_command_line(line, engine=engine) == []


def test_vllm_parser_rewrites_are_honoured() -> None:
    # vLLM's FlexibleArgumentParser: underscores, dotted JSON keys, -O<level>
    argv = [
        "m",
        "--max_model_len",
        "4096",
        "--compilation-config.pass_config.fuse_allreduce_rms",
        "false",
        "-O3",
    ]
    assert check("vllm", argv) == []
    # SGLang's plain argparse has none of that
    assert kinds(check("sglang", ["--mem_fraction_static", "0.8"])) == [
        ("--mem_fraction_static", "unknown")
    ]


@pytest.mark.parametrize(
    ("engine", "argv", "expected"),
    [
        ("vllm", ["m", "--enable-reasoning", "False"], [("--enable-reasoning", "unknown")]),
        ("vllm", ["m", "--enable-reasoning"], [("--enable-reasoning", "unknown")]),
        ("vllm", ["m", "--tool-call-parser", "kimi-k2-5"], [("--tool-call-parser", "bad_choice")]),
        ("vllm", ["m", "--tensor-parallel-size"], [("--tensor-parallel-size", "missing_value")]),
        ("vllm", ["m", "--trust-remote-code=yes"], [("--trust-remote-code", "unexpected_value")]),
        (
            "vllm",
            ["m", "--mm-encoder-tp-mode", "everywhere"],
            [("--mm-encoder-tp-mode", "bad_choice")],
        ),
        ("sglang", ["--disable-reasoning"], [("--disable-reasoning", "unknown")]),
        ("sglang", ["--enable-expert-parallel"], [("--enable-expert-parallel", "unknown")]),
        ("sglang", ["--reasoning-parser", "kimi_k9"], [("--reasoning-parser", "bad_choice")]),
        ("lmdeploy", ["m", "--enable-reasoning"], [("--enable-reasoning", "unknown")]),
        ("lmdeploy", ["m", "--disable-reasoning"], [("--disable-reasoning", "unknown")]),
        ("lmdeploy", ["m", "--backend", "tensorrt"], [("--backend", "bad_choice")]),
        # deploy-facts §4: LMDeploy has no kimi_k2 reasoning parser (its registry, read from
        # lmdeploy/serve/parsers: default, deepseek-*, legacy names)
        ("lmdeploy", ["m", "--reasoning-parser", "kimi_k2"], [("--reasoning-parser",
                                                                "bad_choice")]),
        ("dynamo-frontend", ["--router-mode", "sticky"], [("--router-mode", "bad_choice")]),
        ("llama-server", ["--moe-offload"], [("--moe-offload", "unknown")]),
        ("llama-server", ["--moe-on-call"], [("--moe-on-call", "unknown")]),
        ("llama-server", ["--moe-eval-overlap"], [("--moe-eval-overlap", "unknown")]),
        ("llama-server", ["--tools-file", "tools.json"], [("--tools-file", "unknown")]),
        ("llama-server", ["--fit", "maybe"], [("--fit", "bad_choice")]),
        ("trtllm", ["m", "--moe_tp_mode", "1"], [("--moe_tp_mode", "unknown")]),
        ("trtllm", ["m", "--backend", "trt-llm"], [("--backend", "bad_choice")]),
        ("trtllm", ["m", "--tp-size", "8"], [("--tp-size", "unknown")]),  # click: as declared
        # vLLM's parser flags belong to `vllm serve`'s frontend; a Dynamo worker has its own
        ("dynamo-vllm", ["--tool-call-parser", "kimi_k2"], [("--tool-call-parser", "unknown")]),
        ("dynamo-vllm", ["--dyn-reasoning-parser", "kimi_k9"], [("--dyn-reasoning-parser",
                                                               "bad_choice")]),
        ("dynamo-trtllm", ["--tensor_parallel_size", "8"], [("--tensor_parallel_size",
                                                              "unknown")]),
    ],
)
def test_invented_flags_are_refused(
    engine: str, argv: list[str], expected: list[tuple[str, str]]
) -> None:
    assert kinds(check(engine, argv)) == expected


def test_llama_server_data_names_the_build_it_was_read_from() -> None:
    data = flag_data("llama-server")
    assert data.package == "llama.cpp" and data.command == "llama-server"
    assert re.fullmatch(r"b\d+|\S+\+[0-9a-f]{7,}", data.version)
    assert data.by_option["-ot"].name == "--override-tensor"


def test_unknown_flag_names_the_nearest_real_one() -> None:
    (problem,) = check("vllm", ["m", "--tensor-paralel-size", "8"])
    assert problem.kind == "unknown"
    assert problem.suggestion == "--tensor-parallel-size"
    assert "0.34.0" in str(problem)


def test_abbreviations_pass_unless_strict() -> None:
    # argparse takes a unique prefix, as SGLang's --tp for --tp-size
    assert check("sglang", ["--tp", "8"]) == []
    assert kinds(check("sglang", ["--tp", "8"], strict=True)) == [("--tp", "abbreviated")]


def test_a_command_shared_by_two_engines_must_be_named() -> None:
    (problem,) = check_command_line("python -m sglang.launch_server --model-path m")
    assert problem.kind == "no_engine"
    assert "ktransformers" in problem.message and "sglang" in problem.message
    # the fork's KTransformers flag that mainline SGLang lacks
    line = "python -m sglang.launch_server --model-path m --kt-gpu-prefill-token-threshold 400"
    assert check_command_line(line, engine="ktransformers") == []
    assert kinds(check_command_line(line, engine="sglang")) == [
        ("--kt-gpu-prefill-token-threshold", "unknown")
    ]


def test_a_real_rename_between_versions_is_caught() -> None:
    # SGLang split --cuda-graph-max-bs into -decode/-prefill; the KTransformers fork still has it
    assert check("ktransformers", ["--cuda-graph-max-bs", "512"]) == []
    (problem,) = check("sglang", ["--cuda-graph-max-bs", "512"])
    assert problem.kind == "unknown"
    assert "ambiguous" in problem.message and "--cuda-graph-max-bs-decode" in problem.message


def test_a_line_no_engine_runs_is_reported() -> None:
    assert kinds(check_command_line("./main -m kimi.gguf --moe-offload")) == [
        ("./main", "no_engine")
    ]


def renamed(data: FlagData, old: str, new: str) -> FlagData:
    """``data`` as if the engine had renamed ``old`` to ``new`` (what regenerating would show)."""
    flags = {k: v for k, v in data.flags.items() if k != old}
    flags[new] = dataclasses.replace(data.flags[old], name=new)
    by_option = {opt: f for f in flags.values() for opt in (f.name, *f.aliases)}
    return dataclasses.replace(data, version="99.0.0", flags=flags, by_option=by_option)


def test_a_renamed_flag_is_reported_against_regenerated_data() -> None:
    argv = shlex.split(VLLM_K25)[2:]
    assert check("vllm", argv) == []
    newer = renamed(flag_data("vllm"), "--tool-call-parser", "--tool-parser")
    problems = check(newer, argv)
    assert kinds(problems) == [("--tool-call-parser", "unknown")]
    assert problems[0].version == "99.0.0"
    assert problems[0].suggestion == "--tool-parser"


def test_a_dropped_choice_is_reported_against_regenerated_data() -> None:
    data = flag_data("sglang")
    flag = data.flags["--reasoning-parser"]
    assert flag.choices is not None and "kimi_k2" in flag.choices
    newer_flag: Flag = dataclasses.replace(
        flag, choices=tuple(c for c in flag.choices if c != "kimi_k2")
    )
    flags = {**data.flags, "--reasoning-parser": newer_flag}
    newer = dataclasses.replace(
        data, flags=flags, by_option={**data.by_option, "--reasoning-parser": newer_flag}
    )
    assert kinds(check(newer, ["--reasoning-parser", "kimi_k2"])) == [
        ("--reasoning-parser", "bad_choice")
    ]


def test_data_read_from_a_repository_names_its_source() -> None:
    raw = json.loads(
        resources.files("kimi_modes.deploy.flags").joinpath("data", "trtllm.json").read_text()
    )
    assert raw["source"] == [{"repo": "NVIDIA/TensorRT-LLM",
                              "path": "tensorrt_llm/commands/serve.py",
                              "commit": "00209af149e7774406881a37283dce303571eb11"},
                             {"repo": "NVIDIA/TensorRT-LLM",
                              "path": "tensorrt_llm/llmapi/llm_args.py",
                              "commit": "0004396720054fd8e205cbf616f21f0b57c6b412"}]
    assert raw["config_file"]["flag"] == "--config"
    assert raw["config_file"]["root"] == "TorchLlmArgs"
    data = flag_data("trtllm")
    assert data.version == "git-00209af1"
    assert data.by_option["--ep_size"].name == "--moe_expert_parallel_size"
    assert data.by_option["--extra_llm_api_options"].name == "--config"
