"""The tool-call verifier's figures, as Moonshot's K2-Vendor-Verifier (K2VV) defines them.

**ToolCall-Trigger Similarity.** Each response either triggers a tool call or not; so does the
ground truth (a reference endpoint's response, a reference results file, or the line's label).
``TP``: both call; ``FP``: the response calls, the truth does not; ``FN``: the truth calls, the
response does not; ``TN``: neither. ``tool_call_precision = TP/(TP+FP)``,
``tool_call_recall = TP/(TP+FN)``, ``tool_call_f1`` their harmonic mean (0 where a denominator
is 0; 1 for all three when neither side ever calls). A response *triggers* when its
``finish_reason`` is ``"tool_calls"`` — or, one addition to K2VV, when the request forced a
named function and the response carries tool calls but finishes with ``"stop"`` (what vLLM and
OpenAI answer to a named ``tool_choice``). A failed request triggers nothing, as in K2VV.

**ToolCall-Schema Accuracy.** Over the responses that trigger
(``count_finish_reason_tool_calls``), the share whose every call names a declared function,
has arguments that parse as a JSON object and satisfy that function's JSON schema
(``count_successful_tool_call``): ``schema_accuracy``. A triggering response without any tool
call fails the check.

**Thresholds.** Moonshot accepts a deployment whose ``tool_call_f1`` against its official API is
at least 80 % for Kimi-K2-Instruct-0905 and 73 % for K2-Thinking; K2VV states no threshold for
schema accuracy (the official API scores 100 %) and none for K2.5 and the later families
(K2.6, K2.7-Code, K3), where K2-Thinking's is used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kimi_modes.bench.verify.cases import forced_function
from kimi_modes.protocol.families import Family
from kimi_modes.protocol.schema import ToolSet

#: Moonshot's tool_call_f1 acceptance thresholds by model family (K2VV README); the families
#: K2VV names no bar for (K2.5 and later) get K2-Thinking's.
F1_THRESHOLDS: dict[Family, float] = {
    family: 0.80 if family is Family.K2_INSTRUCT else 0.73 for family in Family
}
TOOL_CALLS = "tool_calls"

# ToolSet's error sentences start with these; the summary counts errors by kind.
_ERROR_KINDS = (
    ("unknown tool", "unknown_tool"),
    ("the call names no function", "no_name"),
    ("arguments are empty", "invalid_json"),
    ("arguments are not valid JSON", "invalid_json"),
    ("arguments are nested too deeply", "invalid_json"),
    ("arguments must be a JSON object", "not_an_object"),
    ("schema violation", "schema_violation"),
)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What one response says: its finish reason, whether it triggers a tool call, whether
    those calls are valid (``None`` when it does not trigger) and each invalid call's error
    (``"call N (name): sentence"``), with the errors' kinds."""

    finish_reason: str | None
    triggered: bool
    valid: bool | None
    errors: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


def judge(request: Mapping[str, Any], response: Mapping[str, Any] | None) -> Judgement:
    """Judge ``response`` (a parsed non-streaming chat completion, ``None`` for a failed
    request) to ``request`` (the body sent) as the module docstring says."""
    if not response:
        return Judgement(None, False, None)
    choices = response.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, Mapping) else {}
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    message = choice.get("message")
    calls = message.get("tool_calls") if isinstance(message, Mapping) else None
    calls = calls if isinstance(calls, list) else []
    triggered = finish == TOOL_CALLS or (
        finish == "stop" and bool(calls) and forced_function(request) is not None
    )
    if not triggered:
        return Judgement(finish, False, None)
    if not calls:
        return Judgement(finish, True, False,
                         (f"finish_reason is {finish} but the message has no tool_calls",),
                         ("no_tool_calls",))
    tools = request.get("tools")
    toolset = ToolSet(tools if isinstance(tools, list) else None)
    errors: list[str] = []
    kinds: list[str] = []
    for i, call in enumerate(calls):
        name, arguments = _name_and_arguments(call)
        error = (
            "the call is not a function call" if arguments is None
            else "the request declared no tools" if not toolset.declared
            else toolset.validate(name, arguments)
        )
        if error is not None:
            errors.append(f"call {i} ({name or '?'}): {error}")
            kinds.append(_kind(error))
    return Judgement(finish, True, not errors, tuple(errors), tuple(kinds))


