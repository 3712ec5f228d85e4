"""Read each serving engine's own argument parser at a pinned version and store its flags.

Writes ``src/kimi_modes/deploy/flags/data/<engine>.json``, which
``kimi_modes.deploy.flags.accepted`` checks command lines against. When an engine
renames or drops a flag, regenerating the data with a newer pin makes the tests
that check our templates fail on that flag.

How a parser is read (no GPU code runs, nothing is installed into the running
environment):

* Python engines: ``pip download --no-deps PACKAGE==VERSION`` fetches the wheel,
  which is unzipped into a scratch folder. A child interpreter (this one, so its
  CPU ``torch`` and ``transformers`` serve) puts the unzipped package first on
  ``sys.path`` and *builds the engine's real argparse parser* by calling the same
  function the engine's command calls (vLLM ``make_arg_parser``, SGLang
  ``ServerArgs.add_cli_args``, ...). The engine's own code therefore derives the
  flags from its dataclasses exactly as it does at run time. GPU-only extension
  modules (``STUBBED``) are replaced by inert placeholders; a pure-Python
  dependency the parser module imports and this environment lacks is installed
  with ``pip install --no-deps --target`` into the scratch folder and the build is
  retried. The child then dumps ``parser._actions``.
  Dynamo's workers (``dynamo-vllm``, ``dynamo-sglang``, ``dynamo-trtllm``) parse in
  three steps; the child rebuilds the three parsers with the same calls (Dynamo's groups,
  the worker router flags, the engine's own arguments at the version ai-dynamo pins) and
  the data is their union, the first parser's entry winning where two declare a flag.
* ``trtllm-serve``: the PyPI ``tensorrt-llm`` is a stub that downloads from NVIDIA's own
  index, which cannot be reached here, and the repository is over the mirror's size limit,
  so single files are read (``scripts/engine_flag_sources.py``, statically with ``ast``):
  the ``click`` options of ``tensorrt_llm/commands/serve.py`` (``--trtllm-serve-py``), and,
  given ``--trtllm-llm-args-py``, the fields of the pydantic ``TorchLlmArgs`` of
  ``tensorrt_llm/llmapi/llm_args.py``, the keys its ``--config`` YAML takes. The files'
  repository, path and commit are recorded in the data (``source``); the commit is the
  version, as no release tag could be told from single-file reads.
* ``llama-server``: the ``--help`` text of a built binary (``--llama-server PATH``).
* Parser names: where an engine checks ``--tool-call-parser`` / ``--reasoning-parser`` values
  against a registry filled at run time rather than argparse ``choices`` (LMDeploy's
  mmengine registries, TensorRT-LLM's factories), the registered names are read statically
  from the registry's source (``read_registry_names``: registration decorators, the
  factory's dict literal) and stored as ``parser_names``, each with the file it came from
  (wheel path, or repository, path and commit). vLLM's registries are read by importing
  them (``registered`` above); SGLang's and Dynamo's are argparse ``choices`` already.
  ``--parser-names-only`` rereads just these into the existing data files.

Usage::

    python scripts/engine_flags.py                      # every Python engine
    python scripts/engine_flags.py vllm sglang          # some of them
    python scripts/engine_flags.py llama-server --llama-server PATH/TO/llama-server
    python scripts/engine_flags.py trtllm --trtllm-serve-py PATH/TO/serve.py \
        [--trtllm-llm-args-py PATH/TO/llm_args.py] \
        [--trtllm-tool-parsers-py PATH/TO/tool_parser_factory.py] \
        [--trtllm-reasoning-parsers-py PATH/TO/reasoning_parser.py]
    python scripts/engine_flags.py --parser-names-only lmdeploy trtllm ...  # names only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_flag_sources import (  # a sibling module of this script
    llama_server_version,
    read_click_command,
    read_llama_help,
    read_pydantic_models,
    read_registry_names,
)

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "src" / "kimi_modes" / "deploy" / "flags" / "data"
GENERATED_BY = "scripts/engine_flags.py"

#: GPU-only or native extension packages that the parser modules import but never
#: need for building a parser; they are replaced by inert placeholder modules.
STUBBED = (
    "sgl_kernel",
    "flashinfer",
    "deep_gemm",
    "deep_ep",
    "cutlass",
    "flash_attn",
    "flash_mla",
    "llguidance",
    "IPython",
    "cupy",
    "nixl",
    "mooncake",
    "kt_kernel",
    "lmdeploy.lib",
    "_turbomind",
)

#: Import name -> PyPI name, for the pure-Python dependencies installed on demand.
PYPI_NAME = {
    "cpuinfo": "py-cpuinfo",
    "zmq": "pyzmq",
    "yaml": "PyYAML",
    "google": "protobuf",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "partial_json_parser": "partial-json-parser",
    "prometheus_fastapi_instrumentator": "prometheus-fastapi-instrumentator",
    "prometheus_client": "prometheus-client",
    "compressed_tensors": "compressed-tensors",
    "openai_harmony": "openai-harmony",
    "sse_starlette": "sse-starlette",
    "multipart": "python-multipart",
    "mistral_common": "mistral-common",
    "jinja2": "Jinja2",
    "attr": "attrs",
    "dateutil": "python-dateutil",
    "sklearn": "scikit-learn",
    "pkg_resources": "setuptools",
    "tvm_ffi": "apache-tvm-ffi",
}


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


# --------------------------------------------------------------------------- child side


def _install_stubs(roots: list[str]) -> None:
    """Make imports of ``roots`` (and their submodules) yield inert placeholder modules."""
    import importlib.abc
    import importlib.machinery
    import types

    class PlaceholderMeta(type):
        def __getattr__(cls, name: str) -> Any:
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            return PlaceholderMeta(name, (), {"__init__": lambda self, *a, **k: None})

    class Placeholder(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            sub: Any
            if name[:1].isupper() or name.startswith("_"):
                sub = PlaceholderMeta(name, (), {"__init__": lambda self, *a, **k: None})
            else:
                sub = Placeholder(f"{self.__name__}.{name}")
            setattr(self, name, sub)
            return sub

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]  # used as a decorator
            return self

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if any(name == r or name.startswith(r + ".") for r in roots):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec: Any) -> Any:
            return Placeholder(spec.name)

        def exec_module(self, module: Any) -> None:
            return None

    sys.meta_path.insert(0, Finder())


def _describe_action(action: argparse.Action, deprecated: set[int]) -> dict[str, Any]:
    nargs = action.nargs
    if nargs == 0:
        value = "none"
    elif nargs in ("?", "*"):
        value = "optional"
    else:
        value = "required"
    entry: dict[str, Any] = {"value": value}
    if nargs not in (None, 0, "?"):
        entry["nargs"] = nargs if isinstance(nargs, (int, str)) else str(nargs)
    if action.choices is not None and not isinstance(action.choices, dict):
        choices = [c for c in action.choices if c is not None]
        entry["choices"] = sorted({str(c) for c in choices})
    kind = type(action).__name__
    if kind not in ("_StoreAction", "_StoreTrueAction", "_StoreFalseAction"):
        entry["action"] = kind.lstrip("_")
    if action.help == argparse.SUPPRESS:
        entry["hidden"] = True
    if id(action) in deprecated or getattr(action, "deprecated", False):
        entry["deprecated"] = True
    return entry


def _dump_parsers(
    parsers: list[argparse.ArgumentParser], registered: dict[str, list[str]]
) -> dict[str, Any]:
    """The options of ``parsers`` keyed by their first long option string.

    ``registered`` adds value names that the engine checks after parsing (as
    ``choices``, with ``choices_checked`` saying so).
    """
    flags: dict[str, Any] = {}
    positionals: list[str] = []
    for parser in parsers:
        deprecated = {id(a) for a in getattr(parser, "_deprecated", ())}
        for action in parser._actions:
            if not action.option_strings:
                positionals.append(action.dest)
                continue
            longs = [o for o in action.option_strings if o.startswith("--")]
            key = (longs or action.option_strings)[0]
            entry = _describe_action(action, deprecated)
            entry["aliases"] = [o for o in action.option_strings if o != key]
            if not entry["aliases"]:
                del entry["aliases"]
            if key in registered and "choices" not in entry:
                entry["choices"] = sorted(registered[key])
                entry["choices_checked"] = "after parsing, against a registry plugins may extend"
            flags.setdefault(key, entry)  # the first parser to see it takes it
    first = parsers[0]
    return {
        "parser": {
            "class": type(first).__name__,
            "allow_abbrev": bool(first.allow_abbrev),
        },
        "positionals": positionals,
        "flags": dict(sorted(flags.items())),
    }


def child_main(engine_name: str) -> None:
    """Build ``engine_name``'s parser in this process and print it as JSON."""
    _install_stubs([*STUBBED, *ENGINES[engine_name].stubs])
    scope: dict[str, Any] = {}
    exec(ENGINES[engine_name].build, scope)
    print("@@FLAGS@@" + json.dumps(_dump_parsers(scope["parsers"], scope.get("registered", {}))))


