"""Which command-line flags each serving engine accepts, at the version pinned in data/.

The data files are written by ``scripts/engine_flags.py`` from each engine's own
argument parser; this module only reads them. ``check`` tells, for one engine's
argument list, every flag that engine would reject (unknown, a value missing or
not wanted, a value outside the parser's choices). ``check_command_line`` does the
same for a whole shell command line, finding the engine from its command, so a
template test is one call per rendered command.

What callers may rely on:

* ``engines()`` names every engine with a data file; ``flag_data(name)`` returns
  its ``FlagData`` (version, command, flags).
* ``check`` returns an empty list exactly when every option token in ``argv`` is
  one the engine's parser accepts, with the value arity and choices it declares.
  Abbreviations of long options are accepted where the engine's parser allows
  them (argparse's default) unless ``strict`` is set, which reports them too.
* Problems for an unknown flag carry the nearest real flag in ``suggestion``.
* A flag whose values an engine checks against a registry filled at run time (the data's
  ``parser_names``: LMDeploy's and TensorRT-LLM's parser flags) has those names as its
  ``choices``, so ``check`` reports a parser name the engine does not register.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

ProblemKind = Literal[
    "unknown", "abbreviated", "missing_value", "unexpected_value", "bad_choice", "no_engine"
]

_PACKAGE = "kimi_modes.deploy.flags"
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_NUMBER = re.compile(r"^-\d+(\.\d*)?$")


@dataclass(frozen=True)
class Flag:
    """One option of an engine's parser."""

    name: str
    value: Literal["none", "optional", "required"]
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    nargs: int | str | None = None
    deprecated: bool = False


@dataclass(frozen=True)
class FlagData:
    """An engine's accepted flags at one pinned version."""

    engine: str
    package: str
    version: str
    command: str
    also_run_as: tuple[str, ...]
    flags: Mapping[str, Flag]
    allow_abbrev: bool = False
    syntax: frozenset[str] = frozenset()
    by_option: Mapping[str, Flag] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FlagData:
        """Build from the JSON that ``scripts/engine_flags.py`` writes."""
        registered = {flag: spec["names"] for flag, spec in raw.get("parser_names", {}).items()}
        flags = {
            name: Flag(
                name=name,
                value=spec["value"],
                aliases=tuple(spec.get("aliases", ())),
                choices=tuple(spec["choices"]) if "choices" in spec
                else tuple(registered[name]) if name in registered else None,
                nargs=spec.get("nargs"),
                deprecated=bool(spec.get("deprecated", False)),
            )
            for name, spec in raw["flags"].items()
        }
        by_option = {opt: f for f in flags.values() for opt in (f.name, *f.aliases)}
        parser = raw.get("parser", {})
        return cls(
            engine=raw["engine"],
            package=raw["package"],
            version=raw["version"],
            command=raw["command"],
            also_run_as=tuple(raw.get("also_run_as", ())),
            flags=flags,
            allow_abbrev=bool(parser.get("allow_abbrev", False)),
            syntax=frozenset(parser.get("syntax", ())),
            by_option=by_option,
        )


@dataclass(frozen=True)
class Problem:
    """One thing the engine's parser would not take.

    (Kind ``abbreviated``, reported only when strict: taken, but not to be relied on.)
    """

    engine: str
    version: str
    flag: str
    kind: ProblemKind
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        return f"{self.engine} {self.version}: {self.message}"


@cache
def engines() -> tuple[str, ...]:
    """The names of the engines that have a data file."""
    data = resources.files(_PACKAGE).joinpath("data")
    return tuple(
        sorted(p.name.removesuffix(".json") for p in data.iterdir() if p.name.endswith(".json"))
    )


@cache
def raw_data(engine: str) -> Mapping[str, Any]:
    """The data file of ``engine`` (one of ``engines()``) as ``scripts/engine_flags.py``
    wrote it (the flags, and for some engines the keys of their config file)."""
    if engine not in engines():
        raise KeyError(f"no flag data for {engine!r}; known: {', '.join(engines())}")
    text = resources.files(_PACKAGE).joinpath("data", f"{engine}.json").read_text(encoding="utf-8")
    data: Mapping[str, Any] = json.loads(text)
    return data


@cache
def flag_data(engine: str) -> FlagData:
    """The pinned flag data of ``engine`` (one of ``engines()``)."""
    return FlagData.from_json(raw_data(engine))


def _looks_like_option(token: str) -> bool:
    return token.startswith("-") and token not in ("-", "--") and not _NUMBER.match(token)


def _normalize(data: FlagData, option: str) -> str:
    """The option as the engine's own parse_args rewrites it before argparse."""
    if "underscores" in data.syntax and option.startswith("--"):
        head, dot, tail = option[2:].partition(".")
        option = "--" + head.replace("_", "-") + dot + tail
    return option


