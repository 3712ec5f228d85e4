"""Gateway overhead: the same streaming load straight to the simulated engine and through
the gateway with one worker and with ``--workers`` N, in one run.

Starts ``kimi-modes simulate`` and two ``kimi-modes serve --upstream`` (``--workers 1`` and
``--workers N``) as their own processes on loopback, then runs ``--concurrency`` streams of
``--tokens`` tokens each (``ignore_eos``) against each of the three in turn (``--rounds``
times), for two start patterns: a synchronised burst (every stream started at once) and
starts spread evenly over ``--ramp`` seconds. Prints p50/p99 time to first token,
output-token throughput and the ratios to direct, 1 and N workers side by side.
Targets: p50 TTFT overhead <= 2 ms, throughput >= 0.95 of direct.

    python benchmarks/gateway_overhead.py --concurrency 128 --tokens 256 --workers 4
    python benchmarks/gateway_overhead.py --baseline-src ../old-checkout   # old vs new
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SCRATCH = tempfile.TemporaryDirectory(prefix="gateway-overhead-")


def _start(args: list[str], src: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m kimi_modes ARGS --port P`` (from the source tree ``src`` when given);
    its process and URL once /health is ok."""
    port = _free_port()
    # Each process gets its own run store in a scratch folder: never the user's default one,
    # and a baseline of an older schema never meets a file a newer gateway migrated.
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "KIMI_MODES_AGENT__RUNS_DB": os.path.join(_SCRATCH.name, f"runs-{port}.sqlite3")}
    if src is not None:
        env["PYTHONPATH"] = os.path.join(src, "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kimi_modes", *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{args[0]} did not start")


@dataclass
class StreamResult:
    ttft: float
    tokens: int
    ok: bool


async def _one(session: aiohttp.ClientSession, url: str, body: bytes) -> StreamResult:
    start = time.perf_counter()
    ttft = 0.0
    tokens = 0
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            await resp.read()
            return StreamResult(0.0, 0, False)
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = orjson.loads(line[6:])
            choices = chunk.get("choices")
            if not choices:
                continue
            delta = choices[0].get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content"):
                if tokens == 0:
                    ttft = time.perf_counter() - start
                tokens += 1
    return StreamResult(ttft, tokens, tokens > 0)


async def _delayed(delay: float, work: Awaitable[StreamResult]) -> StreamResult:
    await asyncio.sleep(delay)
    return await work


async def _load(url: str, model: str, extra: dict[str, object], concurrency: int,
                tokens: int, ramp: float) -> tuple[list[StreamResult], float]:
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
            "max_tokens": tokens,
            "ignore_eos": True,
            "stream": True,
            **extra,
        }
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # one warm-up stream so connection set-up is not measured
        await _one(session, url, body)
        start = time.perf_counter()
        # Stream starts are spread evenly over `ramp` seconds (0: one synchronised burst).
        results = await asyncio.gather(
            *(_delayed(ramp * i / concurrency, _one(session, url, body))
              for i in range(concurrency))
        )
        wall = time.perf_counter() - start
    return list(results), wall


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Run = tuple[list[StreamResult], float]


def _summary(runs: list[Run]) -> tuple[float, float, float, int]:
    """p50 and p99 TTFT, the median round's throughput (tokens/s), failed streams."""
    ttfts = [r.ttft for results, _ in runs for r in results if r.ok] or [float("nan")]
    failed = sum(1 for results, _ in runs for r in results if not r.ok)
    throughputs = [sum(r.tokens for r in results) / wall for results, wall in runs]
    return _pct(ttfts, 0.5), _pct(ttfts, 0.99), statistics.median(throughputs), failed


def _report(title: str, columns: dict[str, list[Run]]) -> None:
    d50, _, dtp, _ = _summary(columns["direct"])
    rows = {name: _summary(runs) for name, runs in columns.items()}
    print(title)
    print(f"{'':22}" + "".join(f"{name:>18}" for name in rows))

    def line(label: str, cell: Callable[[tuple[float, float, float, int]], str]) -> None:
        print(f"{label:22}" + "".join(f"{cell(row):>18}" for row in rows.values()))

    line("p50 TTFT ms", lambda r: f"{r[0] * 1000:.2f}")
    line("p99 TTFT ms", lambda r: f"{r[1] * 1000:.2f}")
    line("tokens/s", lambda r: f"{r[2]:.0f}")
    line("failed streams", lambda r: f"{r[3]}")
    line("p50 overhead ms (<=2)", lambda r: f"{(r[0] - d50) * 1000:+.2f}")
    line("throughput/direct", lambda r: f"{r[2] / dtp:.3f}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--ttft", type=float, default=0.05, help="engine's set time to first token")
    ap.add_argument("--tpot", type=float, default=0.02, help="engine's set time per token")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ramp", type=float, default=1.0,
                    help="seconds over which the spread start's stream starts are spread")
    ap.add_argument("--burst", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the synchronised burst (every stream at once)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="the second gateway's --workers (default: one per core)")
    ap.add_argument("--baseline-src", metavar="DIR",
                    help="also run a one-worker gateway from this checkout (e.g. a worktree of "
                         "an older commit): its column is the baseline to compare with")
    args = ap.parse_args()

    sim, sim_url = _start(["simulate", "--ttft", str(args.ttft), "--tpot", str(args.tpot),
                           "--log-level", "warning"])
    gateways = {f"{n} worker{'s' if n > 1 else ''}": _start(
        ["serve", "--upstream", sim_url + "/v1", "--no-access-log", "--log-level", "warning",
         "--workers", str(n)]) for n in dict.fromkeys([1, args.workers])}
    if args.baseline_src:
        gateways["baseline 1 worker"] = _start(
            ["serve", "--upstream", sim_url + "/v1", "--no-access-log", "--log-level", "warning",
             "--workers", "1"], src=args.baseline_src)
    targets = {"direct": (sim_url, "moonshotai/Kimi-K2.5",
                          {"chat_template_kwargs": {"thinking": False}})}
    targets |= {name: (url, "kimi-k2.5-instant", {}) for name, (_, url) in gateways.items()}
    patterns = ([("synchronised burst", 0.0)] if args.burst else []) + [
        (f"starts spread over {args.ramp:g} s", args.ramp)]
    results: dict[str, dict[str, list[Run]]] = {p: {t: [] for t in targets} for p, _ in patterns}
    try:
        for _ in range(args.rounds):  # alternating, so drift in machine load hits all alike
            for pattern, ramp in patterns:
                for name, (url, model, extra) in targets.items():
                    results[pattern][name].append(asyncio.run(_load(
                        url + "/v1/chat/completions", model, extra, args.concurrency,
                        args.tokens, ramp)))
    finally:
        for proc, _ in [*gateways.values(), (sim, sim_url)]:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)

    print(f"gateway overhead: {args.concurrency} streams x {args.tokens} tokens, engine ttft "
          f"{args.ttft * 1000:.0f} ms, tpot {args.tpot * 1000:.0f} ms, {args.rounds} rounds "
          f"(median round's throughput), {os.cpu_count()} cores\n")
    for pattern, columns in results.items():
        _report(pattern, columns)


if __name__ == "__main__":
    main()
