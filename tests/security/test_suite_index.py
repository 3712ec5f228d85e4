"""The index of the security suite (tests/security/README.md) cannot rot: every
``file::test`` it names is a test function of that file (found by parsing the file, not by
importing it), every case names one, and every test of this directory is in the index."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INDEX = Path(__file__).with_name("README.md")
_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def _rows() -> list[str]:
    return [line for line in INDEX.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith(("| case ", "|---"))]


def test_every_case_names_a_test_that_exists() -> None:
    missing = []
    for row in _rows():
        refs = _REF.findall(row)
        assert refs, f"a case without a test: {row}"
        for file, name in refs:
            path = REPO / file
            if not path.is_file() or name not in _tests_in(path):
                missing.append(f"{file}::{name}")
    assert missing == [], f"the index names tests that do not exist: {missing}"


def test_every_test_here_is_indexed() -> None:
    named = set(_REF.findall(INDEX.read_text(encoding="utf-8")))
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        file = str(path.relative_to(REPO))
        unindexed = {name for name in _tests_in(path) if (file, name) not in named}
        assert unindexed == set(), f"{file}: not in the index: {sorted(unindexed)}"
