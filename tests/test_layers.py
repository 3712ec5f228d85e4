"""The shape of the code: dependencies point down, nothing imports upward, no import cycles
(type-only imports included), no file in src/ over 600 lines. Read from the source with
``ast``, so it holds for every module whether or not a test imports it."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Each top-level part of the package and its layer: a module may import only from lower
#: layers (and from its own part). The package root holds only ``__version__``.
LAYERS: dict[str, int] = {
    "kimi_modes": 0, "protocol": 0, "endpoint": 0,
    "engines": 1, "simulator": 1, "runs": 1, "tools": 1, "bench": 1,
    "config": 2, "modes": 2, "train": 2,
    "assembly": 3, "deploy": 3,
    "server": 4, "terminal": 4,
    "cli": 5, "__main__": 6,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str:
    """The module that ``name`` (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_owner(a.name) for a in node.names if a.name.startswith("kimi_modes")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base.startswith("kimi_modes"):
                found |= {_owner(f"{base}.{a.name}") for a in node.names}
    return found - {""}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_part_has_a_layer() -> None:
    assert {_part(m) for m in MODULES} <= set(LAYERS)


def test_nothing_imports_upward_or_sideways() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items() for target in targets
        if _part(target) != _part(module) and LAYERS[_part(target)] >= LAYERS[_part(module)]
        and _part(target) != "kimi_modes"
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH.get(node, ()):
            if nxt == node:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_no_file_over_600_lines() -> None:
    sizes = collections.Counter({str(p.relative_to(SRC)): len(p.read_text().splitlines())
                                 for p in MODULES.values()})
    assert [f for f, n in sizes.items() if n > 600] == []


def test_test_file_names_are_unique() -> None:
    # tests/ folders are not packages: two test files with one name cannot both be imported.
    names = collections.Counter(p.name for p in (SRC.parent / "tests").rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
