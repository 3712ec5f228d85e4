"""Readers of engine flags from source text, for engines that cannot be imported here.

Used by ``scripts/engine_flags.py`` (its docstring says when each is used); kept apart so
that the readers can be tested on small inputs without the wheel machinery.

* :func:`read_click_command`: the ``@click.option`` decorators of one ``click`` command,
  read with ``ast`` (``trtllm-serve``: its package cannot be downloaded here).
* :func:`read_pydantic_models`: the fields of a tree of pydantic models, read with ``ast``
  (TensorRT-LLM's LLM API arguments, the keys of ``trtllm-serve --config``).
* :func:`read_llama_help`: the options of ``llama-server --help``.
* :func:`read_registry_names`: the names a parser registry is filled with (the
  ``--tool-call-parser`` / ``--reasoning-parser`` values an engine checks at run time), read
  with ``ast`` from registration decorators, a class's dict literal and name tuples.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- trtllm-serve (click, ast)


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _call_name(node: ast.AST) -> str:
    """``Choice`` for ``click.Choice(...)`` and ``Choice(...)``; "" for anything else."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            return node.func.attr
        if isinstance(node.func, ast.Name):
            return node.func.id
    return ""


def _click_choices(node: ast.AST) -> list[str] | None:
    """Static choices of a ``type=click.Choice([...])`` argument, if any.

    A ``click.Choice`` subclass whose name has ``Choice`` in it counts too, and a second
    literal dict argument adds its keys as accepted spellings (TensorRT-LLM's
    ``ChoiceWithAlias([...], {"trt": "tensorrt"})``). Choices computed at run time (a
    registry's keys) are not static: ``None``.
    """
    if not ("Choice" in _call_name(node) and isinstance(node, ast.Call) and node.args):
        return None
    value = _literal(node.args[0])
    if not isinstance(value, (list, tuple)):
        return None
    choices = {str(v) for v in value}
    if len(node.args) > 1 and isinstance(aliases := _literal(node.args[1]), dict):
        choices |= {str(k) for k in aliases}
    return sorted(choices)


def read_click_command(source: str, function: str) -> dict[str, Any]:
    """The ``@click.option`` flags decorating ``function`` in ``source``."""
    tree = ast.parse(source)
    fn = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function),
        None,
    )
    if fn is None:
        raise RuntimeError(f"no function {function} in the click source")
    flags: dict[str, Any] = {}
    positionals: list[str] = []
    for dec in fn.decorator_list:
        if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)):
            continue
        names = [
            a.value for a in dec.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
        ]
        if dec.func.attr == "argument":
            positionals += names
            continue
        if dec.func.attr != "option":
            continue
        kw = {k.arg: k.value for k in dec.keywords if k.arg}
        opts: list[str] = []
        for name in names:
            # "--flag/--no-flag" declares a boolean pair
            opts += [part for part in name.split("/") if part.startswith("-")]
        is_flag = _literal(kw["is_flag"]) is True if "is_flag" in kw else False
        paired = any("/" in n for n in names)
        entry: dict[str, Any] = {"value": "none" if is_flag or paired else "required"}
        if "type" in kw and (choices := _click_choices(kw["type"])) is not None:
            entry["choices"] = choices
        if "multiple" in kw and _literal(kw["multiple"]) is True:
            entry["action"] = "multiple"
        if "hidden" in kw and _literal(kw["hidden"]) is True:
            entry["hidden"] = True
        longs = [o for o in opts if o.startswith("--")]
        key = (longs or opts)[0]
        if aliases := [o for o in opts if o != key]:
            entry["aliases"] = aliases
        flags[key] = entry
    flags.setdefault("--help", {"value": "none"})
    return {
        "parser": {"class": "click.Command", "allow_abbrev": False},
        "positionals": positionals,
        "flags": dict(sorted(flags.items())),
    }


# ------------------------------------------------- pydantic models (ast): config-file keys


