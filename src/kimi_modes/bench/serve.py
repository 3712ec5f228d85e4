"""``kimi-modes bench serve``: a load generator for any OpenAI-compatible endpoint, measuring
what vLLM's ``vllm bench serve`` measures and saving it under vLLM's JSON keys.

A run goes as vLLM's does: one test request (the first of the dataset; its failure ends the
run), ``num_warmups`` warm-up requests, then the benchmark proper — requests released on a
Poisson (``burstiness`` 1) or gamma arrival schedule at ``request_rate`` (all at once for
``inf``), at most ``max_concurrency`` in flight. See :mod:`kimi_modes.bench.serve_client` for
what each request measures and :mod:`kimi_modes.bench.serve_metrics` for the figures.

Example::

    from kimi_modes.bench.datasets import random_requests
    from kimi_modes.bench.serve import ServeConfig, run_benchmark

    run = run_benchmark(ServeConfig(base_url="http://127.0.0.1:8000",
                                    model="kimi-k2.5-instant"),
                        random_requests(100, input_len=256, output_len=64))
    print("\\n".join(run.summary))
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import aiohttp

from kimi_modes.bench.datasets import SampleRequest
from kimi_modes.bench.serve_arrivals import arrival_times
from kimi_modes.bench.serve_client import (
    CHAT,
    COMPLETIONS,
    RequestInput,
    RequestOutput,
    send_request,
)
from kimi_modes.bench.serve_metrics import (
    DEFAULT_PERCENTILE_METRICS,
    BenchmarkMetrics,
    calculate_metrics,
    summarize,
)
from kimi_modes.endpoint import listed_model, server_root


class BenchmarkError(Exception):
    """The benchmark could not run (endpoint unreachable, first request refused...); the
    message is one line."""


@dataclass(slots=True)
class ServeConfig:
    """Where to send and how. ``base_url`` is the server root (``http://host:port``; a trailing
    ``/v1`` is tolerated); ``model`` ``None`` takes the first id of ``/v1/models``."""

    base_url: str = "http://127.0.0.1:8000"
    endpoint: str = CHAT
    model: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    request_rate: float = float("inf")
    burstiness: float = 1.0
    max_concurrency: int | None = None
    num_warmups: int = 0
    ignore_eos: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)
    percentile_metrics: Sequence[str] = tuple(DEFAULT_PERCENTILE_METRICS.split(","))
    metric_percentiles: Sequence[float] = (99.0,)
    goodput: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    request_timeout: float = 6 * 60 * 60
    request_id_prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}-")
    progress: bool = True

    def __post_init__(self) -> None:
        if self.endpoint not in (CHAT, COMPLETIONS):
            raise BenchmarkError(f"--endpoint must be {CHAT} or {COMPLETIONS}")
        if not self.request_rate > 0:
            raise BenchmarkError("--request-rate must be positive (or inf)")
        if not self.burstiness > 0:
            raise BenchmarkError("--burstiness must be positive")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise BenchmarkError("--max-concurrency must be at least 1")
        if self.num_warmups < 0:
            raise BenchmarkError("--num-warmups must be >= 0")
        if not self.request_timeout > 0:
            raise BenchmarkError("--request-timeout must be positive")
        if not self.base_url.startswith(("http://", "https://")):
            raise BenchmarkError(f"--base-url must be an http(s) URL, not {self.base_url!r}")

    @property
    def root(self) -> str:
        return server_root(self.base_url)

    @property
    def api_url(self) -> str:
        return self.root + self.endpoint

    @property
    def backend(self) -> str:
        """vLLM's name for this kind of endpoint."""
        return "openai-chat" if self.endpoint == CHAT else "openai"


@dataclass(slots=True)
class BenchmarkRun:
    """A finished run: vLLM's result dictionary (everything, detailed lists included), the
    summary table's lines, the per-request outputs and the metrics."""

    result: dict[str, Any]
    summary: list[str]
    outputs: list[RequestOutput]
    metrics: BenchmarkMetrics


def build_input(config: ServeConfig, model: str, request: SampleRequest, index: int
                ) -> RequestInput:
    """The HTTP request for one sample: vLLM's body for the endpoint, ``ignore_eos`` when
    asked, then ``extra_body`` and the sample's own fields (the sample's win)."""
    chat = config.endpoint == CHAT
    body: dict[str, Any] = {"model": model}
    if chat:
        body["messages"] = request.messages or [{"role": "user", "content": request.prompt}]
        if request.expected_output_len is not None:
            body["max_completion_tokens"] = request.expected_output_len
    else:
        if request.prompt is None:
            raise BenchmarkError(f"request {index} is a chat (messages); send it to {CHAT}")
        body["prompt"] = request.prompt
        if request.expected_output_len is not None:
            body["max_tokens"] = request.expected_output_len
    if config.ignore_eos:
        body["ignore_eos"] = True
    body.update(config.extra_body)
    body.update(request.body)
    headers = dict(config.headers)
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers["x-request-id"] = f"{config.request_id_prefix}{index}"
    return RequestInput(config.api_url, chat, body, request.prompt_len, headers)


