"""EnginePool against real simulated engines (each its own process), with its members built as
real OpenAIChatEngines: routing by load, caps and their queue, retries, the circuit breaker,
mid-stream failures and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from kimi_modes.endpoint import metrics_url
from kimi_modes.engines.base import (
    ChatRequest,
    Engine,
    EngineError,
    Event,
    Finish,
    UpstreamFailed,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamUnavailable,
)
from kimi_modes.engines.openai_chat import OpenAIChatEngine
from kimi_modes.engines.pool import EnginePool, PoolMember, parse_load
from kimi_modes.protocol.deltas import ContentDelta

MODEL = "moonshotai/Kimi-K2.5"
FAST = ("--ttft", "0", "--tpot", "0")

Start = Callable[..., Any]  # the start_simulator fixture


def ask(text: str = "Hello there, pool.", **fields: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], thinking=False, **fields)


async def answer(pool: EnginePool, request: ChatRequest | None = None) -> list[Event]:
    return [event async for event in pool.stream(request or ask())]


async def sim_get(sim: Any, path: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(sim.url + path)
        response.raise_for_status()
        return response.json() if path.startswith("/sim") else response.text


async def stats(sim: Any) -> dict[str, Any]:
    return dict(await sim_get(sim, "/sim/stats"))


async def control(sim: Any, **changes: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        (await client.post(sim.url + "/sim/control", json=changes)).raise_for_status()


async def chats(sim: Any) -> int:
    return int((await stats(sim))["by_path"].get("/v1/chat/completions", 0))


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 15.0) -> None:
    """Wait until ``check()`` holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {limit} s")
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def member(pool: EnginePool, name: str) -> dict[str, Any]:
    return next(m for m in pool.snapshot() if m["name"] == name)


def script(tmp_path: Path, rules: list[dict[str, Any]]) -> str:
    path = tmp_path / f"rules-{len(list(tmp_path.glob('rules-*')))}.json"
    path.write_text(json.dumps({"rules": rules}))
    return str(path)


@pytest.fixture
async def make_pool() -> AsyncIterator[Callable[..., EnginePool]]:
    """``make_pool(sims, caps=..., metrics=..., **pool_options)``: a pool named "pool" whose
    members are OpenAIChatEngines "m0", "m1", ... on the given simulators; all closed after."""
    engines: list[OpenAIChatEngine] = []
    pools: list[EnginePool] = []

    def make(sims: list[Any], *, caps: list[int | None] | None = None,
             metrics: list[str | None] | None = None, **options: Any) -> EnginePool:
        members = []
        for i, sim in enumerate(sims):
            engine = OpenAIChatEngine(f"m{i}", sim.v1, model=MODEL, read_timeout=60)
            engines.append(engine)
            members.append(PoolMember(engine, caps[i] if caps else None,
                                      metrics[i] if metrics else None))
        pool = EnginePool("pool", members, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.aclose()
    for engine in engines:
        await engine.aclose()


def test_parse_load_reads_sglang_names_and_sums_label_sets() -> None:
    text = (
        "# HELP sglang:num_queue_reqs The number of requests in the waiting queue\n"
        "# TYPE sglang:num_queue_reqs gauge\n"
        'sglang:num_queue_reqs{model_name="a"} 3.0\n'
        'sglang:num_queue_reqs{model_name="b"} 4.0\n'
        "# TYPE sglang:num_running_reqs gauge\n"
        'sglang:num_running_reqs{model_name="a"} 2.0\n'
        "# TYPE other_histogram histogram\n"
        'other_histogram_bucket{le="+Inf"} 1.0\n'
    )
    load = parse_load(text)
    assert (load.waiting, load.running) == (7.0, 2.0)
    assert (parse_load("").waiting, parse_load("").running) == (None, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"members": []}, "has no members"), ({"max_attempts": 0}, "max_attempts must be >= 1"),
     ({"queue_timeout": 0}, "queue_timeout must be > 0"),
     ({"cooldown": 5, "max_cooldown": 1}, "max_cooldown must be >= cooldown")],
)
def test_unworkable_settings_are_refused(options: dict[str, Any], message: str) -> None:
    engine = OpenAIChatEngine("m0", "http://127.0.0.1:9/v1")
    members = options.pop("members", [PoolMember(engine)])
    with pytest.raises(ValueError, match=message):
        EnginePool("pool", members, **options)
    with pytest.raises(ValueError, match="names must differ"):
        EnginePool("pool", [PoolMember(engine), PoolMember(engine)])
    with pytest.raises(ValueError, match="max_concurrency"):
        PoolMember(engine, max_concurrency=0)