def _class_fields(cls: ast.ClassDef) -> dict[str, dict[str, Any]]:
    """The fields a pydantic model class declares itself: annotated names, not private, not
    ``ClassVar``; with the other names pydantic takes for them (``alias``, and the strings
    of ``validation_alias``, plain or ``AliasChoices``)."""
    fields: dict[str, dict[str, Any]] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name.startswith("_") or "ClassVar" in ast.dump(node.annotation):
            continue
        entry: dict[str, Any] = {"annotation": ast.unparse(node.annotation)}
        aliases: set[str] = set()
        if isinstance(node.value, ast.Call):
            for kw in node.value.keywords:
                if kw.arg in ("alias", "validation_alias"):
                    for sub in ast.walk(kw.value):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            aliases.add(sub.value)
        aliases.discard(name)
        if aliases:
            entry["aliases"] = sorted(aliases)
        fields[name] = entry
    return fields


def _type_aliases(tree: ast.Module, classes: Mapping[str, ast.ClassDef]) -> dict[str, ast.AST]:
    """Module-level names bound to a type that are not classes themselves:
    ``SpeculativeConfig: TypeAlias = Annotated[Union[...], ...]`` or ``CudaGraphConfig =
    DecodeCudaGraphConfig``; an annotation naming one names what its value names."""
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id not in classes:
            found[target.id] = value
    return found


def _models_named(
    annotation: ast.AST, classes: Mapping[str, ast.ClassDef], aliases: Mapping[str, ast.AST]
) -> set[str]:
    """The classes of ``classes`` an annotation names, directly, as a string, or through
    module-level aliases (followed once each)."""
    named: set[str] = set()
    todo, seen = [annotation], set()
    while todo:
        for n in ast.walk(todo.pop()):
            ident = n.id if isinstance(n, ast.Name) else n.value if (
                isinstance(n, ast.Constant) and isinstance(n.value, str)) else None
            if ident in classes:
                named.add(ident)
            elif ident in aliases and ident not in seen:
                seen.add(ident)
                todo.append(aliases[ident])
    return named


def read_pydantic_models(source: str, root: str) -> dict[str, Any]:
    """The keys a mapping validated by pydantic model ``root`` (a class in ``source``) takes.

    Returns ``{"root": root, "models": {class: {field: {...}}}}`` for ``root`` and every
    model of ``source`` its fields name, each class with the fields of its bases in
    ``source`` (bases from other modules contribute nothing: say so where it matters).
    A field whose annotation names models of ``source`` lists them in ``models``: a
    mapping under that key is checked against them (any of them, for a union).
    """
    tree = ast.parse(source)
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    aliases = _type_aliases(tree, classes)

    def fields_of(name: str, seen: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
        cls = classes[name]
        out: dict[str, dict[str, Any]] = {}
        for base in cls.bases:
            base_name = base.id if isinstance(base, ast.Name) else ""
            if base_name in classes and base_name not in seen:
                out.update(fields_of(base_name, seen | {name}))
        out.update(_class_fields(cls))
        return out

    if root not in classes:
        raise RuntimeError(f"no class {root} in the pydantic source")
    models: dict[str, dict[str, Any]] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in models:
            continue
        fields = fields_of(name)
        for entry in fields.values():
            annotation = ast.parse(entry.pop("annotation"), mode="eval")
            named = sorted(_models_named(annotation, classes, aliases) - {name})
            named = [m for m in named if fields_of(m)]
            if named:
                entry["models"] = named
                todo += named
        models[name] = dict(sorted(fields.items()))
    return {"root": root, "models": dict(sorted(models.items()))}


# --------------------------------------------------- parser registries (ast): value names


def _strings(node: ast.AST) -> list[str]:
    """The string literals ``node`` is: ``"a"`` or a list/tuple of them; else none."""
    value = _literal(node)
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def read_registry_names(
    source: str,
    *,
    decorator: str | None = None,
    class_dict: tuple[str, str] | None = None,
    constants: tuple[str, ...] = (),
) -> list[str]:
    """The names ``source`` registers, sorted.

    * ``decorator``: a dotted name (``ToolParserManager.register_module``,
      ``register_reasoning_parser``); every decorator call spelled so contributes its string
      arguments (positional, one string or a list of them, and ``name=``).
    * ``class_dict``: ``(class, attribute)``: the keys of the dict literal that class
      assigns to that attribute in its body (``ToolParserFactory.parsers = {...}``).
    * ``constants``: module-level names bound to a tuple or list of strings that the engine
      accepts too (LMDeploy's legacy reasoning-parser names).

    Names computed at run time are not seen: a source whose registry is built otherwise
    gives none, which callers must treat as "not read", not "none registered".
    """
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if decorator is not None and isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and ast.unparse(dec.func) == decorator:
                    for arg in dec.args:
                        names.update(_strings(arg))
                    for kw in dec.keywords:
                        if kw.arg == "name":
                            names.update(_strings(kw.value))
        if class_dict is not None and isinstance(node, ast.ClassDef) and (
            node.name == class_dict[0]
        ):
            for item in node.body:
                target = item.target if isinstance(item, ast.AnnAssign) else (
                    item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1
                    else None)
                value = item.value if isinstance(item, (ast.AnnAssign, ast.Assign)) else None
                if (isinstance(target, ast.Name) and target.id == class_dict[1]
                        and isinstance(value, ast.Dict)):
                    names.update(k.value for k in value.keys
                                 if isinstance(k, ast.Constant) and isinstance(k.value, str))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in constants for t in node.targets
        ):
            names.update(_strings(node.value))
    return sorted(names)


