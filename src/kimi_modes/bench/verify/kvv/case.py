"""A KVV check as data: one request and what its answer must be, run non-streamed and
streamed as KVV's k3_features conftest runs every test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kimi_modes.bench.verify.kvv.probe import Answer, Check, Prober

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
#: A check's verdict on an answer: ``None`` when it passes, else what is wrong.
Verdict = Callable[[Answer], str | None]


@dataclass(frozen=True, slots=True)
class Case:
    """One request and what its answer must be."""

    name: str
    body: dict[str, Any]
    verdict: Verdict


def refused(answer: Answer) -> str | None:
    return None if answer.status == 400 else f"not refused with 400: {answer.describe()}"


def calls_one_of(*names: str) -> Verdict:
    """Accepted, ``finish_reason`` ``tool_calls``, the first call names one of ``names``
    (any name when none is given)."""
    def verdict(answer: Answer) -> str | None:
        if not answer.accepted:
            return answer.describe()
        if answer.finish_reason != "tool_calls" or not answer.call_names:
            return f"no tool call (finish_reason {answer.finish_reason!r})"
        if names and answer.call_names[0] not in names:
            return f"called {answer.call_names[0]!r}, not one of {list(names)}"
        return None
    return verdict


async def run_cases(p: Prober, suite: str, cases: list[Case]) -> list[Check]:
    """Each case non-streamed and streamed."""
    checks: list[Check] = []
    for case in cases:
        for stream in (False, True):
            answer = await p.post(case.body, stream=stream)
            problem = case.verdict(answer)
            mode = "stream" if stream else "nostream"
            checks.append(Check(suite, f"{case.name} [{mode}]", problem is None,
                                problem or answer.describe()))
    return checks
