"""The one reader of the measuring commands' JSONL input (problems, tool-call cases, agent
tasks, serving requests): a JSON object a line, each error naming the file and line.

Each command checks its own keys; this module reads the file, skips what is not data and
decodes the rest, so every command reports a bad file the same way::

    cannot read 'tasks.jsonl': No such file or directory
    'tasks.jsonl' is not UTF-8 text
    tasks.jsonl:3: not valid JSON (Expecting ',' delimiter, column 17)
    tasks.jsonl:4: each line must be a JSON object
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any


class JsonlError(ValueError):
    """The file cannot be read as JSONL; the message is one line and names the file (and the
    line, ``FILE:LINE: what``)."""


@dataclass(frozen=True, slots=True)
class JsonLine:
    """One decoded line: its 1-based ``number``, its object, and ``where`` (``FILE:LINE``) to
    start the caller's own error messages about it."""

    number: int
    value: dict[str, Any]
    where: str


def read_objects(path: Path | Traversable, *, comments: bool = False) -> Iterator[JsonLine]:
    """The lines of ``path`` as JSON objects, in file order. Blank lines (and, with
    ``comments``, lines starting with ``#``) are skipped but still counted. The file is read
    whole when iteration starts; each line is decoded when reached, so a caller that stops
    early never fails on a later line. :class:`JsonlError` as the module shows."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JsonlError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise JsonlError(f"{str(path)!r} is not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or (comments and stripped.startswith("#")):
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JsonlError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(value, dict):
            raise JsonlError(f"{where}: each line must be a JSON object")
        yield JsonLine(number, value, where)
