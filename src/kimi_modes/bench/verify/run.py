"""``kimi-modes verify tools``: Moonshot's K2-Vendor-Verifier (K2VV) method for any
OpenAI-compatible endpoint.

Each line of a JSONL file of chat-completion requests with tools (:mod:`.cases`) is sent,
non-streaming, to the endpoint under test, at most ``concurrency`` at a time, with retries
(:mod:`.client`); optionally each is also sent to a reference endpoint. Every response
is judged (:func:`.metrics.judge`) and appended to the output JSONL as soon as it is
in. The ground truth of a line is, in this order of preference: the reference endpoint's
response (``reference_url``), the same line of a results file written earlier by this command
or by K2VV (``reference_results``, matched by ``data_index``), the line's
``expected_finish_reason``. The summary (:func:`.metrics.summarize`) holds K2VV's keys,
``tool_call_f1`` and ``schema_accuracy``, and the verdict against the thresholds.

Resuming (``incremental``): a record already in the output file whose ``hash`` (the MD5 of the
body sent) matches a line and whose status is ``success`` is kept and the line is not sent
again; a line whose reference answer is missing or failed has only that part re-sent. At the
end the output file is rewritten with one record per line of the input, in line order.

Example::

    from kimi_modes.bench.verify.run import VerifyConfig, run_verification
    from kimi_modes.bench.verify.cases import load_cases

    run = run_verification(load_cases(), VerifyConfig(base_url="http://127.0.0.1:8000/v1",
                                                       model="kimi-k2.5-instant"))
    print("\\n".join(run.lines), run.summary["tool_call_f1"])
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiohttp

from kimi_modes.bench._http import EndpointError, client_session, first_model
from kimi_modes.bench.verify.cases import Case, prepare_body, request_hash
from kimi_modes.bench.verify.client import Endpoint, Outcome, RetryPolicy, post_chat
from kimi_modes.bench.verify.metrics import (
    F1_THRESHOLDS,
    Thresholds,
    judge,
    summarize,
    summary_lines,
)
from kimi_modes.protocol.families import Family

DEFAULT_OUTPUT = Path("results/results.jsonl")
DEFAULT_SUMMARY = Path("results/summary.json")


class VerifyError(Exception):
    """The verification could not run (bad settings, unreadable results, no model); the
    message is one line."""


class UsageError(VerifyError):
    """The settings or files given cannot work (nothing to compare with, an unreadable
    reference results file): a usage error rather than a failed run."""


@dataclass(slots=True)
class VerifyConfig:
    """Where to send, how, where to write and what to compare with. ``base_url`` and
    ``reference_url`` are as the ``openai`` SDK takes them (``http://host:8000/v1``); a
    ``model`` of ``None`` takes the first id of the endpoint's ``/models``."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None
    api_key: str | None = None
    concurrency: int = 5
    timeout: float = 600.0
    max_retries: int = 3
    backoff: float = 1.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    max_tokens: int | None = None
    reference_url: str | None = None
    reference_model: str | None = None
    reference_api_key: str | None = None
    reference_results: Path | None = None
    output: Path = DEFAULT_OUTPUT
    summary: Path | None = DEFAULT_SUMMARY
    incremental: bool = False
    thresholds: Thresholds = field(
        default_factory=lambda: Thresholds(F1_THRESHOLDS[Family.K2_5], None, Family.K2_5.value)
    )
    progress: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise VerifyError("--concurrency must be at least 1")
        if not self.timeout > 0:
            raise VerifyError("--timeout must be positive")
        if self.max_retries < 0:
            raise VerifyError("--max-retries must be >= 0")
        if self.backoff < 0:
            raise VerifyError("--backoff must be >= 0")
        for name, url in (("--base-url", self.base_url), ("--reference-url", self.reference_url)):
            if url is not None and not url.startswith(("http://", "https://")):
                raise VerifyError(f"{name} must be an http(s) URL, not {url!r}")
        if self.reference_url is not None and self.reference_results is not None:
            raise VerifyError("give --reference-url or --reference-results, not both")
        for name, value in (("--threshold", self.thresholds.tool_call_f1),
                            ("--schema-threshold", self.thresholds.schema_accuracy)):
            if value is not None and not 0 <= value <= 1:
                raise VerifyError(f"{name} must be between 0 and 1 (a fraction), not {value}")


@dataclass(slots=True)
class VerifyRun:
    """A finished run: the summary (also written to ``config.summary``), its printed table's
    lines, and the records (one per input line, in line order, as in the output file)."""

    summary: dict[str, Any]
    lines: list[str]
    records: list[dict[str, Any]]


def run_verification(cases: Sequence[Case], config: VerifyConfig) -> VerifyRun:
    """Run :func:`verify` in a fresh event loop."""
    return asyncio.run(verify(cases, config))


async def verify(cases: Sequence[Case], config: VerifyConfig) -> VerifyRun:
    """Verify ``cases`` against ``config``'s endpoint; see the module docstring."""
    started = datetime.now()
    truths = _load_reference_results(config.reference_results)
    if truths is None and config.reference_url is None and not any(c.label for c in cases):
        raise UsageError(
            "nothing to compare with: give --reference-url, --reference-results, or an input "
            "file whose lines carry expected_finish_reason"
        )
    existing = _read_records(config.output) if config.incremental else {}
    async with client_session(trust_env=True) as session:
        target = await _endpoint(session, config.base_url, config.model, config.api_key, "")
        reference = None
        if config.reference_url is not None:
            reference = await _endpoint(session, config.reference_url, config.reference_model,
                                        config.reference_api_key, "--reference-")
        runner = _Runner(config, session, target, reference)
        plans = [runner.plan(case, existing) for case in cases]
        records = await runner.run(plans)
    for record in records:
        _set_truth(record, reference is not None, truths)
    finished = datetime.now()
    head = {
        "model": target.model,
        "base_url": target.root,
        "reference": (
            {"kind": "endpoint", "model": reference.model, "base_url": reference.root}
            if reference is not None
            else {"kind": "results", "path": str(config.reference_results)}
            if truths is not None else {"kind": "labels"}
        ),
        "total": len(records),
        "eval_started_at": started.isoformat(),
        "eval_finished_at": finished.isoformat(),
        "eval_duration_ms": int((finished - started).total_seconds() * 1000),
    }
    summary = summarize(records, head=head, thresholds=config.thresholds)
    _write_records(config.output, records)
    if config.summary is not None:
        _write_json(config.summary, summary)
    return VerifyRun(summary, summary_lines(summary), records)


async def _endpoint(session: aiohttp.ClientSession, url: str, model: str | None,
                    api_key: str | None, flag: str) -> Endpoint:
    endpoint = Endpoint(url, model, api_key)
    if model is not None:
        return endpoint
    try:
        return Endpoint(url, await first_model(session, endpoint.root, endpoint.headers), api_key)
    except EndpointError as exc:
        raise VerifyError(f"{exc} (or give {flag or '--'}model)") from None


@dataclass(slots=True)
class _Plan:
    """One line's work: the bodies to send, and the parts of its record already done."""

    case: Case
    body: dict[str, Any]
    hash: str
    reference_body: dict[str, Any] | None
    reference_hash: str | None
    record: dict[str, Any] | None = None  # a kept record (target done)
    reference: dict[str, Any] | None = None  # a kept reference part

    @property
    def done(self) -> bool:
        return self.record is not None and (self.reference_body is None
                                            or self.reference is not None)

    def complete(self) -> dict[str, Any]:
        """The line's record (a copy: two identical lines may share a kept record), with
        this run's line number, label and reference part."""
        assert self.record is not None
        record = {**self.record, "data_index": self.case.data_index,
                  "expected_finish_reason": self.case.label}
        if self.reference_body is not None:
            record["reference"] = self.reference
        return record


class _Runner:
    def __init__(self, config: VerifyConfig, session: aiohttp.ClientSession, target: Endpoint,
                 reference: Endpoint | None) -> None:
        self.config = config
        self.session = session
        self.target = target
        self.reference = reference
        self.policy = RetryPolicy(config.timeout, config.max_retries, config.backoff)
        self.limits = {id(target): asyncio.Semaphore(config.concurrency)}
        if reference is not None:
            self.limits[id(reference)] = asyncio.Semaphore(config.concurrency)

    def _body(self, case: Case, model: str | None) -> dict[str, Any]:
        c = self.config
        assert model is not None
        return prepare_body(case.raw, model=model, temperature=c.temperature,
                            max_tokens=c.max_tokens, extra_body=c.extra_body)

    def plan(self, case: Case, existing: Mapping[str, dict[str, Any]]) -> _Plan:
        body = self._body(case, self.target.model)
        digest = request_hash(body)
        ref_body = ref_hash = None
        if self.reference is not None:
            ref_body = self._body(case, self.reference.model)
            ref_hash = request_hash(ref_body)
        plan = _Plan(case, body, digest, ref_body, ref_hash)
        old = existing.get(digest)
        if old is not None and old.get("status") == "success":
            plan.record = old
            ref = old.get("reference")
            if (ref_hash is not None and isinstance(ref, dict) and ref.get("hash") == ref_hash
                    and ref.get("status") == "success"):
                plan.reference = ref
        return plan

    async def run(self, plans: list[_Plan]) -> list[dict[str, Any]]:
        todo = [p for p in plans if not p.done]
        mode = "a" if self.config.incremental else "w"
        out = _open_output(self.config.output, mode)
        progress = _Progress(len(todo), len(plans) - len(todo), self.config.progress)
        try:
            tasks = [asyncio.create_task(self._one(p, out, progress)) for p in todo]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
        finally:
            out.close()
            progress.close()
        return [p.complete() for p in plans]

    async def _one(self, plan: _Plan, out: IO[str], progress: _Progress) -> None:
        jobs: list[Any] = []
        if plan.record is None:
            jobs.append(self._send(self.target, plan.body))
        if plan.reference_body is not None and plan.reference is None:
            assert self.reference is not None
            jobs.append(self._send(self.reference, plan.reference_body))
        results = iter(await asyncio.gather(*jobs))
        if plan.record is None:
            plan.record = _record(plan.body, plan.hash, next(results))
        if plan.reference_body is not None and plan.reference is None:
            assert plan.reference_hash is not None
            plan.reference = _reference(plan.reference_body, plan.reference_hash, next(results))
        record = plan.complete()
        # One JSON line per request as soon as it is in: a killed run loses nothing finished.
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        progress.step(record.get("status") == "success")

    async def _send(self, endpoint: Endpoint, body: dict[str, Any]) -> Outcome:
        async with self.limits[id(endpoint)]:
            return await post_chat(self.session, endpoint, body, self.policy)


def _record(body: dict[str, Any], digest: str, outcome: Outcome) -> dict[str, Any]:
    """A K2VV result record (its keys first) with our judgement and the request's details."""
    j = judge(body, outcome.response)
    return {
        "data_index": 0,
        "request": body,
        "response": outcome.response,
        "status": outcome.status,
        "finish_reason": j.finish_reason,
        "tool_calls_valid": j.valid,
        "last_run_at": datetime.now().isoformat(),
        "duration_ms": outcome.duration_ms,
        "hash": digest,
        "error": outcome.error,
        "http_status": outcome.http_status,
        "attempts": outcome.attempts,
        "tool_call_triggered": j.triggered,
        "tool_call_errors": list(j.errors),
        "tool_call_error_kinds": list(j.kinds),
    }


def _reference(body: dict[str, Any], digest: str, outcome: Outcome) -> dict[str, Any]:
    j = judge(body, outcome.response)
    return {
        "model": body.get("model"),
        "hash": digest,
        "status": outcome.status,
        "error": outcome.error,
        "finish_reason": j.finish_reason,
        "tool_call_triggered": j.triggered,
        "tool_calls_valid": j.valid,
        "duration_ms": outcome.duration_ms,
        "last_run_at": datetime.now().isoformat(),
        "response": outcome.response,
    }


def _set_truth(record: dict[str, Any], live_reference: bool,
               truths: Mapping[int, bool | None] | None) -> None:
    """``truth`` (does the ground truth call a tool; ``None``: unknown) and ``truth_failed``
    (the reference failed for this line)."""
    record["truth_failed"] = False
    if live_reference:
        ref = record.get("reference") or {}
        ok = ref.get("status") == "success"
        record["truth"] = bool(ref.get("tool_call_triggered")) if ok else None
        record["truth_failed"] = not ok
    elif truths is not None:
        truth = truths.get(record["data_index"])
        record["truth"] = truth
        record["truth_failed"] = record["data_index"] in truths and truth is None
    else:
        label = record.get("expected_finish_reason")
        record["truth"] = None if label is None else label == "tool_calls"


def _load_reference_results(path: Path | None) -> dict[int, bool | None] | None:
    """A results file's truths by ``data_index``: whether the line triggered a tool call
    (``None`` where that request failed). Reads ours and K2VV's (``finish_reason``)."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    truths: dict[int, bool | None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            index = record["data_index"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{str(path)!r} line {number}: not a results record "
                              "(a JSON object with data_index)") from None
        if not isinstance(index, int):
            raise UsageError(f"{str(path)!r} line {number}: data_index is not an integer")
        if record.get("status") != "success":
            truths[index] = None
        elif "tool_call_triggered" in record:
            truths[index] = bool(record["tool_call_triggered"])
        else:
            truths[index] = record.get("finish_reason") == "tool_calls"
    if not truths:
        raise UsageError(f"{str(path)!r} holds no results")
    return truths


def _read_records(path: Path) -> dict[str, dict[str, Any]]:
    """The records of an earlier run by hash (a later line wins). A line that does not parse
    — the half-written last line of a killed run — is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise VerifyError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    records: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            records[record["hash"]] = record
    return records


def _open_output(path: Path, mode: str) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open(mode, encoding="utf-8")
        if mode == "a" and handle.tell() > 0:
            _end_with_newline(path, handle)
        return handle
    except OSError as exc:
        raise VerifyError(f"cannot write {str(path)!r}: {exc.strerror}") from None


def _end_with_newline(path: Path, handle: IO[str]) -> None:
    # A killed run may have left half a line; start the next record on a line of its own.
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            handle.write("\n")


def _write_records(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite the output file (atomically) with one record per line of the input."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                kept = {k: v for k, v in record.items() if k not in ("truth", "truth_failed")}
                f.write(json.dumps(kept, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise VerifyError(f"cannot write {str(path)!r}: {exc.strerror}") from None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, ensure_ascii=False, indent=4) + "\n", encoding="utf-8")
    except OSError as exc:
        raise VerifyError(f"cannot write {str(path)!r}: {exc.strerror}") from None


class _Progress:
    """A one-line progress count on stderr while it is a terminal."""

    def __init__(self, total: int, kept: int, enabled: bool) -> None:
        self.total, self.kept, self.done, self.failed = total, kept, 0, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0
        if kept:
            print(f"Kept {kept} finished request(s) from the output file; "
                  f"sending {total}.", file=sys.stderr)

    def step(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.2 or self.done == self.total):
            self.last = now
            print(f"\r{self.done}/{self.total} requests ({self.failed} failed)", end="",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.done:
            print(file=sys.stderr)

