"""PNG plots of a serving benchmark run (matplotlib, Agg backend: no display needed).

:func:`write_serve_plots` writes two files into a folder:

- ``latency_histograms.png``: histograms of TTFT, TPOT, ITL and E2EL (ms) over the successful
  requests, each with its mean and median marked;
- ``output_tokens_per_second.png``: token chunks received per second of the run (vLLM's
  one-second buckets, the basis of "Peak output token throughput") and the requests active in
  each second.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from kimi_modes.bench.serve.client import RequestOutput
from kimi_modes.bench.serve.metrics import MS, BenchmarkMetrics, tokens_per_second


class PlotError(RuntimeError):
    """The plots cannot be made (matplotlib missing, folder not writable)."""


def write_serve_plots(metrics: BenchmarkMetrics, outputs: Sequence[RequestOutput],
                      folder: Path, *, title: str = "") -> list[Path]:
    """Write the two PNGs into ``folder`` (created if needed) and return their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install matplotlib") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlotError(f"cannot create {str(folder)!r}: {exc.strerror}") from None

    series = (("TTFT", metrics.ttfts), ("TPOT", metrics.tpots), ("ITL", metrics.itls),
              ("E2EL", metrics.e2els))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (name, values) in zip(axes.flat, series, strict=True):
        ms = [v * MS for v in values]
        ax.set_title(f"{name} (n={len(ms)})")
        ax.set_xlabel("ms")
        ax.set_ylabel("count")
        if ms:
            ax.hist(ms, bins=min(50, max(5, len(ms) // 4)), color="tab:blue", alpha=0.8)
            mean = statistics.fmean(ms)
            median = statistics.median(ms)
            ax.axvline(mean, color="tab:red", label=f"mean {mean:.1f}")
            ax.axvline(median, color="tab:green", linestyle="--", label=f"median {median:.1f}")
            ax.legend()
    fig.suptitle(f"Latency distributions {title}".strip())
    fig.tight_layout()
    latency_path = folder / "latency_histograms.png"
    fig.savefig(latency_path, dpi=100)
    plt.close(fig)

    tokens, active = tokens_per_second(outputs)
    fig, ax = plt.subplots(figsize=(11, 5))
    seconds = list(range(len(tokens)))
    ax.bar(seconds, tokens, width=1.0, align="edge", color="tab:blue", alpha=0.7)
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("output token chunks per second", color="tab:blue")
    twin = ax.twinx()
    twin.step([*seconds, len(seconds)], [*active, active[-1] if active else 0], where="post",
              color="tab:orange")
    twin.set_ylabel("requests active in the second", color="tab:orange")
    ax.set_title(f"Output tokens per second {title}".strip())
    fig.tight_layout()
    throughput_path = folder / "output_tokens_per_second.png"
    fig.savefig(throughput_path, dpi=100)
    plt.close(fig)
    return [latency_path, throughput_path]
