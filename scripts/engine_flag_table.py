"""The engines whose parsers ``scripts/engine_flags.py`` reads, at their pinned versions.

:data:`ENGINES` maps each data file's name to an :class:`Engine`: the wheels to unzip, the
command it stands for, and ``build``, the Python that builds the engine's own argparse
parsers in the child interpreter (the same calls the engine's command makes). Data only:
the reading itself is ``scripts/engine_flags.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Wheel:
    """One PyPI distribution at a pinned version."""

    package: str
    version: str


@dataclass(frozen=True)
class Registry:
    """Where the names a parser flag takes are registered, in an engine's wheel: the ``.py``
    files under ``path`` (relative to the unzipped wheel), read by ``read_registry_names``."""

    flag: str
    path: str
    decorator: str
    constants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Engine:
    """One engine command whose parser we read.

    ``build`` is Python run in the child interpreter; it must leave a list of
    argparse parsers in ``parsers`` (their actions are merged), and may leave in
    ``registered`` the names a flag's value is checked against after parsing.
    """

    name: str
    wheels: tuple[Wheel, ...]
    command: str
    also_run_as: tuple[str, ...]
    build: str
    notes: str = ""
    env: dict[str, str] = field(default_factory=dict)
    #: engine modules to replace by placeholders too (image helpers needing torchvision)
    stubs: tuple[str, ...] = ()
    #: what the engine's parse_args rewrites before argparse sees it (see accepted.py)
    syntax: tuple[str, ...] = ()
    #: parser flags whose values a run-time registry checks (read from the first wheel)
    registries: tuple[Registry, ...] = ()


_VLLM_SERVE = """
import sys
sys.argv = ["vllm", "serve"]  # so that --model is registered, as on a real run
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.common.cli_args import make_arg_parser
parsers = [make_arg_parser(FlexibleArgumentParser())]
# vLLM checks these names after parsing, against registries that plugins can extend.
from vllm.reasoning import ReasoningParserManager
from vllm.tool_parsers import ToolParserManager
registered = {
    "--tool-call-parser": ToolParserManager.list_registered(),
    "--reasoning-parser": ReasoningParserManager.list_registered(),
}
"""

_SGLANG_SERVE = """
import argparse
from sglang.srt.server_args import ServerArgs
p = argparse.ArgumentParser(prog="sglang serve")
ServerArgs.add_cli_args(p)
parsers = [p]
"""

_LMDEPLOY_API_SERVER = """
from lmdeploy.cli.serve import SubCliServe
SubCliServe.add_parser_api_server()
parsers = [SubCliServe.subparsers.choices["api_server"]]
"""

_DYNAMO_FRONTEND = """
import argparse
from dynamo.frontend.frontend_args import FrontendArgGroup
p = argparse.ArgumentParser()
FrontendArgGroup().add_arguments(p)
parsers = [p]
"""

# Dynamo's workers parse in three steps (dynamo.<backend>.args): Dynamo's own parser
# (runtime + backend groups) takes what it knows, the worker router parser takes its flags
# from the rest, and the engine's parser takes what is left. The flags accepted are the
# union, built here with the same calls.
_DYNAMO_WORKER_HEAD = """
import argparse
from dynamo.common.configuration.groups.runtime_args import DynamoRuntimeArgGroup
from dynamo.common.configuration.groups.router_args import add_worker_router_arguments
router = argparse.ArgumentParser(add_help=False)
add_worker_router_arguments(router)
"""

_DYNAMO_VLLM = _DYNAMO_WORKER_HEAD + """
from vllm.engine.arg_utils import AsyncEngineArgs
try:
    from vllm.utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
from dynamo.vllm.backend_args import DynamoVllmArgGroup
p = argparse.ArgumentParser(allow_abbrev=False)
DynamoRuntimeArgGroup().add_arguments(p)
DynamoVllmArgGroup().add_arguments(p)
engine = FlexibleArgumentParser(add_help=False)
AsyncEngineArgs.add_cli_args(engine, async_args_only=False)
parsers = [p, router, engine]
"""

_DYNAMO_SGLANG = _DYNAMO_WORKER_HEAD + """
from sglang.srt.server_args import ServerArgs
from dynamo.sglang._compat import add_sglang_cli_compat
from dynamo.sglang.backend_args import DynamoSGLangArgGroup
p = argparse.ArgumentParser()
DynamoRuntimeArgGroup().add_arguments(p)
DynamoSGLangArgGroup().add_arguments(p)
engine = argparse.ArgumentParser(add_help=False)
ServerArgs.add_cli_args(engine)
add_sglang_cli_compat(engine)
for action in engine._actions:  # as dynamo.sglang.args.parse_args: its own loader
    if action.dest == "load_format" and action.choices:
        action.choices = list(action.choices) + ["gms"]
parsers = [p, router, engine]
"""

# dynamo.trtllm's backend group reads only defaults from TensorRT-LLM (BuildConfig's
# model_fields), which is not importable here: a module with no defaults stands in.
_DYNAMO_TRTLLM = """
import collections, sys, types
class _NoDefault:
    default = None
class BuildConfig:
    model_fields = collections.defaultdict(_NoDefault)
