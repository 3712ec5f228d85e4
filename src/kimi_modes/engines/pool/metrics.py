"""An engine's own load, read from its Prometheus ``/metrics`` text.

vLLM reports ``vllm:num_requests_waiting`` / ``vllm:num_requests_running``, SGLang
``sglang:num_queue_reqs`` / ``sglang:num_running_reqs`` (the simulated engine uses vLLM's
names). Values are summed over label sets (several models or engines behind one endpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
_WANTED = frozenset(WAITING + RUNNING)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """Requests queued in and running on an engine; ``None`` when it did not say."""

    waiting: float | None
    running: float | None


def parse_load(text: str) -> EngineLoad:
    """The queue depth and running count in a Prometheus text exposition.

    Only the lines of the wanted metrics are parsed: a vLLM exposition is mostly histograms,
    which would cost far more to parse than the two gauges we read."""
    kept = [line for line in text.splitlines() if _wanted_line(line)]
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(kept) + "\n"):
        for sample in family.samples:
            if sample.name in _WANTED and math.isfinite(sample.value):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return EngineLoad(_first(sums, WAITING), _first(sums, RUNNING))


def _wanted_line(line: str) -> bool:
    if line.startswith("#"):
        words = line.split(None, 3)
        return len(words) >= 3 and words[1] in ("HELP", "TYPE") and words[2] in _WANTED
    return line.split("{", 1)[0].split(None, 1)[0] in _WANTED if line.strip() else False


def _first(sums: dict[str, float], names: tuple[str, ...]) -> float | None:
    return next((sums[name] for name in names if name in sums), None)


class MetricsReader:
    """GETs ``/metrics`` texts over one pooled ``aiohttp`` session (opened on first use)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def read(self, url: str) -> EngineLoad:
        """The engine's load; raises (``aiohttp.ClientError``, ``TimeoutError``,
        ``ValueError``) when the endpoint cannot be read or parsed."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.get(url) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            return parse_load(await resp.text())

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
