"""The pre-flight suites of Moonshot's Kimi-Vendor-Verifier (KVV), run our way against any
OpenAI-compatible endpoint over HTTP (``kimi-modes verify tools --suite ...``).

Suites (each a list of checks, in :mod:`kimi_modes.bench.verify.kvv`):

- ``params`` (KVV ``tests/params`` and ``verify_params.py``): the fixed sampling parameters,
  per family (:mod:`.kvv.params`); not applicable to K2-Instruct and K2-Thinking.
- ``schema`` (KVV ``tests/tool_call_json_schema``): forced calls validated (:mod:`.kvv.schema`).
- ``k3`` (KVV ``tests/k3_features``, K3 only): ``tool_choice``, ``response_format``,
  dynamic tools and thinking effort (:mod:`.kvv.k3`).
- ``prompt-tokens`` (KVV ``tests/prompt_tokens``, text and image cases):
  ``usage.prompt_tokens`` within KVV's tolerance (:mod:`.kvv.prompt_tokens`).

KVV publishes no numeric bar for these suites ("run formal benchmarks only after all tests
pass"), so a suite passes when every check passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_modes.bench._http import client_session, first_model
from kimi_modes.bench.verify.client import Endpoint
from kimi_modes.bench.verify.kvv.k3 import k3_suite
from kimi_modes.bench.verify.kvv.params import params_suite, params_table
from kimi_modes.bench.verify.kvv.probe import Check, Prober
from kimi_modes.bench.verify.kvv.prompt_tokens import (
    MAX_PROMPT_TOKEN_OVERCOUNT,
    load_cases,
    prompt_tokens_suite,
)
from kimi_modes.bench.verify.kvv.schema import load_schemas, schema_suite
from kimi_modes.protocol.families import Family

SUITES = ("params", "schema", "k3", "prompt-tokens")
_BAR = "every check passes (KVV publishes no numeric threshold for this suite)"


def suite_bar(suite: str, family: Family) -> str:
    """What ``suite`` must reach for ``family`` (or why it does not apply)."""
    if suite == "k3" and family is not Family.K3:
        return "not applicable: KVV's k3_features apply to K3 only"
    if suite == "params" and params_table(family) is None:
        return (f"not applicable: Moonshot fixes no sampling parameter of {family} "
                "(KVV's tables are K2.5's and K3's)")
    if suite == "prompt-tokens":
        return (f"every case within [expected, expected+{MAX_PROMPT_TOKEN_OVERCOUNT}] "
                "(KVV's tolerance; no per-model threshold published)")
    return _BAR


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """What the suites need beyond the endpoint."""

    family: Family
    data: Path | None = None
    think_mode: str = "opensource"
    max_tokens: int = 2048
    timeout: float = 120.0


async def _suite(p: Prober, suite: str, options: SuiteOptions) -> tuple[list[Check], str | None]:
    family = options.family
    if suite == "params" and params_table(family) is not None:
        return await params_suite(p, family, options.think_mode), None
    if suite == "schema":
        return await schema_suite(p, load_schemas(options.data), options.max_tokens), None
    if suite == "k3" and family is Family.K3:
        return await k3_suite(p, options.think_mode, options.max_tokens), None
    if suite == "prompt-tokens":
        cases = load_cases(options.data)
        note = None if cases else "no cases: give --data with KVV's prompt_token_cases"
        return await prompt_tokens_suite(p, cases), note
    return [], None


async def run_suites(endpoint: Endpoint, suites: Sequence[str],
                     options: SuiteOptions) -> dict[str, Any]:
    """Run ``suites`` (names of :data:`SUITES`) and return the summary: per suite its checks,
    counts, bar and verdict (``passed`` ``None`` when the suite does not apply or has no
    cases), and ``passed`` overall."""
    async with client_session() as session:
        model = endpoint.model or await first_model(session, endpoint.root, endpoint.headers)
        p = Prober(session, Endpoint(endpoint.base_url, model, endpoint.api_key),
                   options.timeout)
        result: dict[str, Any] = {"model": model, "model_family": options.family.value,
                                  "suites": {}}
        for suite in suites:
            checks, note = await _suite(p, suite, options)
            passed = sum(c.passed for c in checks)
            result["suites"][suite] = {
                "bar": suite_bar(suite, options.family), "note": note, "total": len(checks),
                "passed_checks": passed, "passed": (passed == len(checks)) if checks else None,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail}
                           for c in checks]}
    result["passed"] = all(s["passed"] is not False for s in result["suites"].values())
    return result


def run(endpoint: Endpoint, suites: Sequence[str], options: SuiteOptions) -> dict[str, Any]:
    """:func:`run_suites` from synchronous code."""
    return asyncio.run(run_suites(endpoint, suites, options))


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The human summary: one block per suite, failed checks listed, the verdict."""
    lines = [f"Kimi-Vendor-Verifier suites: {result['model']} "
             f"(family {result['model_family']})"]
    for name, s in result["suites"].items():
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[s["passed"]]
        lines.append(f"[{name}] {s['passed_checks']}/{s['total']} checks passed  {verdict}")
        lines.append(f"  bar: {s['bar']}")
        if s["note"]:
            lines.append(f"  note: {s['note']}")
        lines += [f"  failed: {c['name']}: {c['detail']}" for c in s["checks"]
                  if not c["passed"]]
    lines.append("Verdict: " + ("PASS" if result["passed"] else "FAIL"))
    return lines
