"""The results of ``kimi-modes eval``: each model's scores and answers read from lm-eval's
output, the side-by-side table, and the JSON report."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_modes.bench.eval.config import EvalConfig, EvalTarget
from kimi_modes.bench.eval.problems import Problem
from kimi_modes.bench.eval.task import PROMPT, TASK_NAME


@dataclass(slots=True)
class Sample:
    """One problem as one model answered it."""

    index: int
    question: str
    target: str
    response: str
    extracted: str | None
    correct: bool
    strict_correct: bool


@dataclass(slots=True)
class ModelResult:
    """One model's scores: accuracy (flexible extraction) and strict accuracy (the stated
    answer only), each with lm-eval's standard error of the mean; ``wall_s`` is the time of
    its whole run (requests at ``concurrency`` at once)."""

    target: EvalTarget
    n: int
    accuracy: float
    accuracy_stderr: float | None
    strict_accuracy: float
    strict_accuracy_stderr: float | None
    no_answer: int
    wall_s: float
    samples: list[Sample]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.target.model, "extra_body": self.target.extra_body, "n": self.n,
            "accuracy": self.accuracy, "accuracy_stderr": self.accuracy_stderr,
            "strict_accuracy": self.strict_accuracy,
            "strict_accuracy_stderr": self.strict_accuracy_stderr,
            "no_answer": self.no_answer, "wall_s": round(self.wall_s, 3),
            "s_per_problem": round(self.wall_s / self.n, 3) if self.n else None,
            "samples": [
                {"index": s.index, "target": s.target, "extracted": s.extracted,
                 "correct": s.correct, "strict_correct": s.strict_correct,
                 "question": s.question, "response": s.response}
                for s in self.samples
            ],
        }


@dataclass(slots=True)
class EvalReport:
    """A finished comparison: every model's result, in the order asked."""

    config: EvalConfig
    results: list[ModelResult]
    lm_eval_version: str

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "task": TASK_NAME,
            "data_file": str(c.data_file),
            "base_url": c.root,
            "num_fewshot": c.num_fewshot,
            "limit": c.limit,
            "max_tokens": c.max_tokens,
            "concurrency": c.concurrency,
            "prompt": PROMPT,
            "lm_eval_version": self.lm_eval_version,
            "models": {r.target.label: r.to_json() for r in self.results},
        }


def format_table(report: EvalReport) -> str:
    """The side-by-side table: one row per model."""
    rows = [("model", "accuracy", "strict", "n", "no answer", "wall s", "s/problem")]
    for r in report.results:
        rows.append((
            r.target.label,
            _pct(r.accuracy, r.accuracy_stderr),
            _pct(r.strict_accuracy, r.strict_accuracy_stderr),
            str(r.n), str(r.no_answer), f"{r.wall_s:.1f}",
            f"{r.wall_s / r.n:.2f}" if r.n else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pct(value: float, stderr: float | None) -> str:
    return f"{value:.1%}" + (f" ± {stderr:.1%}" if stderr is not None else "")


def model_result(target: EvalTarget, output: dict[str, Any], problems: Sequence[Problem],
                  wall: float) -> ModelResult:
    scores = output["results"][TASK_NAME]
    by_filter: dict[str, dict[int, dict[str, Any]]] = {}
    for sample in output["samples"][TASK_NAME]:
        by_filter.setdefault(sample["filter"], {})[int(sample["doc_id"])] = sample
    flexible, strict = by_filter["flexible-extract"], by_filter["strict-match"]
    samples = []
    for doc_id in sorted(flexible):
        one = flexible[doc_id]
        response = one["resps"][0][0] if one["resps"] and one["resps"][0] else ""
        extracted = one["filtered_resps"][0]
        samples.append(Sample(
            index=doc_id, question=problems[doc_id].question, target=one["target"],
            response=response if isinstance(response, str) else "",
            extracted=None if extracted == "[invalid]" else extracted,
            correct=bool(one["exact_match"]),
            strict_correct=bool(strict[doc_id]["exact_match"]),
        ))

    def stderr(key: str) -> float | None:
        value = scores.get(key)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    return ModelResult(
        target=target, n=len(samples),
        accuracy=float(scores["exact_match,flexible-extract"]),
        accuracy_stderr=stderr("exact_match_stderr,flexible-extract"),
        strict_accuracy=float(scores["exact_match,strict-match"]),
        strict_accuracy_stderr=stderr("exact_match_stderr,strict-match"),
        no_answer=sum(s.extracted is None for s in samples), wall_s=wall, samples=samples,
    )


def save_report(report: EvalReport, path: str | Path) -> None:
    """Write the report as JSON (:class:`OSError` if it cannot)."""
    Path(path).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
