"""Responses streaming overhead: the same streaming load through the gateway's
``/v1/responses`` and its ``/v1/chat/completions``, on one simulated engine, in one run.

Reuses :mod:`gateway_overhead`'s machinery (the processes, the ramped load, the
percentiles): starts ``kimi-modes simulate`` and ``kimi-modes serve --upstream`` on loopback,
then runs ``--concurrency`` streams of ``--tokens`` tokens each (``ignore_eos``) on Instant,
alternating the two APIs ``--rounds`` times, and prints p50/p99 time to first token,
output-token throughput and the ratios. Responses are stored (``store`` defaults to true, as
the clients send it); ``--no-store`` measures without.
Targets: throughput within 5 % of chat completions, p50 TTFT at most +1 ms.

    python benchmarks/responses_overhead.py --concurrency 128 --tokens 256
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import time
from typing import Any

import aiohttp
import orjson
from gateway_overhead import StreamResult, _delayed, _pct, _start

PROMPT = "Write a long story about a lighthouse."


def _chat_tokens(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    delta = (choices[0].get("delta") or {}) if choices else {}
    return bool(delta.get("content") or delta.get("reasoning_content"))


def _responses_tokens(event: dict[str, Any]) -> bool:
    return event.get("type") in ("response.output_text.delta",
                                 "response.reasoning_text.delta")


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, responses: bool
               ) -> StreamResult:
    start = time.perf_counter()
    ttft = 0.0
    tokens = 0
    counts = _responses_tokens if responses else _chat_tokens
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            await resp.read()
            return StreamResult(0.0, 0, False)
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            if counts(orjson.loads(line[6:])):
                if tokens == 0:
                    ttft = time.perf_counter() - start
                tokens += 1
    return StreamResult(ttft, tokens, tokens > 0)


async def _load(url: str, body: dict[str, Any], responses: bool, concurrency: int,
                ramp: float) -> tuple[list[StreamResult], float]:
    raw = orjson.dumps(body)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _one(session, url, raw, responses)  # warm-up
        start = time.perf_counter()
        results = await asyncio.gather(
            *(_delayed(ramp * i / concurrency, _one(session, url, raw, responses))
              for i in range(concurrency)))
        wall = time.perf_counter() - start
    return list(results), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--ttft", type=float, default=0.05, help="engine's set time to first token")
    ap.add_argument("--tpot", type=float, default=0.02, help="engine's set time per token")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ramp", type=float, default=1.0,
                    help="seconds over which the stream starts are spread (0: one burst)")
    ap.add_argument("--no-store", action="store_true", help="send store: false")
    args = ap.parse_args()

    sim, sim_url = _start(["simulate", "--ttft", str(args.ttft), "--tpot", str(args.tpot),
                           "--log-level", "warning"])
    gw, gw_url = _start(["serve", "--upstream", sim_url + "/v1", "--no-access-log",
                         "--log-level", "warning"])
    chat_body = {"model": "kimi-k2.5-instant", "stream": True, "ignore_eos": True,
                 "max_tokens": args.tokens, "messages": [{"role": "user", "content": PROMPT}]}
    responses_body = {"model": "kimi-k2.5-instant", "stream": True, "ignore_eos": True,
                      "max_output_tokens": args.tokens, "input": PROMPT,
                      "store": not args.no_store}
    chat: list[tuple[list[StreamResult], float]] = []
    responses: list[tuple[list[StreamResult], float]] = []
    try:
        for _ in range(args.rounds):
            chat.append(asyncio.run(_load(gw_url + "/v1/chat/completions", chat_body, False,
                                          args.concurrency, args.ramp)))
            responses.append(asyncio.run(_load(gw_url + "/v1/responses", responses_body, True,
                                               args.concurrency, args.ramp)))
    finally:
        for proc in (gw, sim):
            proc.send_signal(signal.SIGINT)
            proc.wait(10)

    def summary(runs: list[tuple[list[StreamResult], float]]) -> tuple[float, float, float, int]:
        ttfts = [r.ttft for results, _ in runs for r in results if r.ok]
        failed = sum(1 for results, _ in runs for r in results if not r.ok)
        throughputs = [sum(r.tokens for r in results) / wall for results, wall in runs]
        return _pct(ttfts, 0.5), _pct(ttfts, 0.99), statistics.median(throughputs), failed

    c50, c99, ctp, cfail = summary(chat)
    r50, r99, rtp, rfail = summary(responses)
    print(f"responses overhead: {args.concurrency} concurrent streams x {args.tokens} tokens, "
          f"engine ttft {args.ttft * 1000:.0f} ms, tpot {args.tpot * 1000:.0f} ms, starts "
          f"spread over {args.ramp:g} s, {args.rounds} rounds (median throughput), "
          f"store={not args.no_store}")
    print(f"{'':18} {'p50 TTFT ms':>12} {'p99 TTFT ms':>12} {'tokens/s':>10} {'failed':>7}")
    print(f"{'chat/completions':18} {c50 * 1000:12.2f} {c99 * 1000:12.2f} {ctp:10.0f} "
          f"{cfail:7d}")
    print(f"{'responses':18} {r50 * 1000:12.2f} {r99 * 1000:12.2f} {rtp:10.0f} {rfail:7d}")
    print(f"p50 TTFT overhead: {(r50 - c50) * 1000:+.2f} ms (target <= 1 ms)")
    print(f"p99 TTFT overhead: {(r99 - c99) * 1000:+.2f} ms")
    print(f"throughput ratio responses/chat: {rtp / ctp:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
