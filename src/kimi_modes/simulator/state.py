"""The running engine's state: capacity slots, counters, recent requests, in-flight requests.

All of it lives on one event loop and is touched only from it, so nothing here locks.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kimi_modes.simulator.config import Settings, SimConfig

#: How many recent request bodies ``/sim/stats`` keeps.
HISTORY = 64


class Slots:
    """At most ``limit`` requests run at once; the others wait, first come first served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was ours already: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.running -= 1
        self._wake()

    def resize(self, limit: int) -> None:
        self.limit = limit
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.running < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.running += 1


class InFlight:
    """One request being answered; ``abort`` tells its task why it is being cancelled."""

    __slots__ = ("done", "reason", "started", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.reason: str | None = None
        self.started = False  # response headers went out
        self.done = False  # the last bytes are being sent: a disconnect no longer cancels

    def abort(self, reason: str) -> None:
        if self.reason is None and not self.done:
            self.reason = reason
            self.task.cancel()


class SimState:
    """Counters and knobs of one engine process; see ``/sim/stats`` for their meaning."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.rng = random.Random(config.seed)
        self.slots = Slots(self.settings.max_num_seqs)
        self.in_flight: set[InFlight] = set()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_VllmMetrics(self))
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_path: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.rejected = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.max_running = 0
        self.seq = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        if self.config.script is not None:
            self.config.script.reset()

    def apply(self, settings: Settings) -> None:
        self.settings = settings
        self.slots.resize(settings.max_num_seqs)

    def count(self, path: str) -> None:
        """Count a request to an API route (``/v1/*``, ``/health``)."""
        self.requests += 1
        self.by_path[path] += 1

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        """Count a generation request and keep its headers and body."""
        self.count(path)
        self.seq += 1
        self.history.append({"seq": self.seq, "path": path, "headers": headers, "body": body})

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "running": self.slots.running,
            "waiting": self.slots.waiting,
            "in_flight": len(self.in_flight),
            "max_running": self.max_running,
            "finished": dict(self.finished),
            "cancelled": sum(self.cancelled.values()),
            "cancelled_by_phase": dict(self.cancelled),
            "faults": dict(self.faults),
            "rejected": self.rejected,
            "prompt_tokens": self.prompt_tokens,
            "generation_tokens": self.generation_tokens,
            "last_requests": list(self.history),
            "settings": self.settings.as_dict(),
        }


class _VllmMetrics(Collector):
    """The vLLM metrics a load-aware router reads, computed at scrape time."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def collect(self) -> list[Metric]:
        s = self.state
        labels = ["model_name", "engine"]
        model = [s.config.model, "0"]

        def gauge(name: str, doc: str, value: float) -> Metric:
            metric = GaugeMetricFamily(name, doc, labels=labels)
            metric.add_metric(model, value)
            return metric

        def counter(name: str, doc: str, value: float) -> Metric:
            metric = CounterMetricFamily(name, doc, labels=labels)
            metric.add_metric(model, value)
            return metric

        success = CounterMetricFamily("vllm:request_success", "Count of successfully "
                                      "processed requests.", labels=["finished_reason", *labels])
        success.add_metric(["stop", *model], s.finished["stop"] + s.finished["tool_calls"])
        success.add_metric(["length", *model], s.finished["length"])
        success.add_metric(["abort", *model], sum(s.cancelled.values()))
        return [
            gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                  s.slots.running),
            gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                  s.slots.waiting),
            gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                  s.slots.running / max(1, s.slots.limit)),
            counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                    s.prompt_tokens),
            counter("vllm:generation_tokens", "Number of generation tokens processed.",
                    s.generation_tokens),
            success,
        ]
