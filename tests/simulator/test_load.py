"""Capacity (``--max-num-seqs``), queueing in ``/metrics``, and latencies (generous bounds)."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import TYPE_CHECKING, Any

import httpx
import orjson

if TYPE_CHECKING:
    from collections.abc import Callable

    from helpers.simulator import Sim

MODEL = "moonshotai/Kimi-K2.5"


async def timed_stream(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                       headers: dict[str, str] | None = None) -> tuple[float, float, list[float]]:
    """(start, first token time, arrival time of every token chunk)."""
    start = time.perf_counter()
    arrivals: list[float] = []
    async with client.stream("POST", url, json={**body, "stream": True},
                             headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                choices = orjson.loads(line[6:])["choices"]
                if choices and (choices[0]["delta"].get("content")
                                or choices[0]["delta"].get("reasoning")):
                    arrivals.append(time.perf_counter())
    return start, arrivals[0], arrivals


def body(tokens: int, text: str = "Go") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}],
            "max_tokens": tokens, "ignore_eos": True,
            "chat_template_kwargs": {"thinking": False}}


def test_capacity_queues_fifo_and_shows_in_metrics(start_simulator: Callable[..., Sim]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0.02", "--max-num-seqs", "2")
    seen: list[dict[str, float]] = []

    async def run() -> list[float]:
        async with httpx.AsyncClient(timeout=30) as client:
            url = sim.v1 + "/chat/completions"
            tasks = []
            for i in range(5):
                tasks.append(asyncio.create_task(timed_stream(client, url, body(25, f"r{i}"))))
                await asyncio.sleep(0.02)  # a definite arrival order
            await asyncio.sleep(0.1)
            seen.append(await asyncio.to_thread(sim.metrics))
            results = await asyncio.gather(*tasks)
        return [first for _, first, _ in results]

    firsts = asyncio.run(run())
    metrics = seen[0]
    assert metrics["vllm:num_requests_running"] == 2
    assert metrics["vllm:num_requests_waiting"] == 3
    assert firsts == sorted(firsts)  # first come, first served
    stats = sim.stats()
    assert stats["max_running"] == 2 and stats["finished"] == {"length": 5}
    final = sim.metrics()
    assert final["vllm:num_requests_waiting"] == 0
    assert final["vllm:generation_tokens_total"] == 5 * 25
    assert final["vllm:request_success_total:length"] == 5


def test_latencies_follow_the_settings(start_simulator: Callable[..., Sim]) -> None:
    sim = start_simulator("--ttft", "0.15", "--tpot", "0.02")

    async def run(headers: dict[str, str] | None = None) -> list[tuple[float, float, list[float]]]:
        async with httpx.AsyncClient(timeout=30) as client:
            url = sim.v1 + "/chat/completions"
            return await asyncio.gather(*(timed_stream(client, url, body(40), headers)
                                          for _ in range(8)))

    results = asyncio.run(run())
    ttfts = [first - start for start, first, _ in results]
    tpots = [(a[-1] - a[0]) / 39 for _, _, a in results]  # 40 tokens, one of them hidden
    assert 0.13 < statistics.median(ttfts) < 0.4
    assert 0.017 < statistics.median(tpots) < 0.03
    slow = asyncio.run(run({"x-sim-ttft": "0.4", "x-sim-tpot": "0"}))
    assert min(first - start for start, first, _ in slow) > 0.38
    sim.control(ttft=0.0, tpot=0.0)
    fast = asyncio.run(run())
    assert max(a[-1] - start for start, _, a in fast) < 0.3


def test_jitter_keeps_the_mean(start_simulator: Callable[..., Sim]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0.01", "--jitter", "0.5", "--seed", "3")

    async def run() -> list[float]:
        async with httpx.AsyncClient(timeout=30) as client:
            _, _, arrivals = await timed_stream(client, sim.v1 + "/chat/completions", body(101))
        return [b - a for a, b in itertools.pairwise(arrivals)]

    gaps = asyncio.run(run())
    assert 0.008 < statistics.mean(gaps) < 0.015
    assert max(gaps) > 0.0125  # the gaps do vary
