"""The OpenAI wire encoders: usage only when known, invalid tool calls marked, all of it
readable by the official ``openai`` SDK's models."""

from __future__ import annotations

import orjson
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from kimi_modes.engines.base import (
    Choice,
    Event,
    Finish,
    InvalidToolCall,
    Logprobs,
    TokenLogprob,
    Usage,
)
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.server.openai_api import ChoicesEncoder, ChunkEncoder, completion_body

CALLS: list[Event] = [
    ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": "Paris"}'),
    ToolCallDelta(1, "functions.get_weather:1", "get_weather", '{"town": "Lyon"}'),
]
BAD = InvalidToolCall(1, "functions.get_weather:1", "missing required property 'city'")


def frames(data: bytes) -> list[dict]:
    out = []
    for block in data.split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            out.append(orjson.loads(block[6:]))
    return out


def stream(events: list[Event], *, include_usage: bool) -> list[dict]:
    encoder = ChunkEncoder("c1", "kimi-k2.5-instant", include_usage=include_usage)
    data = encoder.start() + b"".join(encoder.feed(e) for e in events) + encoder.end()
    assert data.endswith(b"data: [DONE]\n\n")
    chunks = frames(data)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def test_stream_sends_no_made_up_usage() -> None:
    chunks = stream([ContentDelta("hi"), Finish("stop")], include_usage=True)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_sends_known_usage_when_asked() -> None:
    events: list[Event] = [ContentDelta("hi"), Usage(7, 3), Finish("stop")]
    chunks = stream(events, include_usage=True)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3,
                                   "total_tokens": 10}
    assert all("usage" not in c for c in stream(events, include_usage=False))


def test_body_has_null_usage_when_unknown_and_the_real_one_otherwise() -> None:
    body = completion_body("c1", "kimi-k2.5-instant", [ContentDelta("hi"), Finish("stop")])
    assert body["usage"] is None
    assert ChatCompletion.model_validate(body).usage is None
    body = completion_body("c1", "m", [ContentDelta("hi"), Usage(5, 2, 1), Finish("stop")])
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                             "completion_tokens_details": {"reasoning_tokens": 1}}


def test_body_marks_invalid_tool_calls_and_keeps_them() -> None:
    body = completion_body("c1", "m", [*CALLS, BAD, Finish("tool_calls")])
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"city": "Paris"}',
                                                           '{"town": "Lyon"}']
    assert "error" not in calls[0]
    assert calls[1]["error"] == BAD.error
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.tool_calls[1].model_extra == {"error": BAD.error}


def test_stream_lists_invalid_tool_calls_on_the_finish_chunk() -> None:
    chunks = stream([*CALLS, BAD, Usage(9, 4), Finish("tool_calls")], include_usage=True)
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert finish["invalid_tool_calls"] == [
        {"index": 1, "id": "functions.get_weather:1", "error": BAD.error}]
    assert chunks[-1]["usage"]["total_tokens"] == 13
    assert all("invalid_tool_calls" not in c for c in chunks[:-2])
    valid = stream([*CALLS[:1], Finish("tool_calls")], include_usage=False)
    assert all("invalid_tool_calls" not in c for c in valid)


# --------------------------------------------------------------------- reading a request body

import pytest  # noqa: E402

from kimi_modes.server.errors import APIError  # noqa: E402
from kimi_modes.server.openai_api import OpenAIChat  # noqa: E402


def parsed(**fields: object) -> object:
    return OpenAIChat().parse({"model": "kimi-k2.5-thinking",
                               "messages": [{"role": "user", "content": "hi"}], **fields})