def _name_and_arguments(call: Any) -> tuple[str | None, str | None]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        return None, None
    name = function.get("name")
    arguments = function.get("arguments")
    if isinstance(arguments, Mapping):  # some servers send an object; K2VV accepts it
        arguments = json.dumps(arguments)
    return (name if isinstance(name, str) else None,
            arguments if isinstance(arguments, str) else None)


def _kind(error: str) -> str:
    for prefix, kind in _ERROR_KINDS:
        if error.startswith(prefix):
            return kind
    return "other"


@dataclass(slots=True)
class Confusion:
    """Trigger agreement counts and K2VV's figures from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: bool, truth: bool) -> None:
        if predicted and truth:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def compared(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        if self.tp + self.fp + self.fn == 0:
            return 1.0
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        if self.tp + self.fp + self.fn == 0:
            return 1.0
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(slots=True)
class Thresholds:
    """The bars a run must clear: ``tool_call_f1`` (a fraction) and, when set,
    ``schema_accuracy``; ``model_family`` says where the F1 bar came from (``None``: given)."""

    tool_call_f1: float
    schema_accuracy: float | None = None
    model_family: str | None = None


@dataclass(slots=True)
class Tally:
    """Running counts over the records of a run (see :func:`summarize`)."""

    success: int = 0
    failure: int = 0
    finish: dict[str, int] = field(default_factory=dict)
    triggered: int = 0
    valid: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: {
        "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    confusion: Confusion = field(default_factory=Confusion)
    reference_failures: int = 0
    unlabeled: int = 0


def summarize(records: Sequence[Mapping[str, Any]], *, head: Mapping[str, Any],
              thresholds: Thresholds) -> dict[str, Any]:
    """K2VV's summary of a run's records (the keys of K2VV's ``summary.json`` first, then the
    figures of its README, then ours), with the verdict. ``head`` (model, endpoints, times)
    goes first. Each record holds K2VV's ``status``, ``finish_reason``, ``response``, plus our
    ``tool_call_triggered``, ``tool_calls_valid``, ``tool_call_error_kinds`` and ``truth``
    (``True``/``False``, ``None`` when not known; ``truth_failed`` when the reference failed).
    """
    t = Tally()
    for r in records:
        if r.get("status") == "success":
            t.success += 1
        else:
            t.failure += 1
        finish = r.get("finish_reason")
        if isinstance(finish, str):
            t.finish[finish] = t.finish.get(finish, 0) + 1
        _add_usage(t.usage, r.get("response"))
        if r.get("tool_call_triggered"):
            t.triggered += 1
            if r.get("tool_calls_valid"):
                t.valid += 1
            for kind in r.get("tool_call_error_kinds") or ():
                t.error_kinds[kind] = t.error_kinds.get(kind, 0) + 1
        truth = r.get("truth")
        if truth is None:
            if r.get("truth_failed"):
                t.reference_failures += 1
            else:
                t.unlabeled += 1
        else:
            t.confusion.add(bool(r.get("tool_call_triggered")), bool(truth))
    c = t.confusion
    others = {k: v for k, v in sorted(t.finish.items()) if k not in ("stop", TOOL_CALLS)}
    f1 = c.f1 if c.compared else None
    accuracy = t.valid / t.triggered if t.triggered else None
    summary: dict[str, Any] = {
        **head,
        "success_count": t.success,
        "failure_count": t.failure,
        "finish_stop": t.finish.get("stop", 0),
        "finish_tool_calls": t.finish.get(TOOL_CALLS, 0),
        "finish_others": sum(others.values()),
        "finish_others_detail": others,
        "schema_validation_error_count": t.triggered - t.valid,
        "successful_tool_call_count": t.valid,
        "usage": t.usage,
        "count_finish_reason_tool_calls": t.triggered,
        "count_successful_tool_call": t.valid,
        "schema_accuracy": accuracy,
        "schema_error_kinds": dict(sorted(t.error_kinds.items())),
        "tool_call_precision": c.precision if c.compared else None,
        "tool_call_recall": c.recall if c.compared else None,
        "tool_call_f1": f1,
        "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
        "compared_count": c.compared,
        "reference_failure_count": t.reference_failures,
        "unlabeled_count": t.unlabeled,
        "thresholds": {"tool_call_f1": thresholds.tool_call_f1,
                       "schema_accuracy": thresholds.schema_accuracy,
                       "model_family": thresholds.model_family},
    }
    problems = verdict_problems(summary, thresholds)
    summary["passed"] = not problems
    summary["problems"] = problems
    return summary


def verdict_problems(summary: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """Why a run does not pass (empty: it passes): F1 below its bar or unknown, schema
    accuracy below its bar (when one is set and any call was made), requests that failed."""
    problems = []
    f1 = summary["tool_call_f1"]
    if f1 is None:
        problems.append("no tool_call_f1: no request had a ground truth to compare with")
    elif f1 < thresholds.tool_call_f1:
        problems.append(f"tool_call_f1 {_pct(f1)} < {_pct(thresholds.tool_call_f1)}")
    accuracy = summary["schema_accuracy"]
    if (thresholds.schema_accuracy is not None and accuracy is not None
            and accuracy < thresholds.schema_accuracy):
        problems.append(f"schema_accuracy {_pct(accuracy)} < {_pct(thresholds.schema_accuracy)}")
    if summary["failure_count"]:
        problems.append(f"{summary['failure_count']} request(s) failed "
                        "(re-run with --incremental to retry only those)")
    if summary["reference_failure_count"]:
        problems.append(f"{summary['reference_failure_count']} reference request(s) failed "
                        "(re-run with --incremental to retry only those)")
    return problems


def _add_usage(total: dict[str, int], response: Any) -> None:
    usage = response.get("usage") if isinstance(response, Mapping) else None
    if isinstance(usage, Mapping):
        for key in total:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] += value


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The printed table of a summary, from its title rule to its closing rule."""
    th = summary["thresholds"]
    ref = summary.get("reference") or {}
    truth = {"endpoint": f"reference endpoint ({ref.get('model')})",
             "results": f"reference results ({ref.get('path')})",
             "labels": "labels in the input file"}.get(str(ref.get("kind")), "-")
    lines = [" Tool-Call Verification ".center(60, "=")]
    rows: list[tuple[str, Any]] = [
        ("Model:", summary.get("model")),
        ("Ground truth:", truth),
        ("Requests:", summary["total"]),
        ("Successful / failed requests:",
         f"{summary['success_count']} / {summary['failure_count']}"),
        ("Finish stop / tool_calls / others:",
         f"{summary['finish_stop']} / {summary['finish_tool_calls']} / "
         f"{summary['finish_others']}"),
    ]
    lines += [_row(k, v) for k, v in rows]
    lines.append(" ToolCall-Trigger Similarity ".center(60, "-"))
    lines += [
        _row("Compared with the truth:", summary["compared_count"]),
        _row("TP / FP / FN / TN:",
             f"{summary['tp']} / {summary['fp']} / {summary['fn']} / {summary['tn']}"),
        _row("tool_call_precision:", _pct(summary["tool_call_precision"])),
        _row("tool_call_recall:", _pct(summary["tool_call_recall"])),
        _row("tool_call_f1:", _pct(summary["tool_call_f1"])),
        _row("  threshold:", _pct(th["tool_call_f1"])
             + (f" ({th['model_family']})" if th.get("model_family") else "")),
    ]
    lines.append(" ToolCall-Schema Accuracy ".center(60, "-"))
    kinds = ", ".join(f"{k} {v}" for k, v in summary["schema_error_kinds"].items()) or "-"
    lines += [
        _row("count_finish_reason_tool_calls:", summary["count_finish_reason_tool_calls"]),
        _row("count_successful_tool_call:", summary["count_successful_tool_call"]),
        _row("schema_accuracy:", _pct(summary["schema_accuracy"])),
        _row("  threshold:", _pct(th["schema_accuracy"])),
        _row("Errors by kind:", kinds),
    ]
    lines.append("-" * 60)
    lines.append(_row("Verdict:", "PASS" if summary["passed"] else "FAIL"))
    lines += [f"  {p}" for p in summary["problems"]]
    lines.append("=" * 60)
    return lines


def _row(label: str, value: Any) -> str:
    return f"{label:<36}{value if value is not None else '-'}"