async def first_model(session: aiohttp.ClientSession, config: ServeConfig) -> str:
    """The first model id the server lists at ``/v1/models`` (vLLM's default model)."""
    url = config.root + "/v1/models"
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    try:
        async with session.get(url, headers={**config.headers, **headers}) as response:
            if response.status != 200:
                raise BenchmarkError(f"cannot list the models at {url}: HTTP {response.status}")
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise BenchmarkError(f"cannot list the models at {url}: {type(exc).__name__}: {exc}"
                             ) from None
    entry = listed_model(data)
    if entry is None:
        raise BenchmarkError(f"{url} lists no models; give --model")
    return str(entry["id"])


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool, total: int, title: str) -> None:
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), refresh_per_second=4, transient=False,
            )
            self._task = self._bar.add_task(title, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, _: object = None) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)


async def _benchmark(config: ServeConfig, requests: Sequence[SampleRequest],
                     log: Callable[[str], None]) -> tuple[str, list[RequestOutput], float]:
    connector = aiohttp.TCPConnector(
        limit=config.max_concurrency or 0, limit_per_host=config.max_concurrency or 0,
        ttl_dns_cache=300, keepalive_timeout=60, enable_cleanup_closed=True,
    )
    timeout = aiohttp.ClientTimeout(total=config.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        model = config.model or await first_model(session, config)
        inputs = [build_input(config, model, r, i) for i, r in enumerate(requests)]

        log("Starting initial single prompt test run...")
        test = await send_request(inputs[0], session)
        if not test.success:
            raise BenchmarkError(f"the first request to {config.api_url} failed: {test.error}")
        log("Initial test run completed.")

        semaphore: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(config.max_concurrency) if config.max_concurrency
            else contextlib.nullcontext()
        )

        async def limited(request: RequestInput, arrival: float) -> RequestOutput:
            async with semaphore:
                output = await send_request(request, session)
            output.client_queue_time = output.start_time - arrival
            return output

        if config.num_warmups:
            log(f"Warming up with {config.num_warmups} requests...")
            with _Progress(config.progress, config.num_warmups, "warm-up") as bar:
                warm = [asyncio.ensure_future(limited(inputs[0], time.perf_counter()))
                        for _ in range(config.num_warmups)]
                for task in warm:
                    task.add_done_callback(bar.advance)
                await asyncio.gather(*warm)
            log("Warmup run completed.")

        log("Starting main benchmark run...")
        distribution = "Poisson process" if config.burstiness == 1.0 else "Gamma distribution"
        log(f"Traffic request rate: {config.request_rate}")
        log(f"Burstiness factor: {config.burstiness} ({distribution})")
        log(f"Maximum request concurrency: {config.max_concurrency}")
        times = arrival_times(len(inputs), config.request_rate, config.burstiness, config.seed)
        # Objects made so far live to the end; keep the collector from walking them mid-run.
        gc.collect()
        gc.freeze()
        tasks: list[asyncio.Task[RequestOutput]] = []
        try:
            with _Progress(config.progress, len(inputs), "requests") as bar:
                start = time.perf_counter()
                for request, due in zip(inputs, times, strict=True):
                    wait = start + due - time.perf_counter()
                    if due > 0 and wait > 0:
                        await asyncio.sleep(wait)
                    task = asyncio.ensure_future(limited(request, time.perf_counter()))
                    task.add_done_callback(bar.advance)
                    tasks.append(task)
                outputs = list(await asyncio.gather(*tasks))
                duration = time.perf_counter() - start
        finally:
            gc.unfreeze()
        return model, outputs, duration


def run_benchmark(config: ServeConfig, requests: Sequence[SampleRequest], *,
                  num_prompts: int | None = None, label: str | None = None,
                  metadata: dict[str, str] | None = None,
                  log: Callable[[str], None] | None = None) -> BenchmarkRun:
    """Run the benchmark and return its figures; raises :class:`BenchmarkError` when it
    cannot run. ``log`` receives the progress lines (default: stderr)."""
    if not requests:
        raise BenchmarkError("no requests to send")
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        model, outputs, duration = runner.run(_benchmark(config, requests, say))
    metrics = calculate_metrics(outputs, duration, config.goodput)
    failed = [o.error for o in outputs if not o.success]
    if failed:
        say("Failed requests during benchmark run detected (capping to 10):")
        for i, error in enumerate(failed[:10]):
            say(f"Error {i}: {error}")
    details, summary = summarize(
        metrics, outputs, duration_s=duration, request_rate=config.request_rate,
        max_concurrency=config.max_concurrency, goodput=config.goodput,
        percentile_metrics=config.percentile_metrics, percentiles=config.metric_percentiles,
    )
    result: dict[str, Any] = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": config.backend,
        "backend": config.backend,
        "label": label,
        "model_id": model,
        "tokenizer_id": None,
        "num_prompts": num_prompts if num_prompts is not None else len(requests),
        **(metadata or {}),
        "request_rate": config.request_rate if config.request_rate < float("inf") else "inf",
        "burstiness": config.burstiness,
        "max_concurrency": config.max_concurrency,
        **details,
    }
    return BenchmarkRun(result, summary, outputs, metrics)


def print_summary(run: BenchmarkRun, stream: TextIO | None = None) -> None:
    print("\n".join(run.summary), file=stream or sys.stdout, flush=True)