@pytest.mark.parametrize(
    ("fields", "thinking"),
    [
        ({"chat_template_kwargs": {"thinking": False}}, False),
        ({"chat_template_kwargs": {"thinking": True}}, True),
        ({"thinking": {"type": "disabled"}}, False),
        ({"thinking": {"type": "enabled"}}, True),
        ({"reasoning_effort": "none"}, False),
        ({"reasoning_effort": "high"}, None),
        ({"reasoning_effort": "medium", "chat_template_kwargs": {"thinking": True}}, True),
        ({"reasoning_effort": "low", "thinking": {"type": "disabled"}}, False),
        # Moonshot's thinking object without a type (KVV's "type omitted"): no switch.
        ({"thinking": {"keep": "all", "effort": "low"}}, None),
        ({}, None),
    ],
)
def test_the_thinking_switch_of_a_body(fields: dict, thinking: bool | None) -> None:
    # reasoning_effort levels other than "none" switch nothing: clients that always send
    # one keep the mode their model id names.
    assert parsed(**fields).thinking is thinking  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"chat_template_kwargs": {"thinking": "yes"}}, "chat_template_kwargs.thinking"),
        ({"chat_template_kwargs": {"enable_thinking": False}},
         "chat_template_kwargs.enable_thinking"),
        ({"thinking": {"type": "maybe"}}, "thinking.type"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"chat_template_kwargs": {"thinking": True}, "reasoning_effort": "none"},
         "chat_template_kwargs.thinking"),
    ],
)
def test_bad_or_disagreeing_switches_are_400_naming_the_field(fields: dict, param: str) -> None:
    with pytest.raises(APIError) as info:
        parsed(**fields)
    assert info.value.status == 400 and info.value.param == param


def test_agent_and_swarm_options_travel_beside_the_request() -> None:
    wire = parsed(agent={"max_steps": 3}, swarm={"fan_out": "required"}, top_k=5)
    assert wire.options.agent.max_steps == 3  # type: ignore[attr-defined]
    assert wire.options.swarm.fan_out == "required"  # type: ignore[attr-defined]
    assert wire.request.extra == {"top_k": 5}  # type: ignore[attr-defined]


def test_k3_effort_and_k26_preserve_travel_on_the_request() -> None:
    wire = parsed(chat_template_kwargs={"thinking_effort": "low", "preserve_thinking": True})
    assert wire.request.thinking_effort == "low"  # type: ignore[attr-defined]
    assert wire.request.preserve_thinking is True  # type: ignore[attr-defined]
    for kwargs, param in (({"thinking_effort": 3}, "chat_template_kwargs.thinking_effort"),
                          ({"preserve_thinking": "yes"},
                           "chat_template_kwargs.preserve_thinking")):
        with pytest.raises(APIError) as info:
            parsed(chat_template_kwargs=kwargs)
        assert info.value.param == param


@pytest.mark.parametrize(("fields", "effort"), [
    ({"thinking": {"type": "enabled", "effort": "low"}}, "low"),
    ({"thinking": {"type": "enabled", "keep": "all", "effort": "max"}}, "max"),
    ({"thinking": {"effort": "high"}}, "high"),
    ({"thinking": {"type": "enabled", "effort": "high"},
      "chat_template_kwargs": {"thinking_effort": "high"}}, "high"),
    ({"thinking": {"type": "enabled"}}, None),
])
def test_moonshots_thinking_effort_is_the_requests_effort(fields: dict,
                                                          effort: str | None) -> None:
    wire = parsed(reasoning_effort="low", **fields)
    assert wire.request.thinking_effort == effort  # type: ignore[attr-defined]
    assert wire.request.effort_hint == "low"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "param", "words"), [
    # K3's encoder has no "medium": refused as chat_template_kwargs.thinking_effort is.
    ({"thinking": {"type": "enabled", "effort": "medium"}}, "thinking.effort",
     ["'low', 'high' or 'max'"]),
    ({"chat_template_kwargs": {"thinking_effort": "medium"}},
     "chat_template_kwargs.thinking_effort", ["'low', 'high' or 'max'"]),
    ({"thinking": {"type": "enabled", "effort": "low"},
      "chat_template_kwargs": {"thinking_effort": "max"}},
     "chat_template_kwargs.thinking_effort",
     ["chat_template_kwargs.thinking_effort=max", "thinking.effort=low"]),
])
def test_a_bad_or_disagreeing_effort_is_a_400_naming_the_fields(fields: dict, param: str,
                                                                words: list[str]) -> None:
    with pytest.raises(APIError) as info:
        parsed(**fields)
    assert info.value.status == 400 and info.value.param == param
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("effort", "hint"), [
    ("minimal", "low"), ("low", "low"), ("medium", "high"), ("high", "high"),
    ("xhigh", "max"), ("max", "max"), ("none", None)])
