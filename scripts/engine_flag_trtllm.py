"""``trtllm-serve``'s data, read statically from single TensorRT-LLM source files.

The PyPI ``tensorrt-llm`` is a stub that downloads from NVIDIA's own index, and the
repository is over the mirror's size limit, so ``scripts/engine_flags.py`` is given single
files (its ``--trtllm-*`` options, added by :func:`add_arguments`) and this module reads them
with the ``ast`` readers of ``scripts/engine_flag_sources.py``: the ``click`` options of
``serve.py``, the ``--config`` keys of ``llm_args.py`` and the parser factories' names.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine_flag_data import write
from engine_flag_sources import read_click_command, read_pydantic_models, read_registry_names

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


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Add the ``--trtllm-*`` options (the files to read and the commits they are from)."""
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
