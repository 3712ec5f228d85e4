"""The one JSONL reader of the measuring commands: objects in file order, blank and comment
lines skipped but counted, every error naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_modes.bench._jsonl import JsonlError, read_objects


def test_objects_in_order_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n  \n# a note\n{"b": 2}\r\n')
    with pytest.raises(JsonlError, match=r"in.jsonl:4: not valid JSON \(Expecting value, "
                       r"column 1\)"):
        list(read_objects(path))
    lines = list(read_objects(path, comments=True))
    assert [(line.number, line.value) for line in lines] == [(1, {"a": 1}), (5, {"b": 2})]
    assert lines[1].where == f"{path}:5"


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": 1}\n{"a": \n', r"in.jsonl:2: not valid JSON \(Expecting value, column 7\)"),
    ('{"a": 1}\n[1, 2]\n', r"in.jsonl:2: each line must be a JSON object"),
    ('"text"\n', r"in.jsonl:1: each line must be a JSON object"),
])
def test_a_bad_line_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(text)
    with pytest.raises(JsonlError, match=message) as info:
        list(read_objects(path))
    assert "\n" not in str(info.value)


def test_lines_are_decoded_as_reached(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    first = next(read_objects(path))
    assert first.value == {"a": 1}


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(JsonlError, match=r"cannot read '.*missing.jsonl': No such file"):
        list(read_objects(tmp_path / "missing.jsonl"))
    with pytest.raises(JsonlError, match="cannot read"):
        list(read_objects(tmp_path))
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(JsonlError, match=r"'.*bin.jsonl' is not UTF-8 text"):
        list(read_objects(binary))
