"""``kimi-modes bench agents``: run a task file through Agent and Swarm modes and measure
success, wall time, steps, tool calls, tokens and parallelism.

Each task (:mod:`kimi_modes.bench.agents_tasks`) is sent to each *target* (a mode and the
model id that serves it: ``kimi-k2.5-agent``, ``kimi-k2.5-swarm``, or any id) ``repeat``
times, ``concurrency`` at a time, each request under ``timeout`` seconds. Its answer is judged
by the task's own checker (:mod:`kimi_modes.bench.agents_check`). Against a kimi-modes
gateway the figures come from the persisted run (``GET {base}/runs/run_<hex>`` for the
response ``chatcmpl-<hex>``): its steps, tool calls, tokens and, for a swarm, the gateway's
swarm metrics (critical steps, parallelism, sub-agents). Against an endpoint without the runs
API (a bare vLLM, Moonshot's API) only what the response gives is reported — wall time and
usage — and the run figures are ``None`` (``metrics_source: "response"``).

What a result's figures mean (docs/measure/agents.md):

- ``wall_time``: client seconds from sending the request to the end of the stream;
  ``run_time``: the gateway's, from the run's start to its end.
- ``critical_steps``: a swarm's as the gateway computes it (per orchestrator step, 1 + the
  most steps a sub-agent started there took, summed); an agent's is its step count (one agent
  has no steps in parallel). ``total_steps``: all model steps (an agent's: its steps).
- ``parallelism``: a swarm's sub-agent running time over its wall time (gateway); an agent's is
  1.0 — one agent working the whole time (its calls within one step do run concurrently, but
  that is tool concurrency, not more agents).
- ``tokens``: a swarm's over the orchestrator and every sub-agent; ``total_tokens`` is prompt
  plus completion (reasoning tokens are part of completion).
- ``answer``: the run's ``final_answer`` (its last step's text) when the runs API is there
  and it is not empty, else the response's content.

Example::

    from kimi_modes.bench.agents import AgentsConfig, run_agents, targets_for
    from kimi_modes.bench.agents_tasks import load_tasks, sample_tasks_path

    config = AgentsConfig(base_url="http://127.0.0.1:8000/v1", targets=targets_for("agent"))
    result = run_agents(config, load_tasks(sample_tasks_path()))
    print(result.totals)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from kimi_modes.bench.agents_check import run_checkers
from kimi_modes.bench.agents_client import (
    ChatOutcome,
    EndpointError,
    RunsClient,
    auth_headers,
    chat,
    run_id_of,
)
from kimi_modes.bench.agents_report import summarize
from kimi_modes.bench.agents_results import MODE_MODELS, Target, TaskRun
from kimi_modes.bench.agents_tasks import MODES, Task
from kimi_modes.endpoint import api_base

_ANSWER_CHARS = 4000
_SUBAGENT_KEYS = ("id", "status", "stop_reason", "step_count", "tool_call_count", "error")


class BenchmarkError(Exception):
    """The benchmark could not run (bad option, endpoint unreachable...); one line."""


def targets_for(modes: str | None = None, models: Sequence[str] = ()) -> list[Target]:
    """The targets of ``--modes agent,swarm`` and ``--model [MODE=]ID`` options (both:
    modes first). An id without ``MODE=`` is a swarm when it ends in ``-swarm``, else an
    agent. Neither given: both modes."""
    out: list[Target] = []
    if modes is not None:
        names = [m.strip() for m in modes.split(",") if m.strip()]
        bad = [m for m in names if m not in MODES]
        if bad or not names:
            raise BenchmarkError(f"--modes takes {' and/or '.join(MODES)} (comma-separated), "
                                 f"not {modes!r}")
        out += [Target(m, MODE_MODELS[m]) for m in dict.fromkeys(names)]
    for spec in models:
        mode, sep, model = spec.partition("=")
        if not sep:
            model = spec
            mode = "swarm" if spec.endswith("-swarm") else "agent"
        mode, model = mode.strip(), model.strip()
        if mode not in MODES or not model:
            raise BenchmarkError(f"--model takes ID or MODE=ID with MODE one of "
                                 f"{', '.join(MODES)}, not {spec!r}")
        out.append(Target(mode, model))
    if modes is None and not models:
        out = [Target(m, MODE_MODELS[m]) for m in MODES]
    return list(dict.fromkeys(out))


def normalize_base_url(url: str) -> str:
    """``url`` without a trailing slash; ``/v1`` added when it has no path at all."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BenchmarkError(f"--base-url must be an http(s) URL, not {url!r}")
    return api_base(url, default_v1=True)


