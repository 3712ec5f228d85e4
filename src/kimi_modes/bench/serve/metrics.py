"""The serving benchmark's metrics, computed from per-request outputs as vLLM computes them
(``vllm/benchmarks/serve.py: calculate_metrics``), and the summary table vLLM prints.

Per successful request: TTFT, TPOT = (E2EL − TTFT) / (output_tokens − 1) (only requests with
more than one output token; for goodput such a request's TPOT is 0), every ITL gap, E2EL.
Statistics are numpy's: mean, median, population std and linear-interpolated percentiles, in
milliseconds; an empty list gives 0. Throughputs divide by the benchmark's wall duration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kimi_modes.bench.serve.client import RequestOutput

MS = 1000.0
GOODPUT_METRICS = ("ttft", "tpot", "e2el")
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el", "client_queue_time",
                      "e2el_including_client_queue")
DEFAULT_PERCENTILE_METRICS = "ttft,tpot,itl"
_HEADERS = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
    "client_queue_time": ("Client Queue Time", "Client-side Queueing"),
    "e2el_including_client_queue": ("E2EL incl. Client Queue",
                                    "Queue-inclusive End-to-end Latency"),
}


class MetricsOptionError(ValueError):
    """A bad ``--goodput``, ``--percentile-metrics`` or ``--metric-percentiles`` value."""


def parse_goodput(pairs: Sequence[str]) -> dict[str, float]:
    """``["ttft:500", "tpot:50"]`` → ``{"ttft": 500.0, "tpot": 50.0}`` (SLOs in ms)."""
    slos: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or name not in GOODPUT_METRICS or number < 0:
            raise MetricsOptionError(
                f"--goodput takes KEY:VALUE pairs with KEY one of {', '.join(GOODPUT_METRICS)} "
                f"and a non-negative number of milliseconds, not {pair!r}"
            )
        slos[name] = number
    return slos


def parse_percentile_metrics(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in PERCENTILE_METRICS]
    if bad or not names:
        raise MetricsOptionError(
            f"--percentile-metrics takes a comma-separated list of {', '.join(PERCENTILE_METRICS)}"
        )
    return names


def parse_metric_percentiles(text: str) -> list[float]:
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= p <= 100 for p in values):
        raise MetricsOptionError("--metric-percentiles takes comma-separated numbers in [0, 100]")
    return values


@dataclass(slots=True)
class BenchmarkMetrics:
    """The aggregate figures of one run (the per-metric statistics live in :class:`Stats`)."""

    completed: int
    failed: int
    total_input: int
    total_output: int
    request_throughput: float
    request_goodput: float
    output_throughput: float
    total_token_throughput: float
    max_output_tokens_per_s: float
    max_concurrent_requests: int
    ttfts: list[float]
    tpots: list[float]
    itls: list[float]
    e2els: list[float]


@dataclass(slots=True)
class Stats:
    """Statistics of one metric, milliseconds."""

    mean: float
    median: float
    std: float
    percentiles: list[tuple[float, float]]


def stats(values_s: Sequence[float], percentiles: Sequence[float]) -> Stats:
    """numpy's mean, median, std and percentiles of ``values_s`` (seconds) in milliseconds;
    all 0 for an empty list, as in vLLM."""
    import numpy as np

    data = np.asarray(values_s if len(values_s) else [0.0], dtype=float)
    return Stats(
        mean=float(np.mean(data)) * MS,
        median=float(np.median(data)) * MS,
        std=float(np.std(data)) * MS,
        percentiles=[(p, float(np.percentile(data, p)) * MS) for p in percentiles],
    )


def percentile_key(p: float) -> str:
    """vLLM's spelling of a percentile in keys: ``99`` → ``"99"``, ``99.9`` → ``"99.9"``."""
    return str(int(p)) if int(p) == p else str(p)


def output_lens(outputs: Sequence[RequestOutput]) -> list[int]:
    """Output tokens per request, 0 for a failed one."""
    return [o.output_tokens if o.success else 0 for o in outputs]