# -------------------------------------------------------------------------- parent side


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, stdout=subprocess.DEVNULL)


def download_wheel(wheel: Wheel, into: Path) -> Path:
    """Download ``wheel`` without dependencies and unzip it under ``into``; return the folder."""
    dl = into / "dl"
    _pip(
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        f"{wheel.package}=={wheel.version}",
        "-d",
        str(dl),
    )
    stem = wheel.package.replace("-", "_").lower()
    found = [p for p in dl.glob("*.whl") if p.name.lower().startswith(f"{stem}-{wheel.version}")]
    if not found:
        raise RuntimeError(f"no wheel of {wheel.package}=={wheel.version} in {dl}")
    out = into / f"{stem}-{wheel.version}"
    with zipfile.ZipFile(found[0]) as zf:
        zf.extractall(out)
    return out


_MISSING = re.compile(r"No module named '([^'.]+)")


def read_python_engine(engine: Engine, scratch: Path, deps: Path) -> dict[str, Any]:
    """Build ``engine``'s parser in a child interpreter; install missing pure-Python deps."""
    roots = [download_wheel(w, scratch) for w in engine.wheels]
    env = {
        **os.environ,
        **engine.env,
        "PYTHONPATH": os.pathsep.join([*map(str, roots), str(deps)]),
    }
    tried: set[str] = set()
    while True:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", engine.name],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        for line in proc.stdout.splitlines():
            if line.startswith("@@FLAGS@@"):
                data: dict[str, Any] = json.loads(line[len("@@FLAGS@@") :])
                return data
        missing = _MISSING.findall(proc.stderr)
        if not missing or missing[-1] in tried:
            raise RuntimeError(f"{engine.name}: parser build failed:\n{proc.stderr[-4000:]}")
        module = missing[-1]
        if any((root / module).exists() for root in roots):
            # a submodule of the engine's own package is missing: never fetch a namesake
            raise RuntimeError(f"{engine.name}: parser build failed:\n{proc.stderr[-4000:]}")
        tried.add(module)
        print(
            f"  {engine.name}: installing {PYPI_NAME.get(module, module)} for import {module}",
            file=sys.stderr,
        )
        _pip(
            "install", "--quiet", "--no-deps", "--target", str(deps), PYPI_NAME.get(module, module)
        )