@dataclass(slots=True)
class AgentsConfig:
    """Where and how to run. ``base_url`` is the API root (``http://host:port/v1``);
    ``timeout`` bounds one request (seconds); ``extra_body`` is merged into every request
    (a task's own ``extra_body`` over it)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    targets: list[Target] = field(default_factory=targets_for)
    api_key: str | None = None
    concurrency: int = 1
    timeout: float = 600.0
    repeat: int = 1
    extra_body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_url = normalize_base_url(self.base_url)
        if self.concurrency < 1:
            raise BenchmarkError("--concurrency must be at least 1")
        if self.repeat < 1:
            raise BenchmarkError("--repeat must be at least 1")
        if not self.timeout > 0:
            raise BenchmarkError("--timeout must be positive")
        if not self.targets:
            raise BenchmarkError("nothing to benchmark: no mode or model given")


@dataclass(slots=True)
class AgentsResult:
    """A finished benchmark: every :class:`TaskRun` (``runs``, in task, target, repeat
    order), the aggregates (``totals`` per target, ``per_task`` per task and target) and the
    settings, as :meth:`to_dict` saves them."""

    config: AgentsConfig
    runs_api: bool
    runs: list[TaskRun]
    started_at: float
    duration: float
    tasks_file: str | None = None
    totals: list[dict[str, Any]] = field(default_factory=list)
    per_task: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "benchmark": "agents",
            "base_url": cfg.base_url,
            "runs_api": self.runs_api,
            "targets": [{"mode": t.mode, "model": t.model} for t in cfg.targets],
            "tasks_file": self.tasks_file,
            "repeat": cfg.repeat,
            "concurrency": cfg.concurrency,
            "timeout": cfg.timeout,
            "extra_body": cfg.extra_body,
            "started_at": datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            "duration": round(self.duration, 3),
            "totals": self.totals,
            "tasks": self.per_task,
            "results": [r.to_dict() for r in self.runs],
        }


#: ``on_result(run, done, total)``: called as each task run ends.
ResultCallback = Callable[[TaskRun, int, int], None]


def run_agents(config: AgentsConfig, tasks: Sequence[Task], *,
               tasks_file: str | None = None,
               on_result: ResultCallback | None = None) -> AgentsResult:
    """Run the benchmark to its end (a blocking call; see :func:`run_agents_async`)."""
    return asyncio.run(run_agents_async(config, tasks, tasks_file=tasks_file,
                                        on_result=on_result))


async def run_agents_async(config: AgentsConfig, tasks: Sequence[Task], *,
                           tasks_file: str | None = None,
                           on_result: ResultCallback | None = None) -> AgentsResult:
    """Run every (task, target, repeat) the task's ``modes`` allow. Raises
    :class:`BenchmarkError` when there is nothing to run or the endpoint cannot be used at
    all; a task that fails (its request or its check) is a result, never an exception."""
    jobs = [(task, target, r) for r in range(config.repeat) for task in tasks
            for target in config.targets if task.wants(target.mode)]
    if not jobs:
        raise BenchmarkError("no task is meant for the modes benchmarked (see each task's "
                             "modes)")
    headers = auth_headers(config.api_key)
    connector = aiohttp.TCPConnector(limit=config.concurrency * 2 + 4)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _check_endpoint(session, config, headers)
        runs_client = RunsClient(session, config.base_url, headers)
        try:
            runs_api = await runs_client.available()
        except EndpointError as exc:
            raise BenchmarkError(str(exc)) from None
        gate = asyncio.Semaphore(config.concurrency)
        done = 0
        started = time.time()
        clock = time.monotonic()

        async def one(task: Task, target: Target, repeat: int) -> TaskRun:
            nonlocal done
            async with gate:
                run = await run_task(session, config, task, target, repeat,
                                     runs_client if runs_api else None)
            done += 1
            if on_result is not None:
                on_result(run, done, len(jobs))
            return run

        runs = list(await asyncio.gather(*(one(*job) for job in jobs)))
    # Results in task order, then target, then repeat: the order a reader scans them in.
    order = {task.id: i for i, task in enumerate(tasks)}
    targets = {t: i for i, t in enumerate(config.targets)}
    runs.sort(key=lambda r: (order[r.task], targets[Target(r.mode, r.model)], r.repeat))
    result = AgentsResult(config, runs_api, runs, started, time.monotonic() - clock,
                          tasks_file=tasks_file)
    result.totals, result.per_task = summarize(runs, config.targets)
    return result


async def _check_endpoint(session: aiohttp.ClientSession, config: AgentsConfig,
                          headers: dict[str, str]) -> None:
    """Fail early, in one line, when the endpoint is unreachable, refuses the key, or does
    not serve a model benchmarked (when it lists its models)."""
    url = f"{config.base_url}/models"
    try:
        async with session.get(url, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=30)) as resp:
            if resp.status in (401, 403):
                raise BenchmarkError(f"{url} refused the API key (HTTP {resp.status}); "
                                     "give --api-key or set KIMI_MODES_API_KEY")
            if resp.status != 200:
                return  # no model list here: the requests will tell
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchmarkError(f"cannot reach {config.base_url}: "
                             f"{str(exc) or type(exc).__name__}") from None
    except ValueError:
        return
    served = [m.get("id") for m in (body.get("data") or []) if isinstance(m, dict)] \
        if isinstance(body, dict) else []
    if not served:
        return
    missing = [t.model for t in config.targets if t.model not in served]
    if missing:
        raise BenchmarkError(f"{config.base_url} does not serve {', '.join(missing)} "
                             f"(it serves {', '.join(map(str, served))}); choose with "
                             "--modes or --model")


async def run_task(session: aiohttp.ClientSession, config: AgentsConfig, task: Task,
                   target: Target, repeat: int, runs: RunsClient | None) -> TaskRun:
    """Send ``task`` to ``target`` once, judge the answer, read the run's figures."""
    result = TaskRun(task.id, target.mode, target.model, repeat)
    body = {**config.extra_body, **task.extra_body, "model": target.model,
            "messages": task.messages}
    outcome = ChatOutcome()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(config.timeout):
            await chat(session, config.base_url, body, auth_headers(config.api_key), outcome)
    except TimeoutError:
        outcome.error = f"timed out after {config.timeout:g} s"
    result.wall_time = round(time.perf_counter() - start, 4)
    result.response_id = outcome.response_id
    result.finish_reason = outcome.finish_reason
    result.error = outcome.error
    result.tokens = _usage_tokens(outcome.usage)
    answer = outcome.content
    run_id = run_id_of(outcome.response_id)
    if runs is not None and run_id is not None:
        if outcome.error is not None:
            await runs.cancel(run_id)  # a timed-out run must not go on eating the engine
        try:
            record = await runs.finished(run_id)
            if record is not None:
                answer = _read_run(result, record) or answer
                if result.mode == "swarm":
                    children = await runs.children(run_id)
                    children.sort(key=lambda s: (s.get("created_at") or 0, s.get("id") or ""))
                    result.subagent_runs = [_subagent(s) for s in children]
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.error = result.error or f"reading run {run_id} failed: {exc}"
    result.answer = answer[:_ANSWER_CHARS]
    if outcome.error is None:
        verdict = await run_checkers(task.checkers, answer)
        result.success, result.check = verdict.passed, verdict.reason
    else:
        result.check = "no answer to check"
    return result