async def test_requests_go_where_the_engine_queue_is_shorter(
        start_simulator: Start, make_pool: Callable[..., EnginePool]) -> None:
    busy = start_simulator(*FAST, "--max-num-seqs", "1")
    idle = start_simulator(*FAST)
    real = parse_load(await sim_get(busy, "/metrics"))  # the simulator's own exposition
    assert (real.waiting, real.running) == (0.0, 0.0)
    pool = make_pool([busy, idle], metrics=[metrics_url(s.v1) for s in (busy, idle)],
                     metrics_interval=0.1)
    async with AsyncExitStack() as backlog, httpx.AsyncClient(timeout=60) as client:
        # Three long requests straight to the busy engine: one runs, two wait in its queue.
        for _ in range(3):
            await backlog.enter_async_context(client.stream(
                "POST", busy.v1 + "/chat/completions", headers={"x-sim-ttft": "60"},
                json={"model": MODEL, "stream": True,
                      "messages": [{"role": "user", "content": "hold"}]}))
        await until(lambda: _waiting(busy, 2), "queued on the busy engine")
        await pool.refresh_metrics()
        assert member(pool, "m0")["waiting"] == 2 and member(pool, "m0")["running"] == 1
        assert member(pool, "m1")["waiting"] == 0

        for _ in range(5):
            assert isinstance((await answer(pool))[-1], Finish)
        assert await chats(idle) == 5
        assert await chats(busy) == 3  # only the direct ones


    # The backlog is gone; while the pool is in use it sees that by itself, in the background.
    for sim in (busy, idle):
        await control(sim, ttft=30)
    hold = asyncio.create_task(answer(pool))
    await until(lambda: _true(member(pool, "m0")["waiting"] == 0), "read in the background")
    assert member(pool, "m0")["running"] == 0 or member(pool, "m1")["running"] == 0
    await stop(hold)


async def _waiting(sim: Any, count: int) -> bool:
    return int((await stats(sim))["waiting"]) == count


async def test_own_counts_spread_requests_evenly_when_metrics_cannot_be_read(
        start_simulator: Start, make_pool: Callable[..., EnginePool], unused_port: int) -> None:
    sims = [start_simulator("--ttft", "0.5", "--tpot", "0") for _ in range(3)]
    nowhere = f"http://127.0.0.1:{unused_port}/metrics"
    pool = make_pool(sims, metrics=[nowhere] * 3, metrics_interval=0.1)
    assert isinstance(pool, Engine)  # usable wherever an engine is
    await pool.refresh_metrics()  # fails: the figure stays unknown, the members healthy
    results = await asyncio.gather(*(answer(pool) for _ in range(9)))
    assert all(isinstance(events[-1], Finish) for events in results)
    assert [await chats(sim) for sim in sims] == [3, 3, 3]
    for snap in pool.snapshot():
        assert snap["healthy"] and snap["waiting"] is None and snap["metrics_age"] is None
        assert snap["served"] == 3 and snap["in_flight"] == 0 and snap["failed"] == 0


