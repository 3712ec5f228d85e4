"""``/v1/chat/completions`` through the official openai SDK and raw HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from helpers.simulator import Sim

MODEL = "moonshotai/Kimi-K2.5"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
        },
    },
}


def test_non_streaming_answer_with_reasoning(sim: Sim) -> None:
    reply = sim.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}]
    )
    choice = reply.choices[0]
    assert choice.message.content == "You said: Hello there"
    assert choice.finish_reason == "stop"
    assert "2 words" in (choice.message.model_extra or {})["reasoning"]
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_matches_non_streaming(sim: Sim) -> None:
    messages = [{"role": "user", "content": "Tell me about lighthouses and the sea"}]
    whole = sim.openai().chat.completions.create(model=MODEL, messages=messages)
    stream = sim.openai().chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    reasoning, content, finish, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning") or ""
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert content == whole.choices[0].message.content
    assert reasoning == (whole.choices[0].message.model_extra or {})["reasoning"]
    assert finish == "stop"
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.parametrize("chunk", [1, 3])
def test_n_choices_and_logprobs_stream_as_vllms(sim: Sim, chunk: int) -> None:
    sim.control(tokens_per_chunk=chunk)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about the sea"}],
            "n": 2, "logprobs": True, "top_logprobs": 3}
    whole = httpx.post(sim.v1 + "/chat/completions", json=body).json()
    assert [c["index"] for c in whole["choices"]] == [0, 1]
    tokens = whole["usage"]["completion_tokens"]
    for choice in whole["choices"]:
        entries = choice["logprobs"]["content"]
        assert len(entries) == tokens // 2  # every token, the stop token included
        assert entries[-1]["token"] == "<|im_end|>"
        assert all(len(e["top_logprobs"]) == 3 and e["top_logprobs"][0]["token"] == e["token"]
                   and e["top_logprobs"][0]["logprob"] == e["logprob"] for e in entries)
    events = sim.sse({**body, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == tokens
    streamed: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for event in events[:-2]:
        (choice,) = event["choices"]
        streamed[choice["index"]] += (choice["logprobs"] or {}).get("content", [])
    for index, choice in enumerate(whole["choices"]):
        full = choice["logprobs"]["content"]
        # a step sending no chunk (the reasoning's end marker alone) loses its logprobs
        kept = [e for e in full if e["token"] != "</think>"] if chunk == 1 else full
        assert kept == streamed[index]
    ends = [e["choices"][0] for e in events[:-2] if e["choices"][0]["finish_reason"]]
    assert sorted(c["index"] for c in ends) == [0, 1]


def test_completions_logprobs_are_the_completions_apis(sim: Sim) -> None:
    answer = sim.openai().completions.create(model=MODEL, prompt="Say hi", max_tokens=4,
                                             logprobs=2, n=2)
    assert [c.index for c in answer.choices] == [0, 1]
    for choice in answer.choices:
        logprobs = choice.logprobs
        assert logprobs is not None and len(logprobs.tokens or ()) == 4
        assert all(len(top) == 2 for top in logprobs.top_logprobs or ())
        assert logprobs.text_offset == [0, *[sum(len(t) for t in (logprobs.tokens or ())[:i])
                                             for i in range(1, 4)]]


def test_chunk_shapes_are_vllm_s(sim: Sim) -> None:
    events = sim.sse(
        {"messages": [{"role": "user", "content": "Hi"}], "stream_options": {"include_usage": True}}
    )
    first, *middle, finish, usage, done = events
    assert first["object"] == "chat.completion.chunk" and first["model"] == MODEL
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(set(e["choices"][0]["delta"]) <= {"reasoning", "content"} for e in middle)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["stop_reason"] is None
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert done == "[DONE]"
    assert len({e["id"] for e in events[:-1]}) == 1


def test_request_id_header_names_the_completion(sim: Sim) -> None:
    events = sim.sse(
        {"messages": [{"role": "user", "content": "Hi"}]}, headers={"x-request-id": "abc123"}
    )
    assert events[0]["id"] == "chatcmpl-abc123"


@pytest.mark.parametrize("kwargs", [{"thinking": False}])
def test_thinking_off_gives_no_reasoning(sim: Sim, kwargs: dict[str, Any]) -> None:
    reply = sim.openai().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"chat_template_kwargs": kwargs},
    )
    assert (reply.choices[0].message.model_extra or {}).get("reasoning") is None
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0
    stats = sim.stats()
    assert stats["last_requests"][-1]["body"]["chat_template_kwargs"] == kwargs


def test_enable_thinking_is_not_kimis_switch(sim: Sim) -> None:
    reply = sim.openai().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert (reply.choices[0].message.model_extra or {}).get("reasoning")


def test_reasoning_field_can_be_the_old_name_or_both(start_simulator: Any) -> None:
    old = start_simulator("--ttft", "0", "--tpot", "0", "--reasoning-field", "reasoning_content")
    both = start_simulator("--ttft", "0", "--tpot", "0", "--reasoning-field", "both")
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    old_deltas = [e["choices"][0]["delta"] for e in old.sse(body)[1:-2]]
    both_deltas = [e["choices"][0]["delta"] for e in both.sse(body)[1:-2]]
    assert any("reasoning_content" in d for d in old_deltas)
    assert not any("reasoning" in d for d in old_deltas)
    assert any(
        d.get("reasoning") and d["reasoning"] == d.get("reasoning_content") for d in both_deltas
    )


def test_tool_call_streams_as_vllm_does(sim: Sim) -> None:
    body = {
        "messages": [{"role": "user", "content": "Use get_weather with city=Paris"}],
        "tools": [WEATHER],
    }
    events = sim.sse(body)
    calls = [d for e in events[:-1] for d in e["choices"][0]["delta"].get("tool_calls", [])]
    head, *pieces = calls
    assert head == {
        "index": 0,
        "id": "functions.get_weather:0",
        "type": "function",
        "function": {"name": "get_weather"},
    }
    assert all(
        set(p) == {"index", "function"} and set(p["function"]) == {"arguments"} for p in pieces
    )
    arguments = json.loads("".join(p["function"]["arguments"] for p in pieces))
    assert arguments == {"city": "Paris", "unit": "celsius", "days": 1}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert sim.stats()["last_requests"][-1]["body"]["tools"] == [WEATHER]


def test_tool_call_through_the_sdk_then_a_summary(sim: Sim) -> None:
    messages: list[Any] = [{"role": "user", "content": "Call get_weather for days=3 please"}]
    reply = sim.openai().chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "functions.get_weather:0"
    assert json.loads(call.function.arguments)["days"] == 3
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    final = sim.openai().chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == (
        'Here is what the tools returned. get_weather: {"temp": 21}'
    )


def test_tools_named_in_order_give_parallel_calls(sim: Sim) -> None:
    time_tool = {"type": "function", "function": {"name": "now", "parameters": {}}}
    reply = sim.openai().chat.completions.create(
        model=MODEL,
        tools=[WEATHER, time_tool],
        messages=[{"role": "user", "content": "First now, then get_weather"}],
    )
    calls = reply.choices[0].message.tool_calls or []
    assert [c.id for c in calls] == ["functions.now:0", "functions.get_weather:1"]
    assert calls[0].function.arguments == "{}"


def test_tool_choice_none_and_required(sim: Sim) -> None:
    ask = [{"role": "user", "content": "get_weather now"}]
    none = sim.openai().chat.completions.create(
        model=MODEL, messages=ask, tools=[WEATHER], tool_choice="none"
    )
    assert none.choices[0].message.tool_calls is None
    plain = [{"role": "user", "content": "anything"}]
    required = sim.openai().chat.completions.create(
        model=MODEL, messages=plain, tools=[WEATHER], tool_choice="required"
    )
    assert required.choices[0].message.tool_calls is not None


def test_max_tokens_gives_length(sim: Sim) -> None:
    reply = sim.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert reply.choices[0].message.content is None  # all three were reasoning


@pytest.mark.parametrize("chunk", [1, 7])
def test_ignore_eos_generates_exactly_max_tokens(sim: Sim, chunk: int) -> None:
    sim.control(tokens_per_chunk=chunk)
    events = sim.sse(
        {
            "messages": [{"role": "user", "content": "Go"}],
            "max_tokens": 100,
            "ignore_eos": True,
            "chat_template_kwargs": {"thinking": False},
            "stream_options": {"include_usage": True},
        }
    )
    assert events[-2]["usage"]["completion_tokens"] == 100
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text.startswith("You said: Go The lighthouse keeper")
    content_chunks = sum(1 for e in events[1:-2] if e["choices"][0]["delta"].get("content"))
    assert content_chunks == (99 if chunk == 1 else -(-100 // chunk))  # <|im_end|> is hidden


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"n": 0}, 400, "n"),
        ({"top_logprobs": 2}, 400, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
        ({"model": "other-model"}, 404, "model"),
        ({"max_tokens": 0}, 400, "max_tokens"),
        ({"max_tokens": 10_000_000}, 400, "max_tokens"),
        ({"messages": []}, 400, "messages"),
    ],
)
def test_invalid_requests_get_vllm_errors(
    sim: Sim, body: dict[str, Any], status: int, param: str
) -> None:
    request = {"messages": [{"role": "user", "content": "Hi"}], **body}
    response = httpx.post(sim.v1 + "/chat/completions", json=request)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["code"] == status


def test_malformed_json_is_a_400(sim: Sim) -> None:
    response = httpx.post(
        sim.v1 + "/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequestError"
    with pytest.raises(openai.BadRequestError):
        sim.openai().chat.completions.create(model=MODEL, messages=[], n=1)


def test_models_health_version(sim: Sim) -> None:
    models = sim.openai().models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert (models.data[0].model_extra or {})["max_model_len"] == 262144
    assert httpx.get(sim.url + "/health").status_code == 200
    assert httpx.get(sim.url + "/version").json()["version"]
