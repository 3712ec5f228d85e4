"""Prometheus metrics of one gateway instance (its own registry: no process globals).

Under ``serve --workers N`` each worker's values go to files in a directory the supervisor
made (prometheus_client's multiprocess mode, :data:`MULTIPROCESS_DIR` in the environment,
set before the workers start), and :meth:`Metrics.render` sums every worker's: any worker
answers a scrape with the whole gateway's counts (requests in flight: the live workers' sum).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

#: The environment variable prometheus_client reads (when it is imported) for the directory
#: of the multiprocess mode.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Counters and histograms the server updates; :meth:`render` gives the text format.

    Label values: ``api`` is ``chat_completions`` or ``messages``; ``model`` is the model id
    the client asked for (only listed ids reach the metrics, so cardinality is bounded).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kimi_modes_requests", "Requests answered", ["api", "model", "status"], registry=r
        )
        self.in_flight = Gauge(
            "kimi_modes_requests_in_flight", "Requests being answered", ["api"], registry=r,
            multiprocess_mode="livesum",
        )
        self.latency = Histogram(
            "kimi_modes_request_duration_seconds",
            "Time from request to the end of the answer",
            ["api", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "kimi_modes_time_to_first_token_seconds",
            "Time from request to the first token of a streamed answer",
            ["api", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "kimi_modes_tokens",
            "Tokens processed, by kind (prompt, completion, reasoning)",
            ["model", "kind"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "kimi_modes_upstream_errors",
            "Upstream failures, by upstream and kind",
            ["upstream", "kind"],
            registry=r,
        )
        self.disconnects = Counter(
            "kimi_modes_client_disconnects",
            "Streams the client abandoned (the upstream request was cancelled)",
            ["api"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format: this process's metrics, or every worker's summed."""
        shared = os.environ.get(MULTIPROCESS_DIR)
        if not shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