async def test_caps_hold_and_the_rest_wait_their_turn(
        start_simulator: Start, make_pool: Callable[..., EnginePool]) -> None:
    sims = [start_simulator("--ttft", "0.1", "--tpot", "0.01") for _ in range(2)]
    pool = make_pool(sims, caps=[2, 2])
    seen: list[int] = []
    queued: list[int] = []

    async def watch() -> None:
        while True:
            seen.extend(snap["in_flight"] for snap in pool.snapshot())
            queued.append(pool.queued)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(answer(pool, ask(f"request {i}")) for i in range(10)))
    await stop(watcher)
    assert all(isinstance(events[-1], Finish) for events in results)
    assert max(seen) == 2 and max(queued) >= 1  # some had to wait
    for sim in sims:
        sim_stats = await stats(sim)
        assert sim_stats["max_running"] == 2
    assert sum([await chats(sim) for sim in sims]) == 10
    assert pool.queued == 0 and all(s["in_flight"] == 0 for s in pool.snapshot())


async def _true(value: bool) -> bool:
    return value


async def test_waiting_requests_are_served_first_come_first_served(
        start_simulator: Start, make_pool: Callable[..., EnginePool]) -> None:
    sim = start_simulator(*FAST)
    pool = make_pool([sim], caps=[1])
    holder = pool.stream(ask("request 0"))
    await holder.__anext__()  # holds the one slot until closed
    tasks = []
    for i in range(1, 5):
        tasks.append(asyncio.create_task(answer(pool, ask(f"request {i}"))))
        await until(lambda i=i: _true(pool.queued == i), f"{i} queued")
    await holder.aclose()  # type: ignore[attr-defined]
    await asyncio.gather(*tasks)
    bodies = [r["body"] for r in (await stats(sim))["last_requests"]
              if r["path"] == "/v1/chat/completions"]
    assert [b["messages"][-1]["content"] for b in bodies] == [f"request {i}" for i in range(5)]
    assert (await stats(sim))["max_running"] == 1


async def test_a_stopped_member_is_failed_over_and_taken_out(
        start_simulator: Start, make_pool: Callable[..., EnginePool],
        caplog: pytest.LogCaptureFixture) -> None:
    sims = [start_simulator(*FAST) for _ in range(3)]
    pool = make_pool(sims, backoff=0, failure_threshold=3, cooldown=60)
    sims[2].stop()  # connection refused from now on
    with caplog.at_level(logging.WARNING, logger="kimi_modes.engines.pool"):
        for i in range(12):
            assert isinstance((await answer(pool, ask(f"request {i}")))[-1], Finish)
    assert await chats(sims[0]) + await chats(sims[1]) == 12
    dead = member(pool, "m2")
    assert not dead["healthy"] and dead["state"] == "open"
    assert dead["consecutive_failures"] == 3 and dead["failed"] == 3
    assert dead["out_until"] > time.time() + 30
    assert "cannot reach" in dead["last_error"]
    out = [r for r in caplog.records if "taken out" in r.getMessage()]
    assert len(out) == 1 and "'m2'" in out[0].getMessage()


async def test_a_member_that_comes_back_serves_again_after_its_cooldown(
        start_simulator: Start, make_pool: Callable[..., EnginePool],
        caplog: pytest.LogCaptureFixture) -> None:
    sims = [start_simulator(*FAST) for _ in range(2)]
    pool = make_pool(sims, backoff=0, failure_threshold=2, cooldown=0.5)
    await control(sims[0], down=True)
    with caplog.at_level(logging.WARNING, logger="kimi_modes.engines.pool"):
        for _ in range(10):
            assert isinstance((await answer(pool))[-1], Finish)
            if member(pool, "m0")["failed"] == 2:
                break
        assert any("'m0' taken out" in r.getMessage() for r in caplog.records)
        await control(sims[0], down=False)
        await until(lambda: _true(member(pool, "m0")["state"] == "half_open"), "half open")
        for _ in range(10):
            assert isinstance((await answer(pool))[-1], Finish)
            if member(pool, "m0")["served"]:
                break
    back = member(pool, "m0")
    assert back["served"] == 1 and back["healthy"] and back["consecutive_failures"] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("'m0' taken out" in m for m in messages) == 1
    assert sum("'m0' is back in service" in m for m in messages) == 1


