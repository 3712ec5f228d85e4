"""The problems of ``kimi-modes eval``: read from a JSONL file (``question`` and ``answer``:
GSM8K's text ending in ``#### <number>``, or a plain number) and written out again as the
normalised files lm-eval reads."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_modes.bench._jsonl import JsonlError, read_objects
from kimi_modes.bench.eval.answers import canonical_number
from kimi_modes.bench.eval.config import EvalError

_CALCULATOR_RE = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: <<3*12=36>>


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: the question, the worked solution (GSM8K's text before ``####``, the
    calculator annotations removed; empty for a plain-number answer) and the target number."""

    question: str
    rationale: str
    target: str

    def to_doc(self) -> dict[str, str]:
        """The row lm-eval reads (every value a string, so Arrow infers one type)."""
        return {"question": self.question, "rationale": self.rationale, "target": self.target}


def parse_target(answer: Any) -> tuple[str, str]:
    """``(rationale, target)`` of an ``answer`` field: GSM8K's text ending in ``#### N``, or a
    number (JSON number or string). :class:`ValueError` says what is wrong."""
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise ValueError("'answer' must be a string or a number")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise ValueError("'answer' must be a finite number")
    text = str(answer)
    rationale, sep, final = text.rpartition("####")
    if not sep:
        rationale, final = "", text
    try:
        target = canonical_number(final.strip())
    except ValueError:
        raise ValueError(
            "'answer' must end with '#### <number>' (GSM8K's format) or be a number"
        ) from None
    return _CALCULATOR_RE.sub("", rationale).strip(), target


def load_problems(path: str | Path) -> list[Problem]:
    """Read a JSONL file of problems (blank lines skipped). :class:`EvalError` names the file
    and line of the first problem found."""
    problems = []
    try:
        for line in read_objects(Path(path)):
            row, where = line.value, line.where
            question = row.get("question")
            if not isinstance(question, str) or not question.strip():
                raise EvalError(f"{where}: 'question' must be a non-empty string")
            if "answer" not in row:
                raise EvalError(f"{where}: 'answer' is missing")
            try:
                rationale, target = parse_target(row["answer"])
            except ValueError as exc:
                raise EvalError(f"{where}: {exc}") from None
            problems.append(Problem(question.strip(), rationale, target))
    except JsonlError as exc:
        raise EvalError(str(exc)) from None
    if not problems:
        raise EvalError(f"the data file {str(path)!r} holds no problems")
    return problems


def write_task_files(problems: Sequence[Problem], folder: Path, *, num_fewshot: int = 0,
                     limit: int | None = None) -> tuple[Path, Path | None, int]:
    """Write the test problems (and the few-shot ones: the first ``num_fewshot``, left out of
    the test) as JSONL under ``folder``; ``(test_file, fewshot_file, n_test)``."""
    if num_fewshot < 0:
        raise EvalError("--num-fewshot must be >= 0")
    if limit is not None and limit < 1:
        raise EvalError("--limit must be at least 1")
    shots, tests = list(problems[:num_fewshot]), list(problems[num_fewshot:])
    if not tests:
        raise EvalError(f"the data file has {len(problems)} problem(s): none is left to test "
                        f"after {num_fewshot} few-shot example(s)")
    tests = tests[:limit] if limit is not None else tests

    def write(name: str, rows: Sequence[Problem]) -> Path:
        path = folder / name
        path.write_text("".join(json.dumps(p.to_doc()) + "\n" for p in rows), encoding="utf-8")
        return path

    return write("test.jsonl", tests), write("fewshot.jsonl", shots) if shots else None, len(tests)