trt = types.ModuleType("tensorrt_llm")
trt.llmapi = types.ModuleType("tensorrt_llm.llmapi")
trt.llmapi.BuildConfig = BuildConfig
sys.modules.update({"tensorrt_llm": trt, "tensorrt_llm.llmapi": trt.llmapi})
""" + _DYNAMO_WORKER_HEAD + """
from dynamo.trtllm.backend_args import DynamoTrtllmArgGroup
p = argparse.ArgumentParser()
DynamoRuntimeArgGroup().add_arguments(p)
DynamoTrtllmArgGroup().add_arguments(p)
parsers = [p, router]
"""

_DYNAMO_WHEELS = (Wheel("ai-dynamo", "1.6.1"), Wheel("ai-dynamo-runtime", "1.6.1"))

ENGINES: dict[str, Engine] = {
    "vllm": Engine(
        name="vllm",
        wheels=(Wheel("vllm", "0.34.0"),),
        command="vllm serve",
        also_run_as=("python -m vllm.entrypoints.openai.api_server",),
        build=_VLLM_SERVE,
        env={"VLLM_TARGET_DEVICE": "cpu"},
        syntax=("underscores", "dotted-json", "-O"),
        notes=(
            "parser of `vllm serve` (vllm.entrypoints.common.cli_args.make_arg_parser: "
            "FrontendArgs + AsyncEngineArgs), built on vLLM's CPU platform; other "
            "subcommands (bench, run-batch) have their own parsers and are not covered"
        ),
    ),
    "sglang": Engine(
        name="sglang",
        wheels=(Wheel("sglang", "0.5.23"),),
        command="sglang serve",
        also_run_as=("python -m sglang.launch_server", "python3 -m sglang.launch_server"),
        build=_SGLANG_SERVE,
        notes="ServerArgs.add_cli_args, the parser of both `sglang serve` and sglang.launch_server",
    ),
    "ktransformers": Engine(
        name="ktransformers",
        wheels=(Wheel("sglang-kt", "0.7.2"),),
        command="python -m sglang.launch_server",
        also_run_as=("python3 -m sglang.launch_server",),
        build=_SGLANG_SERVE,
        stubs=("sglang.srt.multimodal.internvl_utils",),
        notes=(
            "KTransformers serves through its SGLang fork `sglang-kt` (installed with "
            "`pip install kt-kernel sglang-kt`); this is that fork's ServerArgs, --kt-* included"
        ),
    ),
    "lmdeploy": Engine(
        name="lmdeploy",
        wheels=(Wheel("lmdeploy", "0.18.0"),),
        command="lmdeploy serve api_server",
        also_run_as=(),
        build=_LMDEPLOY_API_SERVER,
        syntax=("underscores",),
        notes="the `serve api_server` subparser of lmdeploy.cli",
        # validate_parser_names (lmdeploy/serve/parsers/response_parser.py) checks both
        # against these mmengine registries before the engine starts; legacy reasoning
        # names are mapped to `default`.
        registries=(
            Registry("--tool-call-parser", "lmdeploy/serve/parsers/tool_parser",
                     "ToolParserManager.register_module"),
            Registry("--reasoning-parser", "lmdeploy/serve/parsers/reasoning_parser",
                     "ReasoningParserManager.register_module",
                     ("LEGACY_REASONING_PARSER_NAMES",)),
        ),
    ),
    "dynamo-frontend": Engine(
        name="dynamo-frontend",
        wheels=(Wheel("ai-dynamo", "1.6.1"), Wheel("ai-dynamo-runtime", "1.6.1")),
        command="python -m dynamo.frontend",
        also_run_as=("python3 -m dynamo.frontend",),
        build=_DYNAMO_FRONTEND,
        notes=(
            "FrontendArgGroup only. With --chat-processor vllm the frontend passes the "
            "remaining flags to vLLM's parser (vLLM's own flags); with sglang it accepts "
            "only --tool-call-parser, --reasoning-parser and --chat-template besides these"
        ),
    ),
    "dynamo-vllm": Engine(
        name="dynamo-vllm",
        wheels=(*_DYNAMO_WHEELS, Wheel("vllm", "0.31.0")),
        command="python -m dynamo.vllm",
        also_run_as=("python3 -m dynamo.vllm",),
        build=_DYNAMO_VLLM,
        env={"VLLM_TARGET_DEVICE": "cpu"},
        notes=(
            "dynamo.vllm.args._parse_cli_args rebuilt: DynamoRuntimeArgGroup + "
            "DynamoVllmArgGroup (allow_abbrev=False), the worker router flags "
            "(add_worker_router_arguments), then vLLM's AsyncEngineArgs.add_cli_args "
            "(async_args_only=False) at vllm 0.31.0, the version ai-dynamo[vllm] 1.6.1 pins"
        ),
    ),
    "dynamo-sglang": Engine(
        name="dynamo-sglang",
        wheels=(*_DYNAMO_WHEELS, Wheel("sglang", "0.5.21")),
        command="python -m dynamo.sglang",
        also_run_as=("python3 -m dynamo.sglang",),
        build=_DYNAMO_SGLANG,
        stubs=("sglang.srt.multimodal.internvl_utils",),
        notes=(
            "dynamo.sglang.args.parse_args rebuilt: DynamoRuntimeArgGroup + "
            "DynamoSGLangArgGroup, the worker router flags, then SGLang's "
            "ServerArgs.add_cli_args (+ dynamo's add_sglang_cli_compat, load_format gms) at "
            "sglang 0.5.21, the version ai-dynamo[sglang] 1.6.1 pins"
        ),
    ),
    "dynamo-trtllm": Engine(
        name="dynamo-trtllm",
        wheels=_DYNAMO_WHEELS,
        command="python -m dynamo.trtllm",
        also_run_as=("python3 -m dynamo.trtllm",),
        build=_DYNAMO_TRTLLM,
        notes=(
            "dynamo.trtllm.args.parse_args rebuilt: DynamoRuntimeArgGroup + "
            "DynamoTrtllmArgGroup and the worker router flags. Engine options are not "
            "flags here: they go in --extra-engine-args (a YAML of TensorRT-LLM's LLM API "
            "args), --override-engine-args (JSON) or dynamic --trtllm.<key>.<key> VALUE "
            "flags, which this data does not list"
        ),
    ),
}
