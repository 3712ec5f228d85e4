"""Which keys an engine's configuration file takes, at the version pinned in data/.

For an engine whose data file has a ``config_file`` section (``trtllm``: the YAML of
``trtllm-serve --config``, validated by TensorRT-LLM's pydantic ``TorchLlmArgs``), that
section lists, per pydantic model, its field names (with ``aliases``) and, for a field whose
type is one of the models read, ``models``: a mapping under that key is checked against them
(against their union, for a union of models such as the speculative-decoding configs).

What callers may rely on: :func:`config_key_problems` returns an empty list exactly when
every key of ``document``, at every depth the data describes, is a field or alias of its
model; each problem names the dotted path of the key. Keys under a field the data gives no
models for (free-form dicts, models from modules that were not read) are not checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from kimi_modes.deploy.flags.accepted import raw_data


def config_models(engine: str) -> tuple[str, Mapping[str, Mapping[str, Any]]]:
    """``(root model, {model: {field: spec}})`` of ``engine``'s config file.
    :class:`KeyError` when its data has none."""
    section = raw_data(engine).get("config_file")
    if section is None:
        raise KeyError(f"the {engine} data has no config-file keys")
    return section["root"], section["models"]


def config_key_problems(engine: str, document: Mapping[str, Any]) -> list[str]:
    """Every key of ``document`` (a parsed config file of ``engine``) its models do not take."""
    root, models = config_models(engine)
    problems: list[str] = []

    def walk(node: Mapping[str, Any], names: list[str], path: str) -> None:
        # key -> the models a mapping under it is checked against (None: not checked)
        nested: dict[str, set[str] | None] = {}
        for name in names:
            for field, spec in models[name].items():
                for key in (field, *spec.get("aliases", ())):
                    inner = spec.get("models")
                    known = nested.get(key, set())
                    nested[key] = None if inner is None or known is None else known | set(inner)
        for key, value in node.items():
            where = f"{path}{key}"
            if str(key) not in nested:
                near = difflib.get_close_matches(str(key), nested, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                problems.append(f"{where}: not a field of {' | '.join(names)}{hint}")
            elif isinstance(value, Mapping) and (inner := nested[str(key)]):
                walk(value, sorted(inner), f"{where}.")

    walk(document, [root], "")
    return problems