def _read_run(result: TaskRun, record: dict[str, Any]) -> str:
    """Copy the run record's figures into ``result``; returns its final answer ("" if
    none)."""
    result.metrics_source = "runs_api"
    result.run_id = record.get("id")
    result.status = record.get("status")
    result.stop_reason = record.get("stop_reason")
    if result.error is None and record.get("status") == "failed" and record.get("error"):
        result.error = f"run failed: {record['error']}"
    started, finished = record.get("started_at"), record.get("finished_at")
    if isinstance(started, int | float) and isinstance(finished, int | float):
        result.run_time = round(finished - started, 4)
    metrics = record.get("metrics") or {}
    steps, calls = record.get("step_count"), record.get("tool_call_count")
    if "critical_steps" in metrics:  # a swarm run: the gateway's own figures
        result.steps = metrics.get("orchestrator_steps", steps)
        result.critical_steps = metrics.get("critical_steps")
        result.total_steps = metrics.get("total_steps")
        result.tool_calls = metrics.get("tool_calls")
        result.subagents = metrics.get("subagents")
        result.subagents_failed = metrics.get("subagents_failed")
        result.parallelism = metrics.get("parallelism")
        total = (metrics.get("tokens") or {}).get("total")
        result.tokens = _usage_tokens(total) or result.tokens
        if isinstance(metrics.get("wall_time"), int | float):
            result.run_time = round(metrics["wall_time"], 4)
    else:
        result.steps = steps
        result.tool_calls = calls
        if result.mode == "agent":
            result.critical_steps = result.total_steps = steps
            result.parallelism = 1.0
            result.subagents = 0
        result.tokens = _usage_tokens(record.get("usage")) or result.tokens
    final = record.get("final_answer")
    return final if isinstance(final, str) else ""


def _subagent(summary: dict[str, Any]) -> dict[str, Any]:
    out = {key: summary.get(key) for key in _SUBAGENT_KEYS}
    started, finished = summary.get("started_at"), summary.get("finished_at")
    out["duration"] = (round(finished - started, 4)
                       if isinstance(started, int | float) and isinstance(finished, int | float)
                       else None)
    out["tokens"] = _usage_tokens(summary.get("usage"))
    return out


def _usage_tokens(usage: Any) -> dict[str, int] | None:
    """``prompt_tokens``, ``completion_tokens``, ``reasoning_tokens``, ``total_tokens`` of an
    OpenAI usage object or a run's usage; ``None`` when it says nothing."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    reasoning = usage.get("reasoning_tokens")
    if reasoning is None:
        reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "reasoning_tokens": reasoning if isinstance(reasoning, int) else 0,
            "total_tokens": prompt + completion}