# ------------------------------------------------------------------- parser-name registries


def wheel_parser_names(engine: Engine, root: Path) -> dict[str, Any]:
    """``{flag: {"names": [...], "source": {...}}}`` for ``engine``'s registries, read from its
    unzipped first wheel at ``root``."""
    wheel = engine.wheels[0]
    out: dict[str, Any] = {}
    for reg in engine.registries:
        names: set[str] = set()
        for path in sorted((root / reg.path).rglob("*.py")):
            names.update(read_registry_names(path.read_text(encoding="utf-8"),
                                             decorator=reg.decorator, constants=reg.constants))
        if not names:
            raise RuntimeError(f"{engine.name}: no names registered under {reg.path}")
        out[reg.flag] = {"names": sorted(names), "source": {
            "package": wheel.package, "version": wheel.version, "path": reg.path,
            "read": f"@{reg.decorator}(...) names" + (
                f" and {', '.join(reg.constants)}" if reg.constants else "")}}
    return out


def trtllm_parser_names(args: argparse.Namespace) -> dict[str, Any]:
    """The names of TensorRT-LLM's tool and reasoning parser factories, from the files given
    (the dict literal ``parsers`` of the factory class, and any ``register_reasoning_parser``
    decorators)."""
    out: dict[str, Any] = {}
    for flag, path_arg, commit, repo_path, cls in (
        ("--tool_parser", args.trtllm_tool_parsers_py, args.trtllm_tool_parsers_commit,
         "tensorrt_llm/serve/tool_parser/tool_parser_factory.py", "ToolParserFactory"),
        ("--reasoning_parser", args.trtllm_reasoning_parsers_py,
         args.trtllm_reasoning_parsers_commit, "tensorrt_llm/llmapi/reasoning_parser.py",
         "ReasoningParserFactory"),
    ):
        if path_arg is None:
            continue
        if commit != args.trtllm_commit:
            # Another commit's registry would judge the pinned serve.py by names it may not
            # have had (or lacked): the names are stored only from serve.py's own commit.
            print(f"trtllm: {flag} names read at {commit[:8]}, not at serve.py's "
                  f"{args.trtllm_commit[:8]}: not stored")
            continue
        names = read_registry_names(path_arg.read_text(encoding="utf-8"),
                                    class_dict=(cls, "parsers"),
                                    decorator="register_reasoning_parser")
        if not names:
            raise RuntimeError(f"trtllm: no names in {path_arg}")
        out[flag] = {"names": names, "source": {
            "repo": TRTLLM_REPO, "path": repo_path, "commit": commit,
            "read": f"the keys of {cls}.parsers, the dict serve.py's click.Choice reads"}}
    return out


