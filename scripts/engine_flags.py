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
  so single files are read (``scripts/engine_flag_trtllm.py``, with the ``ast`` readers):
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

The engines, their pins and their parser-building snippets are ``engine_flag_table.py``;
the static source readers ``engine_flag_sources.py``; TensorRT-LLM's files and pins
``engine_flag_trtllm.py``; the data files' format and place ``engine_flag_data.py`` (all
sibling modules of this script). This module reads the wheels and runs the command.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# sibling modules of this script
import engine_flag_trtllm
from engine_flag_data import patch_parser_names, write
from engine_flag_sources import llama_server_version, read_llama_help, read_registry_names
from engine_flag_table import ENGINES, Engine, Wheel

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


# ----------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Regenerate the data files of the named engines (all Python engines by default)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engines", nargs="*", help=f"some of {sorted(ENGINES)}, trtllm, llama-server")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument(
        "--llama-server", type=Path, help="a built llama-server binary to read --help from"
    )
    engine_flag_trtllm.add_arguments(ap)
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
                    patch_parser_names(name, engine_flag_trtllm.trtllm_parser_names(args))
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
                engine_flag_trtllm.write_trtllm(args)
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
