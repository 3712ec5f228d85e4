"""An upstream that is a router (``router=True``), against real simulated engines: the headers
it schedules by arrive (and only at a router), its 429 keeps its status and Retry-After, and
an engine pool does not balance on top of router members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kimi_modes.engines.base import ChatRequest, Finish, UpstreamOverloaded
from kimi_modes.engines.openai_chat import OBJECTIVE_HEADERS, OpenAIChatEngine
from kimi_modes.engines.pool import EnginePool, PoolMember

MODEL = "moonshotai/Kimi-K2.5"
FAST = ("--ttft", "0", "--tpot", "0")

Start = Callable[..., Any]


def ask(**fields: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "Hello, router."}],
                       thinking=False, **fields)


@pytest.fixture
async def engines() -> AsyncIterator[Callable[..., OpenAIChatEngine]]:
    """``engines(sim, name, **options)``: an OpenAIChatEngine on ``sim``, closed after."""
    made: list[OpenAIChatEngine] = []

    def make(sim: Any, name: str = "r", **options: Any) -> OpenAIChatEngine:
        engine = OpenAIChatEngine(name, sim.v1, model=MODEL, read_timeout=60, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.aclose()


def received(sim: Any) -> list[dict[str, str]]:
    """The headers of each chat request the simulator received, in order."""
    return [r["headers"] for r in sim.stats()["last_requests"]
            if r["path"] == "/v1/chat/completions"]


async def finish(engine: Any, request: ChatRequest) -> None:
    events = [event async for event in engine.stream(request)]
    assert isinstance(events[-1], Finish)


async def test_a_router_gets_the_session_and_the_objective(
        start_simulator: Start, engines: Callable[..., OpenAIChatEngine]) -> None:
    sim = start_simulator(*FAST)
    router = engines(sim, router=True)
    await finish(router, ask(session_id="s_abc", objective="critical"))
    await finish(router, ask())  # nothing to send: no empty headers either
    await finish(engines(sim, "dyn", router=True, session_header="x-dynamo-session-id"),
                 ask(session_id="s_dyn"))
    await finish(engines(sim, "plain"), ask(session_id="s_abc", objective="critical"))
    tagged, bare, dynamo, plain = received(sim)
    assert tagged["x-session-id"] == "s_abc"
    assert [tagged[h] for h in OBJECTIVE_HEADERS] == ["critical", "critical"]
    assert OBJECTIVE_HEADERS == ("x-gateway-inference-objective", "x-llm-d-inference-objective")
    routing = {"x-session-id", "x-dynamo-session-id", *OBJECTIVE_HEADERS}
    assert not routing & set(bare)
    assert dynamo["x-dynamo-session-id"] == "s_dyn" and "x-session-id" not in dynamo
    assert not routing & set(plain)  # a plain engine gets none of it


async def test_a_routers_429_stays_a_429_with_its_retry_after(
        start_simulator: Start, engines: Callable[..., OpenAIChatEngine]) -> None:
    sim = start_simulator(*FAST, "--fail-rate", "1", "--fail-status", "429",
                          "--retry-after", "4")
    for engine, status in ((engines(sim, router=True), 429), (engines(sim, "plain"), 503)):
        with pytest.raises(UpstreamOverloaded) as info:
            await finish(engine, ask())
        assert (info.value.status, info.value.retry_after) == (status, 4)


async def test_a_pool_sends_everything_to_its_first_router_and_fails_over(
        start_simulator: Start, engines: Callable[..., OpenAIChatEngine]) -> None:
    first, second, plain = (start_simulator("--ttft", "0.3", "--tpot", "0") for _ in range(3))
    pool = EnginePool("workers", [
        PoolMember(engines(plain, "plain")),
        PoolMember(engines(first, "router-1", router=True), router=True),
        PoolMember(engines(second, "router-2", router=True), router=True),
    ], failure_threshold=1, cooldown=30, max_backoff=60)
    try:
        # Nine at once: least-loaded balancing would spread them; a router takes them all.
        await asyncio.gather(*(finish(pool, ask(session_id=f"s{i}")) for i in range(9)))
        counts = [len(received(sim)) for sim in (plain, first, second)]
        assert counts == [0, 9, 0]
        snap = {m["name"]: m for m in pool.snapshot()}
        assert snap["router-1"]["router"] and not snap["plain"]["router"]
        assert snap["router-1"]["waiting"] is None and snap["router-1"]["metrics_age"] is None

        first.control(fail_rate=1.0, fail_status=503)  # the first router sheds: fail over
        await finish(pool, ask(session_id="s9"))
        assert [len(received(sim)) for sim in (plain, first, second)] == [0, 10, 1]
        second.control(down=True)  # both routers out: the plain member serves at last
        await finish(pool, ask(session_id="s10"))
        assert len(received(plain)) == 1
    finally:
        await pool.aclose()


async def test_a_router_member_has_no_metrics_url() -> None:
    engine = OpenAIChatEngine("r", "http://127.0.0.1:9/v1", router=True)
    with pytest.raises(ValueError, match="is a router"):
        PoolMember(engine, metrics_url="http://127.0.0.1:9/metrics", router=True)