async def test_retry_after_is_honoured_and_the_request_goes_elsewhere(
        start_simulator: Start, make_pool: Callable[..., EnginePool]) -> None:
    busy = start_simulator(*FAST, "--fail-rate", "1", "--fail-status", "429",
                           "--retry-after", "30")
    good = start_simulator(*FAST)
    pool = make_pool([busy, good], failure_threshold=10, max_backoff=60)
    assert isinstance((await answer(pool))[-1], Finish)  # tried on m0 first (round-robin)
    assert (await chats(busy), await chats(good)) == (1, 1)
    for _ in range(4):  # m0 asked us to wait 30 s: nothing goes there meanwhile
        assert isinstance((await answer(pool))[-1], Finish)
    assert (await chats(busy), await chats(good)) == (1, 5)
    snap = member(pool, "m0")
    assert snap["failed"] == 1 and snap["healthy"]

    # Alone, the pool waits the Retry-After before asking the same member again.
    await control(busy, retry_after=1)
    alone = make_pool([busy], max_attempts=2, failure_threshold=10)
    started = time.monotonic()
    with pytest.raises(UpstreamOverloaded) as info:
        await answer(alone)
    assert time.monotonic() - started >= 0.95
    assert info.value.upstream == "m0" and info.value.retry_after == 1
    assert await chats(busy) == 3


async def test_bad_requests_and_broken_streams_are_not_retried(
        start_simulator: Start, make_pool: Callable[..., EnginePool], tmp_path: Path) -> None:
    rules = script(tmp_path, [{"match": {"user": "cut me"}, "fault": "cut:5",
                               "reply": {"content": "one two three four five six seven eight"}}])
    sims = [start_simulator(*FAST, "--script", rules) for _ in range(2)]
    pool = make_pool(sims)

    with pytest.raises(UpstreamRejected) as rejected:
        await answer(pool, ask(extra={"n": 0}))
    assert rejected.value.status == 400
    assert await chats(sims[0]) + await chats(sims[1]) == 1
    assert all(s["failed"] == 0 and s["consecutive_failures"] == 0 for s in pool.snapshot())

    got: list[Event] = []
    with pytest.raises(UpstreamFailed) as cut:
        async for event in pool.stream(ask("Please cut me off half-way, then say more.")):
            got.append(event)
    assert any(isinstance(e, ContentDelta) for e in got)  # partial output came first
    assert not any(isinstance(e, Finish) for e in got)
    assert await chats(sims[0]) + await chats(sims[1]) == 2  # no second try
    broken = member(pool, cut.value.upstream)
    assert broken["failed"] == 1 and broken["in_flight"] == 0
    assert isinstance((await answer(pool))[-1], Finish)


async def test_cancelled_and_timed_out_requests_free_their_places(
        start_simulator: Start, make_pool: Callable[..., EnginePool], tmp_path: Path) -> None:
    rules = script(tmp_path, [{"match": {"user": "slow"}, "ttft": 60},
                              {"match": {"user": "long"}, "tpot": 0.05,
                               "reply": {"content": "word " * 200}}])
    sim = start_simulator(*FAST, "--script", rules)
    pool = make_pool([sim], caps=[1])

    running = asyncio.create_task(answer(pool, ask("slow")))
    await until(lambda: _true(member(pool, "m0")["in_flight"] == 1), "sent")
    queued = asyncio.create_task(answer(pool, ask("slow")))
    await until(lambda: _true(pool.queued == 1), "queued")
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert pool.queued == 0 and member(pool, "m0")["in_flight"] == 1

    timed = make_pool([sim], caps=[1], queue_timeout=0.2)
    hold = asyncio.create_task(answer(timed, ask("slow")))
    await until(lambda: _true(member(timed, "m0")["in_flight"] == 1), "sent")
    with pytest.raises(UpstreamOverloaded, match=r"within 0\.2 s"):
        await answer(timed)
    assert timed.queued == 0
    await stop(hold)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert member(pool, "m0")["in_flight"] == 0
    await until(lambda: _cancelled(sim, 2), "cancelled upstream")

    stream = pool.stream(ask("long answer please"))
    await stream.__anext__()
    assert member(pool, "m0")["in_flight"] == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert member(pool, "m0")["in_flight"] == 0
    await until(lambda: _cancelled(sim, 3), "cancelled upstream")

    assert isinstance((await answer(pool))[-1], Finish)
    snap = member(pool, "m0")
    assert snap["failed"] == 0 and snap["served"] == 1 and snap["in_flight"] == 0