def patch_parser_names(name: str, names: dict[str, Any]) -> None:
    """Replace the ``parser_names`` of ``name``'s existing data file."""
    path = DATA_DIR / f"{name}.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record.pop("generated_by", None)
    record["parser_names"] = names
    record["generated_by"] = GENERATED_BY
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{name}: parser names of {', '.join(names)} -> {path.relative_to(ROOT)}")


# ----------------------------------------------------------------------------------- main


def write(
    name: str,
    package: str,
    version: str,
    command: str,
    also: tuple[str, ...],
    notes: str,
    body: dict[str, Any],
    source: list[dict[str, str]] | None = None,
) -> None:
    """Write one engine's data file (``source``: the files it was read from, by repository,
    path and commit, where it was not read from a released package)."""
    record = {
        "engine": name,
        "package": package,
        "version": version,
        "command": command,
        "also_run_as": list(also),
        "how_read": notes,
        **({"source": source} if source else {}),
        **body,
        "generated_by": GENERATED_BY,
    }
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{name} {version}: {len(body['flags'])} flags -> {path.relative_to(ROOT)}")


#: The TensorRT-LLM sources read (NVIDIA/TensorRT-LLM; no release tag could be told for
#: them from single-file reads, so the commit is the version).
TRTLLM_REPO = "NVIDIA/TensorRT-LLM"
TRTLLM_SERVE_COMMIT = "00209af149e7774406881a37283dce303571eb11"
TRTLLM_LLM_ARGS_COMMIT = "0004396720054fd8e205cbf616f21f0b57c6b412"
#: The parser registries' files. Neither is stored at serve.py's commit (serve.py there reads
#: ``ToolParserFactory.parsers`` and ``ReasoningParserFactory.parsers``, dict literals); these
#: are stored versions that have that dict, and which of them is closest to serve.py's commit
#: could not be told. Their names are therefore not stored (:func:`trtllm_parser_names` keeps
#: only names read at serve.py's own commit): the trtllm parser names are unchecked.
TRTLLM_TOOL_PARSERS_COMMIT = "34eff6aeda41f53562ba74463f82401d215848d4"
TRTLLM_REASONING_PARSERS_COMMIT = "f59aed070dabff4761d70e47c90fd761776c1bac"
#: The model ``trtllm-serve --backend pytorch --config FILE`` validates FILE against.
TRTLLM_CONFIG_ROOT = "TorchLlmArgs"


def write_trtllm(args: argparse.Namespace) -> None:
    """``trtllm-serve``'s data: the click options of ``serve`` and, given llm_args.py, the
    keys its ``--config`` YAML takes (the fields of ``TorchLlmArgs`` and the models they
    nest)."""
    body = read_click_command(args.trtllm_serve_py.read_text(encoding="utf-8"), "serve")
    source = [{"repo": TRTLLM_REPO, "path": "tensorrt_llm/commands/serve.py",
               "commit": args.trtllm_commit}]
    notes = (
        "click options of tensorrt_llm/commands/serve.py:serve, read with ast (the PyPI "
        "package is a stub that downloads from NVIDIA's index, and the repository is over "
        "the mirror's size limit: the file was read from the library's single-file store)"
    )
    if args.trtllm_llm_args_py is not None:
        body["config_file"] = {
            "flag": "--config",
            **read_pydantic_models(
                args.trtllm_llm_args_py.read_text(encoding="utf-8"), TRTLLM_CONFIG_ROOT
            ),
        }
        source.append({"repo": TRTLLM_REPO, "path": "tensorrt_llm/llmapi/llm_args.py",
                       "commit": args.trtllm_llm_args_commit})
        notes += (
            "; the --config YAML's keys are the fields of llm_args.py's TorchLlmArgs and the "
            "models they nest (through the module's type aliases too), read with ast. "
            "BaseLlmArgs declares extra='forbid'; the nested models derive from "
            "StrictBaseModel (tensorrt_llm/llmapi/utils.py, not read here). Models from "
            "other modules (LoraConfig, TelemetryConfig) are not listed, so keys under them "
            "are not checked. llm_args.py is not stored at serve.py's commit: the version "
            "read is the one the source list names"
        )
    if names := trtllm_parser_names(args):
        body["parser_names"] = names
    write("trtllm", "tensorrt-llm", f"git-{args.trtllm_commit[:8]}", "trtllm-serve serve",
          ("trtllm-serve",), notes, body, source)