def tokens_per_second(outputs: Sequence[RequestOutput]) -> tuple[list[float], list[float]]:
    """vLLM's one-second buckets from the first successful request's start: token chunks
    received in each second, and the requests active in each second."""
    ok = [o for o in outputs if o.success]
    if not ok:
        return [], []
    t0 = min(o.start_time for o in ok)
    end = max(o.start_time + o.latency for o in ok)
    seconds = int(-(-(end - t0) // 1)) + 1
    tokens = [0.0] * seconds
    active = [0.0] * seconds
    for o in ok:
        t = o.start_time + o.ttft
        times = [t]
        for gap in o.itl:
            t += gap
            times.append(t)
        for t in times:
            bucket = int(t - t0)
            if 0 <= bucket < seconds:
                tokens[bucket] += 1
        first = int(o.start_time - t0)
        last = int(-(-(o.start_time + o.latency - t0) // 1))
        for s in range(first, min(seconds, last)):
            active[s] += 1
    return tokens, active


def peak_concurrency(outputs: Sequence[RequestOutput]) -> int:
    """The most successful requests in flight at once: a sweep over the half-open intervals
    ``[start, start + latency)`` (an end before a start at the same instant)."""
    events = []
    for o in outputs:
        if o.success:
            events.append((o.start_time, 1))
            events.append((o.start_time + o.latency, -1))
    events.sort()
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def calculate_metrics(
    outputs: Sequence[RequestOutput], duration_s: float, goodput: dict[str, float]
) -> BenchmarkMetrics:
    """The run's figures, as vLLM's ``calculate_metrics`` makes them."""
    ttfts: list[float] = []
    tpots: list[float] = []
    all_tpots: list[float] = []
    itls: list[float] = []
    e2els: list[float] = []
    total_input = completed = 0
    for o in outputs:
        if not o.success:
            continue
        completed += 1
        total_input += o.prompt_len
        tpot = 0.0
        if o.output_tokens > 1:
            tpot = (o.latency - o.ttft) / (o.output_tokens - 1)
            tpots.append(tpot)
        all_tpots.append(tpot)
        itls.extend(o.itl)
        ttfts.append(o.ttft)
        e2els.append(o.latency)
    good = 0
    if goodput:
        columns = {"ttft": ttfts, "tpot": all_tpots, "e2el": e2els}
        chosen = [(columns[name], slo / MS) for name, slo in goodput.items()]
        for i in range(completed):
            if all(values[i] <= limit for values, limit in chosen):
                good += 1
    total_output = sum(output_lens(outputs))
    per_second, _ = tokens_per_second(outputs)
    return BenchmarkMetrics(
        completed=completed,
        failed=len(outputs) - completed,
        total_input=total_input,
        total_output=total_output,
        request_throughput=completed / duration_s,
        request_goodput=good / duration_s,
        output_throughput=total_output / duration_s,
        total_token_throughput=(total_input + total_output) / duration_s,
        max_output_tokens_per_s=max(per_second, default=0.0),
        max_concurrent_requests=peak_concurrency(outputs),
        ttfts=ttfts,
        tpots=tpots,
        itls=itls,
        e2els=e2els,
    )


def _line(label: str, value: Any, fmt: str = "") -> str:
    return f"{label:<40} {format(value, fmt):<10}"


def summarize(
    metrics: BenchmarkMetrics,
    outputs: Sequence[RequestOutput],
    *,
    duration_s: float,
    request_rate: float,
    max_concurrency: int | None,
    goodput: dict[str, float],
    percentile_metrics: Sequence[str],
    percentiles: Sequence[float],
) -> tuple[dict[str, Any], list[str]]:
    """vLLM's result dictionary (keys and order of ``benchmark()``'s result) and the lines of
    its printed table, from ``===== Serving Benchmark Result =====`` to the closing rule."""
    lines = [" Serving Benchmark Result ".center(50, "=")]
    lines.append(_line("Successful requests:", metrics.completed))
    lines.append(_line("Failed requests:", metrics.failed))
    if max_concurrency is not None:
        lines.append(_line("Maximum request concurrency:", max_concurrency))
    if request_rate != float("inf"):
        lines.append(_line("Request rate configured (RPS):", request_rate, ".2f"))
    lines.append(_line("Benchmark duration (s):", duration_s, ".2f"))
    lines.append(_line("Total input tokens:", metrics.total_input))
    lines.append(_line("Total generated tokens:", metrics.total_output))
    lines.append(_line("Request throughput (req/s):", metrics.request_throughput, ".2f"))
    if goodput:
        lines.append(_line("Request goodput (req/s):", metrics.request_goodput, ".2f"))
    lines.append(_line("Output token throughput (tok/s):", metrics.output_throughput, ".2f"))
    lines.append(_line("Peak output token throughput (tok/s):",
                       metrics.max_output_tokens_per_s, ".2f"))
    lines.append(_line("Peak concurrent requests:", float(metrics.max_concurrent_requests),
                       ".2f"))
    lines.append(_line("Total token throughput (tok/s):", metrics.total_token_throughput,
                       ".2f"))

    result: dict[str, Any] = {
        "duration": duration_s,
        "completed": metrics.completed,
        "failed": metrics.failed,
        "total_input_tokens": metrics.total_input,
        "total_output_tokens": metrics.total_output,
        "request_throughput": metrics.request_throughput,
        "request_goodput": metrics.request_goodput if goodput else None,
        "output_throughput": metrics.output_throughput,
        "total_token_throughput": metrics.total_token_throughput,
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": output_lens(outputs),
        "ttfts": [o.ttft for o in outputs],
        "itls": [o.itl for o in outputs],
        "latencies": [o.latency for o in outputs],
        "start_times": [o.start_time for o in outputs],
        "queue_times": [o.client_queue_time for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
        "errors": [o.error for o in outputs],
        "max_output_tokens_per_s": metrics.max_output_tokens_per_s,
        "max_concurrent_requests": metrics.max_concurrent_requests,
        "rtfx": 0.0,
    }
    series: dict[str, list[float]] = {
        "ttft": metrics.ttfts, "tpot": metrics.tpots, "itl": metrics.itls, "e2el": metrics.e2els,
    }
    if max_concurrency is not None:
        ok = [o for o in outputs if o.success]
        series["client_queue_time"] = [o.client_queue_time for o in ok]
        if request_rate != float("inf"):
            series["e2el_including_client_queue"] = [o.latency + o.client_queue_time for o in ok]
    for name in PERCENTILE_METRICS:
        if name not in percentile_metrics or name not in series:
            continue
        short, header = _HEADERS[name]
        s = stats(series[name], percentiles)
        lines.append(header.center(50, "-"))
        lines.append(_line(f"Mean {short} (ms):", s.mean, ".2f"))
        lines.append(_line(f"Median {short} (ms):", s.median, ".2f"))
        result[f"mean_{name}_ms"] = s.mean
        result[f"median_{name}_ms"] = s.median
        result[f"std_{name}_ms"] = s.std
        for p, value in s.percentiles:
            word = percentile_key(p)
            lines.append(_line(f"P{word} {short} (ms):", value, ".2f"))
            result[f"p{word}_{name}_ms"] = value
    lines.append("=" * 50)
    return result, lines
