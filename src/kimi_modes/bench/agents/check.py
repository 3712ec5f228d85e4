"""The answer checkers of ``kimi-modes bench agents``: each task says how its answer is judged.

A checker is a JSON object with one kind key (and that kind's options); a task may give a
list of them, all of which must pass:

- ``{"contains": ["a", "b"], "ignore_case": false}``: every string occurs in the answer;
- ``{"regex": "..."}``: Python ``re.search`` finds the pattern (flags inline: ``(?i)``);
- ``{"equals": "...", "ignore_case": false}``: the answer, stripped of surrounding
  whitespace, is the string (stripped too);
- ``{"number": 42, "tolerance": 0.001}``: the *last* number in the answer (``1,234.5``,
  ``-3``, ``2e-5``; thousands commas allowed) is within ``tolerance`` (absolute, default 0)
  of the value;
- ``{"python": "def check(answer): ...", "timeout": 10}``: the user's own function, run in a
  separate Python process (``sys.executable -c``) with the answer on stdin. It returns a truth
  value, or ``(passed, reason)``. An exception, a missing ``check``, a crash of the process or
  running past ``timeout`` seconds (default 10; the process is killed) is a failed check with
  the reason recorded — never an error of the benchmark.

:func:`parse_checkers` validates a checker spec when the task file is read (regexes compiled,
Python code parsed, nothing run); :func:`run_checkers` judges an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

#: The kinds, in the order their names are listed in messages.
KINDS = ("contains", "regex", "equals", "number", "python")
_OPTIONS = {"contains": {"ignore_case"}, "regex": set(), "equals": {"ignore_case"},
            "number": {"tolerance"}, "python": {"timeout"}}
DEFAULT_PYTHON_TIMEOUT = 10.0
_REASON_CHARS = 300

# A number as people and models write it: an optional sign (not a hyphen inside a word or
# range), digits with optional thousands commas, an optional fraction and exponent.
_NUMBER = re.compile(
    r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\d])"
    r"|(?<![\w.])[-+−]?\.\d+(?:[eE][-+]?\d+)?")

# Runs in the checker process: the user's code from argv, the answer from stdin. The user's
# prints go to stderr so that stdout carries only the verdict.
_RUNNER = r"""
import json, sys
code = sys.argv[1]
answer = sys.stdin.read()
out = sys.stdout
sys.stdout = sys.stderr
namespace = {"__name__": "__checker__"}
exec(compile(code, "<checker>", "exec"), namespace)
check = namespace.get("check")
if not callable(check):
    raise SystemExit("the checker defines no function check(answer)")
value = check(answer)
reason = ""
if isinstance(value, tuple) and len(value) == 2:
    value, reason = value
out.write(json.dumps({"passed": bool(value), "reason": str(reason or "")}))
out.flush()
"""


class CheckerError(ValueError):
    """A checker spec that cannot be used; the message is one line."""


@dataclass(frozen=True, slots=True)
class Checker:
    """One validated checker: its ``kind``, the expected ``value`` and its options."""

    kind: str
    value: Any
    ignore_case: bool = False
    tolerance: float = 0.0
    timeout: float = DEFAULT_PYTHON_TIMEOUT

    def to_dict(self) -> dict[str, Any]:
        """The spec as it would be written in a task file."""
        spec: dict[str, Any] = {self.kind: self.value}
        if self.kind in ("contains", "equals") and self.ignore_case:
            spec["ignore_case"] = True
        if self.kind == "number" and self.tolerance:
            spec["tolerance"] = self.tolerance
        if self.kind == "python" and self.timeout != DEFAULT_PYTHON_TIMEOUT:
            spec["timeout"] = self.timeout
        return spec


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on one answer: ``passed`` and, when it failed (or the checker said so),
    a one-line ``reason``."""

    passed: bool
    reason: str = ""


def parse_checkers(spec: Any) -> list[Checker]:
    """The checkers of a task's ``check`` value (one object or a non-empty list of them).
    Raises :class:`CheckerError` for anything malformed."""
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise CheckerError("check: an empty list")
    return [_parse_one(item) for item in items]