def main(argv: list[str] | None = None) -> int:
    """Regenerate the data files of the named engines (all Python engines by default)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engines", nargs="*", help=f"some of {sorted(ENGINES)}, trtllm, llama-server")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument(
        "--llama-server", type=Path, help="a built llama-server binary to read --help from"
    )
    ap.add_argument(
        "--trtllm-serve-py", type=Path, help="tensorrt_llm/commands/serve.py at the pinned tag"
    )
    ap.add_argument(
        "--trtllm-commit", default=TRTLLM_SERVE_COMMIT, help="the commit serve.py is from"
    )
    ap.add_argument(
        "--trtllm-llm-args-py",
        type=Path,
        help="tensorrt_llm/llmapi/llm_args.py (the --config YAML's keys: TorchLlmArgs)",
    )
    ap.add_argument(
        "--trtllm-llm-args-commit", default=TRTLLM_LLM_ARGS_COMMIT,
        help="the commit llm_args.py is from",
    )
    for which, commit in (("tool-parsers", TRTLLM_TOOL_PARSERS_COMMIT),
                          ("reasoning-parsers", TRTLLM_REASONING_PARSERS_COMMIT)):
        ap.add_argument(f"--trtllm-{which}-py", type=Path,
                        help=f"TensorRT-LLM's {which.replace('-', ' ')} registry source")
        ap.add_argument(f"--trtllm-{which}-commit", default=commit,
                        help="the commit that file is from")
    ap.add_argument("--parser-names-only", action="store_true",
                    help="reread only the parser-name registries into the existing data")
    ap.add_argument("--keep", type=Path, help="scratch folder to keep (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    wanted = args.engines or list(ENGINES)
    with tempfile.TemporaryDirectory(prefix="engine-flags-") as tmp:
        scratch = args.keep or Path(tmp)
        deps = scratch / "deps"
        deps.mkdir(parents=True, exist_ok=True)
        for name in wanted:
            if name == "llama-server":
                if args.llama_server is None:
                    print(
                        "llama-server: no binary given (--llama-server PATH); skipped",
                        file=sys.stderr,
                    )
                    continue
                proc = subprocess.run(
                    [str(args.llama_server), "--help"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
                write(
                    "llama-server",
                    "llama.cpp",
                    llama_server_version(args.llama_server),
                    "llama-server",
                    (),
                    "the --help text of a llama-server build",
                    read_llama_help(proc.stdout),
                )
            elif args.parser_names_only:
                if name == "trtllm":
                    patch_parser_names(name, trtllm_parser_names(args))
                else:
                    engine = ENGINES[name]
                    root = download_wheel(engine.wheels[0], scratch)
                    patch_parser_names(name, wheel_parser_names(engine, root))
            elif name == "trtllm":
                if args.trtllm_serve_py is None:
                    print(
                        "trtllm: no serve.py given (--trtllm-serve-py PATH); skipped",
                        file=sys.stderr,
                    )
                    continue
                write_trtllm(args)
            else:
                engine = ENGINES[name]
                body = read_python_engine(engine, scratch, deps)
                body["parser"]["syntax"] = list(engine.syntax)
                if engine.registries:
                    root = download_wheel(engine.wheels[0], scratch)
                    body["parser_names"] = wheel_parser_names(engine, root)
                wheel = engine.wheels[0]
                write(
                    engine.name,
                    wheel.package,
                    wheel.version,
                    engine.command,
                    engine.also_run_as,
                    engine.notes,
                    body,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