# ---------------------------------------------------------------- llama-server (--help)

_SPELLING = re.compile(r"-{1,2}[A-Za-z0-9][\w.-]*")


def _help_line(line: str) -> tuple[list[str], str] | None:
    """The spellings of one ``--help`` option line and its metavar ("" when it takes none).

    Spellings are separated by a comma and any spaces; a metavar follows the last
    one after a single space; the description follows after two or more spaces.
    """
    spellings: list[str] = []
    pos = 0
    while m := _SPELLING.match(line, pos):
        spellings.append(m.group(0))
        pos = m.end()
        sep = re.match(r",\s*", line[pos:])
        if not sep:
            break
        pos += sep.end()
    if not spellings:
        return None
    rest = line[pos:]
    if not rest.startswith(" ") or rest.startswith("  "):
        return spellings, ""
    return spellings, re.split(r"\s{2,}", rest.strip(), maxsplit=1)[0]


def read_llama_help(text: str) -> dict[str, Any]:
    """The options of ``llama-server --help``.

    Each option line starts with its spellings separated by ", ", then a metavar
    (``N``, ``FNAME``, ``{a,b}``...) when it takes a value, then the help text.
    """
    flags: dict[str, Any] = {}
    last: dict[str, Any] | None = None
    for raw in text.splitlines():
        if last is not None and (env := re.search(r"\(env: ([A-Z0-9_]+)\)", raw)):
            last["env"] = env.group(1)
        # option lines start at column 0; indented lines continue the help text
        parsed = _help_line(raw.rstrip()) if raw.startswith("-") else None
        if parsed is None:
            continue
        spellings, metavar = parsed
        entry: dict[str, Any] = {"value": "required" if metavar else "none"}
        if m := re.fullmatch(r"[\[<]([\w-]+(?:\|[\w-]+)+)[\]>]|\{([\w-]+(?:,[\w-]+)+)\}", metavar):
            # "[on|off|auto]", "<0|1>" and "{a,b}" list the values the option takes
            entry["choices"] = sorted(re.split(r"[|,]", m.group(1) or m.group(2)))
        longs = [s for s in spellings if s.startswith("--")]
        key = (longs or spellings)[0]
        if aliases := [s for s in spellings if s != key]:
            entry["aliases"] = aliases
        flags[key] = last = entry
    if not flags:
        raise RuntimeError("no options found in the --help text")
    return {
        "parser": {"class": "llama.cpp common_params", "allow_abbrev": False},
        "positionals": [],
        "flags": dict(sorted(flags.items())),
    }


def llama_server_version(binary: Path) -> str:
    """The build ``--version`` prints: ``version: 1234 (abcdef)`` -> ``b1234``;
    ``version: 0.5.0-dev (build 1, commit abcdef)`` -> ``0.5.0-dev+abcdef``."""
    proc = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    out = proc.stdout + proc.stderr
    if m := re.search(r"version:\s*(\d+)\s*\(([0-9a-f]+)\)", out):
        return f"b{m.group(1)}"
    if m := re.search(r"version:\s*(\S+)\s*\(build \d+, commit ([0-9a-f]+)\)", out):
        return f"{m.group(1)}+{m.group(2)}"  # a build outside llama.cpp's own CI numbering
    raise RuntimeError(f"cannot read the version of {binary}")
