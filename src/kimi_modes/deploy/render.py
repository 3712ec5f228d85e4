"""Launch commands per engine for a Kimi model, as argv tokens (``kimi-modes deploy render``).

Every command line is a :class:`Launch`: the program (``vllm serve``), its arguments as a
tuple of tokens, the environment it needs and any config file it reads (TensorRT-LLM's YAML,
exo's model card). Nothing here builds a shell string except :meth:`Launch.shell`, which quotes
the tokens. The parsers come from :mod:`kimi_modes.deploy.parsers` (the family's names,
refused where the engine's pinned data does not register them), the thinking switch from
:mod:`kimi_modes.engines.dialects`; the flags are the
engines' own (docs/deploy.md names the source of each). :func:`all_argv` yields the arguments
of every command this module can print, for a check against each engine's argument parser.

Tokens of the form ``$(NAME)`` are Kubernetes environment references (LeaderWorkerSet's
``LWS_LEADER_ADDRESS``, ``LWS_WORKER_INDEX``): the kubelet expands them in a container's
``args``; a shell does not.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import yaml

from kimi_modes.deploy import exo
from kimi_modes.deploy.models import MODELS, Checkpoint, Format, Model
from kimi_modes.deploy.parsers import missing_parsers, parser_args
from kimi_modes.protocol.families import FamilyInfo, family_info

EngineKey = Literal["vllm", "sglang", "llama.cpp", "ktransformers", "trtllm", "lmdeploy",
                    "exo", "dynamo"]
#: Every engine :func:`launch` renders, in the order docs/deploy.md shows them.
ENGINE_KEYS: tuple[EngineKey, ...] = ("vllm", "sglang", "llama.cpp", "ktransformers",
                                      "trtllm", "lmdeploy", "exo", "dynamo")
#: Where a container finds the weights and the Hugging Face cache (mounted volume).
MODELS_DIR = "/models"
#: The rendezvous port of SGLang's multi-node start (llm-d's K3 statefulset uses 20000).
SGLANG_DIST_PORT = 20000
#: LeaderWorkerSet's environment, as Kubernetes references (see the module docstring).
LWS_LEADER = "$(LWS_LEADER_ADDRESS)"
LWS_INDEX = "$(LWS_WORKER_INDEX)"


class RenderError(ValueError):
    """This engine cannot serve this model or layout; the message says why and what to pick."""


@dataclass(frozen=True)
class Target:
    """What to launch: a model's checkpoint as one replica of ``tp × pp`` GPUs (``ep``: the
    expert-parallel size where the engine takes one), on nodes of ``gpus_per_node``, serving
    ``context`` tokens (``None``: the engine's default), listening on ``port``."""

    model: Model
    checkpoint: Checkpoint
    tp: int = 8
    pp: int = 1
    ep: int = 1
    gpus_per_node: int = 8
    context: int | None = None
    kv_fp8: bool = False
    port: int = 8000

    @property
    def family(self) -> FamilyInfo:
        return family_info(self.model.family)

    @property
    def nodes(self) -> int:
        """Nodes one replica spans."""
        return max(1, -(-self.tp * self.pp // self.gpus_per_node))

    @property
    def served_name(self) -> str:
        """The model name the engine answers to (and the gateway's ``model``)."""
        return self.checkpoint.repo


@dataclass(frozen=True)
class Launch:
    """One command: ``program`` then ``args`` (tokens), run with ``env``. ``files`` maps a
    path (relative to the config volume) to its contents. ``dialect`` is the gateway's name for
    how this engine takes the thinking switch (:mod:`kimi_modes.engines.dialects`);
    ``health_path`` answers 200 once the engine serves; ``image`` is the engine's container
    image. ``leader_args``/``worker_args`` differ only for a replica over several nodes: the
    first is node 0 (serves HTTP), the second the others (``None``: one node)."""

    engine: EngineKey
    program: tuple[str, ...]
    args: tuple[str, ...]
    dialect: str
    image: str
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    worker_args: tuple[str, ...] | None = None

    @property
    def argv(self) -> tuple[str, ...]:
        return self.program + self.args

    @property
    def port(self) -> int | None:
        """The HTTP port it listens on (``None``: it serves no HTTP, as a Dynamo worker;
        exo's API is on 52415)."""
        if self.engine == "exo":
            return 52415
        for flag in ("--port", "--server-port", "--http-port"):
            if flag in self.args:
                return int(self.args[self.args.index(flag) + 1])
        return None

    def shell(self, worker: bool = False) -> str:
        """The command as one shell line (environment first), tokens quoted."""
        args = self.worker_args if worker and self.worker_args is not None else self.args
        env = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*env, shlex.join(self.program + args)])


def vllm_model_flags(t: Target) -> list[str]:
    """vLLM's flags that depend on the model, not on where it runs: remote code, the
    family's parsers, the vision encoder's data-parallel mode, context and KV dtype. KServe
    passes these in ``VLLM_ADDITIONAL_ARGS``."""
    flags = ["--trust-remote-code", "--enable-auto-tool-choice",
             *parser_args("vllm", t.model.family)]
    if t.model.vision:
        flags += ["--mm-encoder-tp-mode", "data"]
    if t.context is not None:
        flags += ["--max-model-len", str(t.context)]
    if t.kv_fp8:
        flags += ["--kv-cache-dtype", "fp8"]
    return flags


def _vllm_args(t: Target, worker: bool = False) -> list[str]:
    args = [t.checkpoint.repo, "--served-model-name", t.served_name, "--host", "0.0.0.0",
            "--port", str(t.port), "--tensor-parallel-size", str(t.tp), *vllm_model_flags(t)]
    if t.pp > 1:
        args += ["--pipeline-parallel-size", str(t.pp)]
    if t.nodes > 1:
        # vLLM's multi-node start without Ray (recipes strategies/multi_node_tp_pp.yaml).
        args += ["--nnodes", str(t.nodes), "--node-rank", LWS_INDEX if worker else "0",
                 "--master-addr", LWS_LEADER]
        if worker:
            args.append("--headless")
    return args


def vllm(t: Target) -> Launch:
    """``vllm serve`` (vllm-project/recipes models/moonshotai/*.yaml)."""
    return Launch(
        "vllm", ("vllm", "serve"), tuple(_vllm_args(t)), "vllm", "vllm/vllm-openai:latest",
        env={"HF_HOME": f"{MODELS_DIR}/hf"},
        worker_args=tuple(_vllm_args(t, worker=True)) if t.nodes > 1 else None,
    )


def _sglang_args(t: Target, worker: bool = False) -> list[str]:
    args = ["--model-path", t.checkpoint.repo, "--served-model-name", t.served_name,
            "--host", "0.0.0.0", "--port", str(t.port), "--tp-size", str(t.tp * t.pp),
            "--trust-remote-code", *parser_args("sglang", t.model.family)]
    if t.context is not None:
        args += ["--context-length", str(t.context)]
    if t.kv_fp8:
        args += ["--kv-cache-dtype", "fp8_e4m3"]
    if t.nodes > 1:
        # MoonshotAI/Kimi-K2 docs/deploy_guidance.md: --dist-init-addr --nnodes --node-rank.
        args += ["--dist-init-addr", f"{LWS_LEADER}:{SGLANG_DIST_PORT}",
                 "--nnodes", str(t.nodes), "--node-rank", LWS_INDEX if worker else "0"]
    return args


def sglang(t: Target) -> Launch:
    """``python3 -m sglang.launch_server`` (the module every SGLang release has; newer ones
    also install ``sglang serve``)."""
    return Launch(
        "sglang", ("python3", "-m", "sglang.launch_server"), tuple(_sglang_args(t)), "sglang",
        "lmsysorg/sglang:latest", env={"HF_HOME": f"{MODELS_DIR}/hf"},
        worker_args=tuple(_sglang_args(t, worker=True)) if t.nodes > 1 else None,
    )


def llama_cpp(t: Target) -> Launch:
    """``llama-server`` on an unsloth GGUF, all routed experts in CPU RAM (``-ot``), the rest
    fitted to the GPUs (``--fit on``); unsloth's sampling with the family's temperature."""
    sampling = t.family.default_sampling()
    args = ["-hf", t.checkpoint.repo, "--jinja", "--host", "0.0.0.0", "--port", str(t.port),
            "--alias", t.served_name, "--fit", "on", "-ot", ".ffn_.*_exps.=CPU",
            "--temp", f"{sampling.temperature:g}", "--min-p", "0.01"]
    if sampling.top_p is not None:
        args += ["--top-p", f"{sampling.top_p:g}"]
    args += ["--ctx-size", str(t.context or 16384)]
    return Launch("llama.cpp", ("llama-server",), tuple(args), "llama-server",
                  "ghcr.io/ggml-org/llama.cpp:server-cuda",
                  env={"LLAMA_CACHE": f"{MODELS_DIR}/gguf"})


def ktransformers(t: Target) -> Launch:
    """KTransformers' SGLang fork: experts on the CPU (``--kt-*``), attention and
    ``--kt-num-gpu-experts`` experts on the GPUs; native INT4 shared by both (``RAWINT4``)
    (kvcache-ai/ktransformers doc/en/Kimi-K2.5.md)."""
    path = f"{MODELS_DIR}/{t.checkpoint.repo}"
    args = ["--model", path, "--kt-weight-path", path, "--kt-method", "RAWINT4",
            "--kt-cpuinfer", "96", "--kt-threadpool-count", "2", "--kt-num-gpu-experts", "30",
            "--kt-gpu-prefill-token-threshold", "400", "--tensor-parallel-size", str(t.tp),
            "--mem-fraction-static", "0.94", "--disable-shared-experts-fusion",
            "--attention-backend", "flashinfer", "--trust-remote-code",
            "--served-model-name", t.served_name, "--host", "0.0.0.0", "--port", str(t.port),
            *parser_args("ktransformers", t.model.family)]
    if t.context is not None:
        args += ["--context-length", str(t.context)]
    return Launch("ktransformers", ("python3", "-m", "sglang.launch_server"), tuple(args),
                  "sglang", "approachingai/ktransformers:latest")


def trtllm_options(t: Target) -> dict[str, object]:
    """The ``--config`` YAML: LLM API options, as NVIDIA's curated kimi-k2-thinking.yaml."""
    options: dict[str, object] = {
        "tensor_parallel_size": t.tp, "moe_expert_parallel_size": t.ep,
        "enable_attention_dp": True, "trust_remote_code": True,
        "kv_cache_config": {"free_gpu_memory_fraction": 0.75, "dtype": "fp8"},
    }
    if t.context is not None:
        options["max_seq_len"] = t.context
    return options


def trtllm(t: Target) -> Launch:
    """``trtllm-serve`` on the PyTorch backend with its YAML (``--config``)."""
    args = [t.checkpoint.repo, "--host", "0.0.0.0", "--port", str(t.port),
            "--backend", "pytorch", "--tp_size", str(t.tp), "--ep_size", str(t.ep),
            "--config", "/config/trtllm.yaml", *parser_args("trtllm", t.model.family)]
    return Launch(
        "trtllm", ("trtllm-serve",), tuple(args), "trtllm",
        "nvcr.io/nvidia/tensorrt-llm/release:latest", env={"HF_HOME": f"{MODELS_DIR}/hf"},
        files={"trtllm.yaml": yaml.safe_dump(trtllm_options(t), sort_keys=False)},
    )


def lmdeploy(t: Target) -> Launch:
    """``lmdeploy serve api_server`` on the PyTorch backend: the ``kimi_k2`` tool parser and
    the generic reasoning parser, as LMDeploy's maintainers recommend (InternLM/lmdeploy#4846)."""
    args = [t.checkpoint.repo, "--backend", "pytorch", "--tp", str(t.tp),
            "--server-name", "0.0.0.0", "--server-port", str(t.port),
            "--model-name", t.served_name, *parser_args("lmdeploy", t.model.family)]
    if t.context is not None:
        args += ["--session-len", str(t.context)]
    return Launch("lmdeploy", ("lmdeploy", "serve", "api_server"), tuple(args), "lmdeploy",
                  "openmmlab/lmdeploy:latest", env={"HF_HOME": f"{MODELS_DIR}/hf"})


def exo_node(t: Target) -> Launch:
    """exo takes no model flags: each Mac runs ``exo``; the model card goes into
    ``resources/inference_model_cards/`` and an instance is placed through its API (port
    52415: ``GET /instance/previews?model_id=``, then ``POST /instance``)."""
    card = exo.card(t.model, t.checkpoint)
    return Launch("exo", ("exo",), (), "exo", "", health_path="/v1/models",
                  files={f"{card.model_id.replace('/', '--')}.toml": card.toml()})


def dynamo_frontend(port: int = 8000) -> Launch:
    """Dynamo's OpenAI frontend with its KV-aware router (``--router-mode kv``)."""
    return Launch("dynamo", ("python3", "-m", "dynamo.frontend"),
                  ("--http-port", str(port), "--router-mode", "kv"), "vllm",
                  "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1", health_path="/health")


def dynamo(t: Target) -> Launch:
    """A Dynamo vLLM worker (``python3 -m dynamo.vllm``): vLLM's engine arguments plus
    Dynamo's parser flags (ai-dynamo/dynamo recipes/kimi-k2.6/vllm/agg-h200-agentic)."""
    args = ["--model", t.checkpoint.repo, "--served-model-name", t.served_name,
            "--tensor-parallel-size", str(t.tp), "--trust-remote-code",
            *parser_args("dynamo", t.model.family)]
    if t.model.vision:
        args += ["--mm-encoder-tp-mode", "data", "--enable-multimodal"]
    if t.context is not None:
        args += ["--max-model-len", str(t.context)]
    return Launch("dynamo", ("python3", "-m", "dynamo.vllm"), tuple(args), "vllm",
                  "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
                  env={"HF_HOME": f"{MODELS_DIR}/hf"})


@dataclass(frozen=True)
class _Spec:
    build: Callable[[Target], Launch]
    formats: tuple[Format, ...]  # checkpoint formats, the first found is the default
    multi_node: bool = False
    #: families the engine has no parser for outside its flag data (llama.cpp picks its
    #: parser from the chat template; none for K3's). Engines whose commands name parsers
    #: are refused by their flag data instead (:func:`kimi_modes.deploy.parsers.missing_parsers`).
    lacks: frozenset[str] = frozenset()


_SPECS: dict[EngineKey, _Spec] = {
    "vllm": _Spec(vllm, ("int4", "fp8", "mxfp4", "nvfp4"), multi_node=True),
    "sglang": _Spec(sglang, ("int4", "fp8", "mxfp4", "nvfp4"), multi_node=True),
    "llama.cpp": _Spec(llama_cpp, ("gguf",), lacks=frozenset({"k3"})),
    "ktransformers": _Spec(ktransformers, ("int4",)),
    "trtllm": _Spec(trtllm, ("nvfp4", "fp8")),
    "lmdeploy": _Spec(lmdeploy, ("int4", "fp8")),
    "exo": _Spec(exo_node, ("mlx",)),
    "dynamo": _Spec(dynamo, ("int4", "fp8", "mxfp4", "nvfp4")),
}


def checkpoint_for(engine: EngineKey, model: Model, wanted: str | None = None) -> Checkpoint:
    """The checkpoint ``engine`` loads for ``model``: ``wanted`` (a checkpoint key) if the
    engine loads its format, else the first of the engine's formats the model has.
    :class:`RenderError` when there is none."""
    spec = _SPECS[engine]
    if model.family in spec.lacks:
        raise RenderError(f"{engine} has no published parsers for {model.name}; use vllm or "
                          "sglang")
    if (gap := missing_parsers(engine, model.family)) is not None:
        raise RenderError(f"{engine} cannot serve {model.name}: {gap}; use vllm or sglang")
    if wanted is not None:
        ckpt = model.checkpoint(wanted)
        if ckpt.format not in spec.formats:
            raise RenderError(f"{engine} does not load {ckpt.format} checkpoints "
                              f"({', '.join(spec.formats)})")
        return ckpt
    for fmt in spec.formats:
        for ckpt in model.checkpoints:
            if ckpt.format == fmt:
                return ckpt
    raise RenderError(f"{model.name} has no checkpoint {engine} loads "
                      f"({', '.join(spec.formats)})")


def launch(engine: str, target: Target) -> Launch:
    """The command that starts ``target`` on ``engine`` (one of :data:`ENGINE_KEYS`).
    :class:`RenderError` for an unknown engine, a checkpoint it does not load, or a replica
    over several nodes on an engine that serves from one."""
    if engine not in _SPECS:
        raise RenderError(f"unknown engine {engine!r} (known: {', '.join(ENGINE_KEYS)})")
    spec = _SPECS[engine]  # type: ignore[index]
    checkpoint_for(engine, target.model, target.checkpoint.key)  # type: ignore[arg-type]
    if target.nodes > 1 and not spec.multi_node:
        raise RenderError(f"{engine} serves one replica from one node; this layout spans "
                          f"{target.nodes}")
    return spec.build(target)


#: The layouts :func:`all_argv` renders: one node (TP8), and two nodes (TP8 × PP2 for vLLM,
#: TP16 for SGLang) where the engine spans nodes.
_LAYOUTS = ((8, 1), (8, 2))


def targets(engine: EngineKey) -> Iterator[Target]:
    """Every model × layout ``engine`` renders (for :func:`all_argv` and the tests)."""
    for model in MODELS.values():
        try:
            ckpt = checkpoint_for(engine, model)
        except RenderError:
            continue
        for tp, pp in _LAYOUTS:
            if pp > 1 and not _SPECS[engine].multi_node:
                continue
            yield Target(model, ckpt, tp=tp, pp=pp, ep=tp if engine == "trtllm" else 1,
                         context=model.architecture.context_length, kv_fp8=pp > 1)


def all_argv() -> Iterator[tuple[str, tuple[str, ...]]]:
    """``(engine, args)`` for every command this package prints: each engine × model (its
    family) × layout, node 0's and the other nodes' arguments, Dynamo's frontend, and the
    vLLM flags KServe passes in ``VLLM_ADDITIONAL_ARGS`` (:func:`vllm_model_flags`).
    ``args`` excludes the program (``vllm serve``), as an argument parser sees them;
    ``engine`` is the :data:`ENGINE_KEYS` name, ``dynamo.frontend`` for Dynamo's frontend."""
    for engine in ENGINE_KEYS:
        for target in targets(engine):
            command = launch(engine, target)
            yield engine, command.args
            if command.worker_args is not None:
                yield engine, command.worker_args
            if engine == "vllm":
                yield engine, tuple(vllm_model_flags(target))
    yield "dynamo.frontend", dynamo_frontend().args