def _parse_one(spec: Any) -> Checker:
    if not isinstance(spec, dict):
        raise CheckerError(f"check: a checker is a JSON object, not {type(spec).__name__}")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        found = "none" if not kinds else ", ".join(kinds)
        raise CheckerError(f"check: a checker has exactly one of {', '.join(KINDS)} "
                           f"(found {found})")
    kind = kinds[0]
    unknown = set(spec) - {kind} - _OPTIONS[kind]
    if unknown:
        raise CheckerError(f"check: {kind} takes no {', '.join(sorted(unknown))}")
    value = spec[kind]
    ignore_case = spec.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise CheckerError("check: ignore_case must be true or false")
    if kind == "contains":
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v for v in value)):
            raise CheckerError("check: contains takes a non-empty string or list of strings")
        return Checker(kind, list(value), ignore_case=ignore_case)
    if kind in ("regex", "equals", "python") and not isinstance(value, str):
        raise CheckerError(f"check: {kind} takes a string")
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise CheckerError(f"check: bad regex {value!r}: {exc}") from None
        return Checker(kind, value)
    if kind == "equals":
        return Checker(kind, value, ignore_case=ignore_case)
    if kind == "number":
        tolerance = spec.get("tolerance", 0.0)
        if not _is_number(value):
            raise CheckerError("check: number takes a number")
        if not _is_number(tolerance) or tolerance < 0:
            raise CheckerError("check: tolerance must be a number >= 0")
        return Checker(kind, float(value), tolerance=float(tolerance))
    timeout = spec.get("timeout", DEFAULT_PYTHON_TIMEOUT)
    if not _is_number(timeout) or timeout <= 0:
        raise CheckerError("check: timeout must be a number of seconds > 0")
    try:
        compile(value, "<checker>", "exec")
    except SyntaxError as exc:
        raise CheckerError(f"check: the python checker does not compile: {exc.msg} "
                           f"(line {exc.lineno})") from None
    return Checker(kind, value, timeout=float(timeout))


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (thousands commas dropped), or ``None``."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace(",", "").replace("−", "-")
    try:
        return float(raw)
    except ValueError:  # pragma: no cover - the pattern only matches floats
        return None


async def run_checkers(checkers: list[Checker], answer: str) -> CheckResult:
    """Judge ``answer`` with every checker; the first failure is the verdict."""
    reasons: list[str] = []
    for checker in checkers:
        result = await run_checker(checker, answer)
        if not result.passed:
            return result
        if result.reason:
            reasons.append(result.reason)
    return CheckResult(True, "; ".join(reasons))


async def run_checker(checker: Checker, answer: str) -> CheckResult:
    """Judge ``answer`` with one checker (never raises for a bad answer or checker code)."""
    if checker.kind == "contains":
        hay = answer.casefold() if checker.ignore_case else answer
        missing = [s for s in checker.value
                   if (s.casefold() if checker.ignore_case else s) not in hay]
        if missing:
            return CheckResult(False, "missing " + ", ".join(repr(s) for s in missing))
        return CheckResult(True)
    if checker.kind == "regex":
        if re.search(checker.value, answer) is None:
            return CheckResult(False, f"no match for /{checker.value}/")
        return CheckResult(True)
    if checker.kind == "equals":
        got, want = answer.strip(), str(checker.value).strip()
        if checker.ignore_case:
            got, want = got.casefold(), want.casefold()
        if got != want:
            return CheckResult(False, f"answer {_short(answer.strip())!r} is not {want!r}")
        return CheckResult(True)
    if checker.kind == "number":
        got_number = last_number(answer)
        if got_number is None:
            return CheckResult(False, "no number in the answer")
        if not math.isclose(got_number, checker.value, rel_tol=0.0,
                            abs_tol=checker.tolerance):
            within = f" ± {_fmt(checker.tolerance)}" if checker.tolerance else ""
            return CheckResult(False, f"last number {_fmt(got_number)} is not "
                               f"{_fmt(checker.value)}{within}")
        return CheckResult(True)
    return await _run_python(checker.value, answer, checker.timeout)


async def _run_python(code: str, answer: str, limit: float) -> CheckResult:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RUNNER, code, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            start_new_session=True)
    except OSError as exc:
        return CheckResult(False, f"python checker could not start: {exc.strerror}")
    try:
        async with asyncio.timeout(limit):
            out, err = await process.communicate(answer.encode("utf-8"))
    except TimeoutError:
        _kill(process)
        await process.wait()
        return CheckResult(False, f"python checker timed out after {limit:g} s")
    except BaseException:  # cancelled: do not leave the checker running
        _kill(process)
        with contextlib.suppress(BaseException):
            await process.wait()
        raise
    if process.returncode != 0:
        why = _last_line(err) or f"exit status {process.returncode}"
        return CheckResult(False, f"python checker failed: {why}")
    try:
        verdict = json.loads(out.decode("utf-8", errors="replace"))
        return CheckResult(bool(verdict["passed"]), _short(str(verdict.get("reason", ""))))
    except (ValueError, KeyError, TypeError):
        return CheckResult(False, "python checker gave no verdict")


def _kill(process: asyncio.subprocess.Process) -> None:
    # The checker runs in a session of its own: kill its whole process group, so that a
    # child it started cannot keep the pipes (and us) waiting.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, 9)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return _short(lines[-1]) if lines else ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + " …"


def _fmt(value: float) -> str:
    return f"{value:.15g}"