def test_reasoning_effort_becomes_an_effort_hint(effort: str, hint: str | None) -> None:
    wire = parsed(reasoning_effort=effort)
    assert wire.request.effort_hint == hint  # type: ignore[attr-defined]
    assert wire.request.thinking_effort is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "param"), [
    ({"top_logprobs": 0}, "top_logprobs"), ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"), ({"n": 0}, "n"), ({"n": 129}, "n")])
def test_what_cannot_be_honoured_is_refused_not_dropped(fields: dict, param: str) -> None:
    with pytest.raises(APIError) as info:
        parsed(**fields)
    assert info.value.status == 400 and info.value.param == param


@pytest.mark.parametrize(("fields", "n", "logprobs"), [
    ({}, 1, None), ({"logprobs": False}, 1, None), ({"logprobs": True}, 1, 0),
    ({"logprobs": True, "top_logprobs": 3, "n": 4}, 4, 3)])
def test_n_and_logprobs_reach_the_request(fields: dict, n: int, logprobs: int | None) -> None:
    request = parsed(**fields).request  # type: ignore[attr-defined]
    assert (request.n, request.logprobs, request.extra) == (n, logprobs, {})


def _lp(token: str) -> TokenLogprob:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()),
            "top_logprobs": [{"token": token, "logprob": -0.5, "bytes": list(token.encode())}]}


#: Two choices, interleaved: choice 0 thinks and answers; choice 1 makes an invalid call.
CHOICES: list[Event] = [
    Choice(0), Logprobs([_lp("<think>")]), Logprobs([_lp("Hm")]), ReasoningDelta("Hm"),
    Choice(1), Logprobs([_lp("call")]), CALLS[1],
    Choice(0), Logprobs([_lp("</think>"), _lp("Hi")]), ContentDelta("Hi"),
    Logprobs([_lp("<|im_end|>")]), Finish("stop"),
    Choice(1), BAD, Finish("tool_calls"), Usage(5, 9),
]


def test_choices_stream_frame_by_choice_with_their_logprobs() -> None:
    encoder = ChoicesEncoder("c1", "m", include_usage=True, n=2)
    data = encoder.start() + b"".join(encoder.feed(e) for e in CHOICES) + encoder.end()
    chunks = frames(data)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[-1]["usage"]["completion_tokens"] == 9
    by_choice: dict[int, list[dict]] = {0: [], 1: []}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        by_choice[choice["index"]].append(choice)
    for index, reason in ((0, "stop"), (1, "tool_calls")):
        choices = by_choice[index]
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        assert [c["finish_reason"] for c in choices][-1] == reason
        assert all(c["finish_reason"] is None for c in choices[:-1])
    tokens = [[e["token"] for c in by_choice[i] for e in (c["logprobs"] or {}).get("content", [])]
              for i in (0, 1)]
    assert tokens == [["<think>", "Hm", "</think>", "Hi", "<|im_end|>"], ["call"]]
    # a token's logprobs go with the text it produced; a marker's with the next frame
    assert by_choice[0][1]["delta"] == {"reasoning_content": "Hm"}
    assert [e["token"] for e in by_choice[0][1]["logprobs"]["content"]] == ["<think>", "Hm"]
    finish = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
                  == "tool_calls")
    assert finish["invalid_tool_calls"] == [{"index": 1, "id": BAD.id, "error": BAD.error}]

    body = completion_body("c1", "m", CHOICES, logprobs=True)
    answer = ChatCompletion.model_validate(body)
    assert [c.finish_reason for c in answer.choices] == ["stop", "tool_calls"]
    assert answer.choices[0].message.content == "Hi"
    assert [e.token for e in answer.choices[0].logprobs.content] == tokens[0]  # type: ignore
    assert body["choices"][1]["message"]["tool_calls"][0]["error"] == BAD.error
    assert completion_body("c1", "m", CHOICES)["choices"][0]["logprobs"] is None


def test_logprobs_of_one_choice_and_choices_that_never_finished() -> None:
    encoder = ChoicesEncoder("c1", "m", include_usage=False, n=2)
    events: list[Event] = [Logprobs([_lp("a")]), ContentDelta("a"), Logprobs([_lp("b")])]
    chunks = frames(encoder.start() + b"".join(encoder.feed(e) for e in events)
                    + encoder.end())
    ends = [c["choices"][0] for c in chunks if c["choices"][0]["finish_reason"]]
    assert [(c["index"], c["finish_reason"]) for c in ends] == [(0, "stop"), (1, "stop")]
    assert [e["token"] for e in ends[0]["logprobs"]["content"]] == ["b"]