async def _cancelled(sim: Any, count: int) -> bool:
    return int((await stats(sim))["cancelled"]) == count


async def test_when_every_member_is_out_for_long_requests_fail_at_once(
        start_simulator: Start, make_pool: Callable[..., EnginePool]) -> None:
    sim = start_simulator(*FAST)
    await control(sim, down=True)
    pool = make_pool([sim], backoff=0, failure_threshold=1, cooldown=30, max_backoff=1)
    with pytest.raises(UpstreamOverloaded) as first:  # its own error: the engine's 503
        await answer(pool)
    assert first.value.upstream == "m0"
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="every member is out") as second:
        await answer(pool)
    assert second.value.upstream == "pool"
    assert time.monotonic() - started < 20  # it did not wait for the 30 s cooldown
    assert await chats(sim) == 1
    assert isinstance(second.value, EngineError) and "HTTP 503" in str(second.value)


async def test_a_failing_trial_doubles_the_cooldown_up_to_its_limit(
        start_simulator: Start, make_pool: Callable[..., EnginePool],
        caplog: pytest.LogCaptureFixture) -> None:
    sim = start_simulator(*FAST)
    await control(sim, down=True)
    pool = make_pool([sim], backoff=0, failure_threshold=1, cooldown=0.2, max_cooldown=0.8,
                     max_attempts=4, max_backoff=5)
    with caplog.at_level(logging.WARNING, logger="kimi_modes.engines.pool"), \
            pytest.raises(UpstreamOverloaded):
        await answer(pool)
    assert await chats(sim) == 4  # one try per cooldown, no spinning in between
    outs = [r.getMessage().split(" after ")[0] for r in caplog.records]
    assert outs == [f"pool member 'm0' taken out for {s} s" for s in ("0.2", "0.4", "0.8", "0.8")]


async def test_slot_counts_stay_right_under_random_cancellation(
        start_simulator: Start, make_pool: Callable[..., EnginePool]) -> None:
    sim = start_simulator("--ttft", "0.02", "--tpot", "0.002")
    pool = make_pool([sim], caps=[2])
    peak = 0

    async def watch() -> None:  # our own in-flight count, sampled as it changes
        nonlocal peak
        while True:
            peak = max(peak, member(pool, "m0")["in_flight"])
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    tasks = [asyncio.create_task(answer(pool, ask(f"request {i}"))) for i in range(30)]
    rng = random.Random(0)
    for task in rng.sample(tasks, 15):
        await asyncio.sleep(rng.random() * 0.05)
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    watcher.cancel()
    assert peak == 2  # the cap held on our side, and was used
    done = [r for r in results if isinstance(r, list)]
    assert all(isinstance(r, asyncio.CancelledError) for r in results if not isinstance(r, list))
    assert all(isinstance(r[-1], Finish) for r in done) and len(done) >= 15
    snap = member(pool, "m0")
    assert snap["in_flight"] == 0 and pool.queued == 0 and snap["failed"] == 0
    assert snap["served"] >= len(done)
    # The engine notices a cancelled stream at its next token, so for a moment it may still
    # count one that our side has closed and given its slot to the next request.
    assert (await stats(sim))["max_running"] <= 3
    assert isinstance((await answer(pool))[-1], Finish)
