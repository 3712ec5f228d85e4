"""Which tool and reasoning parser each engine's launch command names for a Kimi family, and
whether the engine registers those names at its pinned version.

The names come from the family facts (:mod:`kimi_modes.protocol.families`: ``engine_parser``,
``thinking``, ``tool_declaration``) and each engine's conventions (deploy-facts §3.5, §3.6,
§3.9); the registered names from the engine's flag data (:mod:`kimi_modes.deploy.flags`:
argparse ``choices``, or the registry names ``scripts/engine_flags.py`` read from the source).

What callers may rely on: :func:`parser_args` returns the parser flags and names the engine's
command gets for a family (a reasoning parser only for a family that thinks);
:func:`missing_parsers` returns ``None`` exactly when every one of those names is among the
values the engine's data accepts for its flag, else a sentence naming what is missing and
what the engine has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kimi_modes.deploy.flags.accepted import flag_data
from kimi_modes.protocol.families import FamilyInfo, family_info


def _own(info: FamilyInfo) -> str:
    return info.engine_parser


def _k25_template(info: FamilyInfo) -> str:
    """TensorRT-LLM's and Dynamo's reasoning parser: ``kimi_k25`` for the K2.5 template
    (K2.5 on; deploy-facts §3.5, §3.9), else the family's own."""
    return "kimi_k25" if info.tool_declaration == "typescript" else info.engine_parser


def _generic(info: FamilyInfo) -> str:
    """LMDeploy's generic ``<think>`` parser, as its maintainers recommend for K2.x
    (InternLM/lmdeploy#4846)."""
    return "default"


@dataclass(frozen=True)
class ParserFlags:
    """An engine's parser flags, the flag data that holds their values, and the names it is
    given for a family."""

    data: str
    tool_flag: str
    reasoning_flag: str
    reasoning: Callable[[FamilyInfo], str] = _own


#: The engines whose commands name parsers (``llama.cpp`` picks its parser from the chat
#: template; exo takes no flags). ``dynamo`` is the Dynamo vLLM worker.
PARSER_FLAGS: dict[str, ParserFlags] = {
    "vllm": ParserFlags("vllm", "--tool-call-parser", "--reasoning-parser"),
    "sglang": ParserFlags("sglang", "--tool-call-parser", "--reasoning-parser"),
    "ktransformers": ParserFlags("ktransformers", "--tool-call-parser", "--reasoning-parser"),
    "trtllm": ParserFlags("trtllm", "--tool_parser", "--reasoning_parser", _k25_template),
    "lmdeploy": ParserFlags("lmdeploy", "--tool-call-parser", "--reasoning-parser", _generic),
    "dynamo": ParserFlags("dynamo-vllm", "--dyn-tool-call-parser", "--dyn-reasoning-parser",
                          _k25_template),
}


def parser_args(engine: str, family: str) -> list[str]:
    """``[TOOL_FLAG, name]`` plus ``[REASONING_FLAG, name]`` for a family that thinks."""
    flags = PARSER_FLAGS[engine]
    info = family_info(family)
    args = [flags.tool_flag, info.engine_parser]
    if info.thinking != "none":
        args += [flags.reasoning_flag, flags.reasoning(info)]
    return args


def missing_parsers(engine: str, family: str) -> str | None:
    """``None`` when ``engine`` at its pinned version registers every parser name
    :func:`parser_args` gives ``family``; else why not (for a refusal)."""
    if engine not in PARSER_FLAGS:
        return None
    data = flag_data(PARSER_FLAGS[engine].data)
    args = parser_args(engine, family)
    gaps = []
    for flag, name in zip(args[::2], args[1::2], strict=True):
        known = data.flags[flag].choices
        if known is not None and name not in known:
            gaps.append(f"no {flag} {name} (it has {', '.join(known)})")
    if not gaps:
        return None
    return (f"{data.command} at {data.package} {data.version} has {'; '.join(gaps)}, "
            f"the parser{'s' if len(gaps) > 1 else ''} the {family} family needs")
