"""The embedded engine on the real bundled model (SmolLM2-135M-Instruct via llama-cpp-python).

One engine is loaded for the whole module. Generations are short: the CI machine has two cores.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

import jsonschema

from kimi_modes.engines import ChatRequest, Finish, UpstreamRejected, UpstreamUnavailable, Usage
from kimi_modes.engines.base import Choice, Event, Logprobs
from kimi_modes.engines.embedded import EmbeddedEngine, default_model_path
from kimi_modes.engines.embedded import thinking as think
from kimi_modes.engines.embedded.model import default_threads, load_llama
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta

pytestmark = pytest.mark.embedded

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "where": {
            "type": "object",
            "properties": {
                "country": {"type": "string"},
                "coords": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                },
            },
            "required": ["country"],
        },
        "days": {"type": "integer"},
    },
    "required": ["city", "unit", "where"],
}
PYTHON_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "mode": {"enum": ["fast", "safe"]}},
    "required": ["code"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": WEATHER_PARAMS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "python",
            "description": "Run Python code.",
            "parameters": PYTHON_PARAMS,
        },
    },
]
SCHEMAS = {"get_weather": WEATHER_PARAMS, "python": PYTHON_PARAMS}


@pytest.fixture(scope="module")
def engine() -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(seed=7)
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.aclose())


def ask(text: str, **kwargs: Any) -> ChatRequest:
    kwargs.setdefault("thinking", False)
    kwargs.setdefault("max_tokens", 16)
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


async def collect(engine: EmbeddedEngine, request: ChatRequest) -> list[Event]:
    return [event async for event in engine.stream(request)]


def content(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, ContentDelta))


def reasoning(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningDelta))


def calls(events: list[Event]) -> list[ToolCallDelta]:
    return [e for e in events if isinstance(e, ToolCallDelta)]


def tail(events: list[Event]) -> tuple[Usage, Finish]:
    """The stream ends with exactly one Usage and then exactly one Finish."""
    usage, finish = events[-2], events[-1]
    assert isinstance(usage, Usage) and isinstance(finish, Finish)
    assert sum(isinstance(e, Usage | Finish) for e in events) == 2
    return usage, finish


def assert_valid_calls(events: list[Event], allowed: set[str]) -> list[ToolCallDelta]:
    found = calls(events)
    assert found, "expected tool calls"
    for index, call in enumerate(found):
        assert call.index == index
        assert call.name in allowed
        assert call.id == f"functions.{call.name}:{index}"
        arguments = json.loads(call.arguments)
        jsonschema.validate(arguments, SCHEMAS[call.name])
        assert call.arguments == json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    assert content(events) == ""
    return found


# -- loading ---------------------------------------------------------------------------------


def test_default_model_is_the_bundled_gguf() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


async def test_default_model_loads(engine: EmbeddedEngine) -> None:
    await engine.start()  # idempotent
    info = engine.model_info
    assert info is not None
    assert info.path == default_model_path()
    assert info.family is None  # SmolLM2 is not a Kimi model: own template, emulated thinking
    assert info.n_ctx == 4096


async def test_missing_model_is_a_clean_error() -> None:
    broken = EmbeddedEngine("/nonexistent/model.gguf")
    with pytest.raises(UpstreamUnavailable, match="not found"):
        await collect(broken, ask("hi"))
    await broken.aclose()


# -- streaming -------------------------------------------------------------------------------


async def test_content_deltas_add_up_to_the_direct_llama_cpp_text(engine: EmbeddedEngine) -> None:
    request = ask("Name a fruit.", temperature=0.0, max_tokens=12)
    events = await collect(engine, request)
    assert not reasoning(events)
    text = content(events)
    assert text and "<|im_" not in text
    usage, finish = tail(events)
    assert usage.completion_tokens <= 12 and usage.reasoning_tokens is None

    # The same prompt through llama-cpp-python's own API, greedy: the same text.
    # (load_llama: a plain Llama() would crash on VMs with a broken AMX, see model.py.)
    reference, _ = load_llama(
        default_model_path(), n_ctx=4096, n_threads=default_threads(), seed=None
    )
    direct = reference.create_chat_completion(
        [{"role": "user", "content": "Name a fruit."}],
        temperature=0.0,
        max_tokens=12,
        repeat_penalty=1.1,
    )
    reference.close()
    assert isinstance(direct, dict)
    assert text == (direct["choices"][0]["message"]["content"] or "").lstrip()
    assert finish.reason == direct["choices"][0]["finish_reason"]


async def test_same_seed_same_text(engine: EmbeddedEngine) -> None:
    first = await collect(engine, ask("Tell me about cats.", seed=42, temperature=0.9))
    second = await collect(engine, ask("Tell me about cats.", seed=42, temperature=0.9))
    assert content(first) == content(second)


async def test_thinking_is_emulated_cleanly(engine: EmbeddedEngine) -> None:
    events = await collect(engine, ask("What is 12 + 7?", thinking=True, max_tokens=24))
    kinds = [type(e) for e in events if isinstance(e, ReasoningDelta | ContentDelta)]
    first_content = kinds.index(ContentDelta)
    assert ReasoningDelta not in kinds[first_content:], "reasoning after content"
    thought, answer = reasoning(events), content(events)
    assert thought.strip() and answer.strip()
    for text in (thought, answer):
        assert "<|im_" not in text
        assert think.THINK_INSTRUCTION[:40] not in text
        assert think.ANSWER_REQUEST[:30] not in text
    usage, _ = tail(events)
    assert usage.reasoning_tokens is not None
    assert 0 < usage.reasoning_tokens < usage.completion_tokens <= 24


async def test_finish_length_and_usage(engine: EmbeddedEngine) -> None:
    events = await collect(engine, ask("Write a long story about a dragon.", max_tokens=5))
    usage, finish = tail(events)
    assert finish.reason == "length"
    assert usage.completion_tokens == 5
    assert usage.prompt_tokens > 10
    assert usage.total_tokens == usage.prompt_tokens + 5


async def test_finish_stop_on_a_stop_string(engine: EmbeddedEngine) -> None:
    events = await collect(
        engine, ask("Write a sentence about the sea.", stop=[" "], max_tokens=32)
    )
    _, finish = tail(events)
    assert finish.reason == "stop"
    assert " " not in content(events)


async def test_logprobs_are_those_the_tokens_were_sampled_from(engine: EmbeddedEngine) -> None:
    events = await collect(engine, ask("Name a fruit.", temperature=0.0, max_tokens=6,
                                       logprobs=3))
    entries = [entry for e in events if isinstance(e, Logprobs) for entry in e.content]
    usage, _ = tail(events)
    assert len(entries) == usage.completion_tokens
    for entry in entries:  # greedy: each token is its position's most likely one
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and tops[0]["token"] == entry["token"]
        assert tops[0]["logprob"] == entry["logprob"] <= 0
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert bytes(entry["bytes"] or ()).decode("utf-8", "replace") == entry["token"]
    assert content(events).strip() in "".join(entry["token"] for entry in entries)
    first = next(i for i, e in enumerate(events) if isinstance(e, Logprobs | ContentDelta))
    assert isinstance(events[first], Logprobs)  # a token's logprobs come before its text


async def test_n_choices_are_generated_one_after_another(engine: EmbeddedEngine) -> None:
    events = await collect(engine, ask("Tell me about cats.", seed=5, temperature=0.9,
                                       max_tokens=6, n=2))
    assert [e.index for e in events if isinstance(e, Choice)] == [0, 1]
    split = events.index(Choice(1))
    first, second = events[1:split], events[split + 1:-1]
    assert isinstance(first[-1], Finish) and isinstance(second[-1], Finish)
    usage = events[-1]
    assert isinstance(usage, Usage)
    singles = [await collect(engine, ask("Tell me about cats.", seed=seed, temperature=0.9,
                                         max_tokens=6)) for seed in (5, 6)]
    assert [content(first), content(second)] == [content(single) for single in singles]
    assert usage.completion_tokens == sum(tail(single)[0].completion_tokens
                                          for single in singles)


# -- tool calls ------------------------------------------------------------------------------


async def test_tool_choice_required_gives_valid_calls(engine: EmbeddedEngine) -> None:
    events = await collect(
        engine,
        ask("What is the weather in Paris?", tools=TOOLS, tool_choice="required", max_tokens=96),
    )
    _, finish = tail(events)
    assert finish.reason == "tool_calls"
    assert_valid_calls(events, {"get_weather", "python"})


async def test_tool_choice_named_calls_that_tool(engine: EmbeddedEngine) -> None:
    named = {"type": "function", "function": {"name": "python"}}
    events = await collect(
        engine, ask("What is the weather in Paris?", tools=TOOLS, tool_choice=named, max_tokens=64)
    )
    _, finish = tail(events)
    assert finish.reason == "tool_calls"
    found = assert_valid_calls(events, {"python"})
    assert len(found) == 1


async def test_tool_choice_auto_when_the_model_calls(engine: EmbeddedEngine) -> None:
    request = ask(
        "Call get_weather for Paris.", tools=TOOLS, temperature=0.0, max_tokens=96, seed=3
    )
    events = await collect(engine, request)
    _, finish = tail(events)
    if finish.reason == "tool_calls":
        assert_valid_calls(events, {"get_weather", "python"})
    else:  # the model chose to answer: that is allowed, and then nothing leaks as calls
        assert not calls(events) and content(events)


async def test_tool_choice_auto_when_the_model_answers(engine: EmbeddedEngine) -> None:
    events = await collect(engine, ask("Hello! How are you?", tools=TOOLS, max_tokens=12))
    assert not calls(events)
    assert not content(events).lstrip().startswith(("[", "{"))
    _, finish = tail(events)
    assert finish.reason in ("stop", "length")


async def test_tool_choice_none_never_calls(engine: EmbeddedEngine) -> None:
    events = await collect(
        engine, ask("Call get_weather for Paris.", tools=TOOLS, tool_choice="none", max_tokens=12)
    )
    assert not calls(events)
    _, finish = tail(events)
    assert finish.reason in ("stop", "length")


async def test_tool_calls_with_thinking(engine: EmbeddedEngine) -> None:
    events = await collect(
        engine,
        ask("Weather in Rome?", tools=TOOLS, tool_choice="required", thinking=True, max_tokens=96),
    )
    usage, finish = tail(events)
    assert reasoning(events)
    assert usage.reasoning_tokens
    if finish.reason == "tool_calls":
        assert_valid_calls(events, {"get_weather", "python"})
    else:  # the reasoning left too little room for the whole call: no partial call leaks
        assert finish.reason == "length"
        for call in calls(events):
            jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name or ""])


async def test_integer_bounds_and_free_values_are_enforced(engine: EmbeddedEngine) -> None:
    params = {
        "type": "object",
        "properties": {
            "seconds": {"type": "integer", "minimum": 1, "maximum": 600},
            "note": {"description": "anything at all"},
        },
        "required": ["seconds", "note"],
    }
    tools = [{"type": "function", "function": {"name": "sleep", "parameters": params}}]
    named = {"type": "function", "function": {"name": "sleep"}}
    finished = 0
    for seed in (1, 2, 3):
        events = await collect(
            engine,
            ask("Sleep for a day.", tools=tools, tool_choice=named, max_tokens=48, seed=seed),
        )
        _, finish = tail(events)
        if finish.reason == "tool_calls":
            (call,) = calls(events)
            jsonschema.validate(json.loads(call.arguments), params)
            finished += 1
    assert finished, "no call finished within max_tokens"


async def test_unknown_named_tool_is_rejected(engine: EmbeddedEngine) -> None:
    named = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(UpstreamRejected) as caught:
        await collect(engine, ask("hi", tools=TOOLS, tool_choice=named))
    assert caught.value.status == 400 and "nope" in caught.value.message


async def test_response_format_json_schema(engine: EmbeddedEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}},
        "required": ["color"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    events = await collect(
        engine,
        ask("Pick a color.", max_tokens=32, extra={"response_format": response_format}),
    )
    _, finish = tail(events)
    assert finish.reason == "stop"
    jsonschema.validate(json.loads(content(events)), schema)


# -- errors ----------------------------------------------------------------------------------


async def test_prompt_longer_than_the_context_is_rejected(engine: EmbeddedEngine) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await collect(engine, ask("word " * 6000))
    assert caught.value.status == 400
    assert "context window" in caught.value.message
    # and the engine still works afterwards
    assert content(await collect(engine, ask("Hi", max_tokens=4)))


# -- concurrency and cancellation ------------------------------------------------------------


async def test_concurrent_requests_run_one_at_a_time_in_arrival_order(
    engine: EmbeddedEngine,
) -> None:
    timeline: list[tuple[str, Event]] = []

    async def run(label: str, text: str) -> None:
        async for event in engine.stream(ask(text, max_tokens=8)):
            timeline.append((label, event))

    await asyncio.gather(run("a", "Say one thing."), run("b", "Say another thing."), run("c", "Hi"))
    labels = [label for label, _ in timeline]
    assert labels == sorted(labels), "requests interleaved or ran out of order"
    for label in "abc":
        assert isinstance([e for lab, e in timeline if lab == label][-1], Finish)


async def test_the_event_loop_keeps_running_during_generation(engine: EmbeddedEngine) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await collect(engine, ask("Write a short poem.", max_tokens=24))
    stop.set()
    await task
    assert len(gaps) > 10
    assert max(gaps) < 0.25  # generous: two busy cores and a shared CI machine


async def test_closing_the_stream_frees_the_engine_quickly(engine: EmbeddedEngine) -> None:
    stream = engine.stream(ask("Write a very long story about the ocean.", max_tokens=1000))
    async for event in stream:
        assert isinstance(event, ContentDelta)
        break
    await stream.aclose()
    started = time.perf_counter()
    events = await collect(engine, ask("Hi", max_tokens=2))
    assert isinstance(events[-1], Finish)
    # 1000 tokens would take several seconds; a freed engine answers at once.
    assert time.perf_counter() - started < 2.0


async def test_cancelling_the_consumer_task_frees_the_engine(engine: EmbeddedEngine) -> None:
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.stream(ask("Write a very long essay.", max_tokens=1000)):
            first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    await collect(engine, ask("Hi", max_tokens=2))
    assert time.perf_counter() - started < 2.0


async def test_a_queued_request_cancelled_before_it_starts_is_skipped(
    engine: EmbeddedEngine,
) -> None:
    async def consume(request: ChatRequest) -> list[Event]:
        return await collect(engine, request)

    running = asyncio.create_task(consume(ask("Count to twenty.", max_tokens=24)))
    queued = asyncio.create_task(consume(ask("Write a long story.", max_tokens=1000)))
    await asyncio.sleep(0.05)
    queued.cancel()
    events = await running
    assert isinstance(events[-1], Finish)
    with pytest.raises(asyncio.CancelledError):
        await queued
    started = time.perf_counter()
    await collect(engine, ask("Hi", max_tokens=2))
    assert time.perf_counter() - started < 2.0


# -- a Kimi model --------------------------------------------------------------------------


async def test_forced_kimi_family_goes_through_the_kimi_template_and_parser() -> None:
    """No Kimi GGUF can be downloaded here: force the Kimi path on the small model instead.

    SmolLM2 does not know Kimi's tokens, so this checks the plumbing (our template in, our
    parser out, stop strings, usage), not the quality of what it writes.
    """
    protocol = pytest.importorskip("kimi_modes.protocol")
    if not hasattr(protocol, "render_prompt") or not hasattr(protocol, "StreamingParser"):
        pytest.skip("kimi_modes.protocol has no render_prompt/StreamingParser yet")
    kimi = EmbeddedEngine(family="k2.5", n_ctx=1024, seed=1)
    try:
        events = await collect(kimi, ask("Hi", thinking=True, max_tokens=8))
        assert kimi.family == "k2.5"
        usage, finish = tail(events)
        assert usage.completion_tokens <= 8
        assert finish.reason in ("stop", "length")
        for event in events:
            if isinstance(event, ReasoningDelta | ContentDelta):
                assert "<think>" not in event.text and "<|im_end|>" not in event.text
    finally:
        await kimi.aclose()


async def test_closing_the_engine_ends_running_and_queued_requests() -> None:
    closing = EmbeddedEngine(n_ctx=512)
    await closing.start()
    running = asyncio.create_task(collect(closing, ask("Write a long story.", max_tokens=500)))
    queued = asyncio.create_task(collect(closing, ask("Write a long poem.", max_tokens=500)))
    await asyncio.sleep(0.3)
    await asyncio.wait_for(closing.aclose(), timeout=10)
    for task in (running, queued):
        with pytest.raises(UpstreamUnavailable, match="closed"):
            await asyncio.wait_for(task, timeout=10)


async def test_closed_engine_refuses_requests() -> None:
    closing = EmbeddedEngine()
    await closing.aclose()
    await closing.aclose()  # idempotent
    with pytest.raises(UpstreamUnavailable, match="closed"):
        await collect(closing, ask("hi"))