def _resolve(data: FlagData, option: str) -> tuple[Flag | None, bool]:
    """The flag ``option`` names, and whether it got there by abbreviation."""
    if option in data.by_option:
        return data.by_option[option], False
    if "dotted-json" in data.syntax and option.startswith("--") and "." in option:
        base = data.by_option.get(option.split(".", 1)[0])
        if base is not None and base.value != "none":
            return base, False
    if data.allow_abbrev and option.startswith("--"):
        hits = {
            f.name: f
            for opt, f in data.by_option.items()
            if opt.startswith("--") and opt.startswith(option)
        }
        if len(hits) == 1:
            return next(iter(hits.values())), True
    return None, False


def check(engine: str | FlagData, argv: Sequence[str], *, strict: bool = False) -> list[Problem]:
    """The problems ``engine``'s parser (at its pinned version) would have with ``argv``.

    ``engine`` is a name from ``engines()`` or a ``FlagData`` (e.g. regenerated
    data not yet installed). ``argv`` is what follows the command (``vllm
    serve``...): positional values, options and their values, as a shell splits them.
    """
    data = flag_data(engine) if isinstance(engine, str) else engine
    problems: list[Problem] = []

    def problem(flag: str, kind: ProblemKind, message: str, suggestion: str | None = None) -> None:
        problems.append(Problem(data.engine, data.version, flag, kind, message, suggestion))

    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not _looks_like_option(token):
            continue
        if "-O" in data.syntax and token.startswith("-O") and token != "-O":
            continue  # vLLM's -O3 / -O=3 shorthand for --optimization-level
        option, eq, inline = token.partition("=")
        option = _normalize(data, option)
        flag, abbreviated = _resolve(data, option)
        if flag is None:
            near = difflib.get_close_matches(option, list(data.by_option), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]}?)" if near else ""
            prefixed = sorted(
                o for o in data.by_option if option.startswith("--") and o.startswith(option)
            )
            if data.allow_abbrev and prefixed:
                hint = f" (ambiguous: {', '.join(prefixed)})"
            problem(
                option,
                "unknown",
                f"{option} is not a {data.command} flag{hint}",
                near[0] if near else None,
            )
            if not eq and i < len(argv) and not _looks_like_option(argv[i]):
                i += 1  # its value, most likely
            continue
        if abbreviated and strict:
            problem(
                option,
                "abbreviated",
                f"{option} only works as an abbreviation of {flag.name}",
                flag.name,
            )
        values: list[str] = []
        if flag.value == "none":
            if eq:
                problem(option, "unexpected_value", f"{flag.name} takes no value, got {inline!r}")
            continue
        if eq:
            values = [inline]
        elif flag.nargs in ("+", "*"):
            while i < len(argv) and not _looks_like_option(argv[i]):
                values.append(argv[i])
                i += 1
        elif isinstance(flag.nargs, int):
            values = list(argv[i : i + flag.nargs])
            i += len(values)
        elif i < len(argv) and not _looks_like_option(argv[i]):
            values = [argv[i]]
            i += 1
        if not values and flag.value == "required":
            problem(option, "missing_value", f"{flag.name} needs a value")
            continue
        if flag.choices is not None and "." not in option:
            for value in values:
                if value not in flag.choices:
                    shown = ", ".join(flag.choices[:12]) + (
                        ", ..." if len(flag.choices) > 12 else ""
                    )
                    problem(option, "bad_choice", f"{flag.name} {value!r} is not one of: {shown}")
    return problems


def _command_length(engine: str, tokens: Sequence[str]) -> int:
    """How many leading ``tokens`` spell one of ``engine``'s commands (0: none)."""
    data = flag_data(engine)
    lengths = [
        len(c.split())
        for c in (data.command, *data.also_run_as)
        if list(tokens[: len(c.split())]) == c.split()
    ]
    return max(lengths, default=0)


def engines_for(tokens: Sequence[str]) -> list[str]:
    """The engines whose command starts ``tokens``.

    The longest matching command wins; engines tied on it are all returned.
    """
    lengths = {name: _command_length(name, tokens) for name in engines()}
    best = max(lengths.values(), default=0)
    return [name for name, n in lengths.items() if n and n == best]


def check_command_line(
    line: str, *, engine: str | None = None, strict: bool = False
) -> list[Problem]:
    """Check one shell command line (leading ``VAR=value`` words are skipped).

    The engine is found from the command unless named (needed where two engines
    run as the same command, e.g. SGLang and KTransformers' SGLang fork); a line
    whose engine cannot be told is itself reported (kind ``no_engine``).
    """
    tokens = shlex.split(line, comments=True)
    while tokens and _ENV_ASSIGNMENT.match(tokens[0]):
        tokens.pop(0)
    if engine is None:
        found = engines_for(tokens)
        if len(found) != 1:
            why = (
                f"could be {' or '.join(found)}; name the engine"
                if found
                else "no engine runs as this"
            )
            return [Problem("?", "?", tokens[0] if tokens else "", "no_engine", f"{why}: {line!r}")]
        engine = found[0]
    return check(engine, tokens[_command_length(engine, tokens) :], strict=strict)
