"""The Responses wire format's pure parts: input items folded into chat messages, the typed
stream events and their order, the effort mapping, request validation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from kimi_modes.engines.base import Finish, InvalidToolCall, Logprobs, TokenLogprob, Usage
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.server.errors import APIError
from kimi_modes.server.responses_api.items import items_from_messages, messages_from_items
from kimi_modes.server.responses_api.request import ResponsesBody
from kimi_modes.server.responses_api.stream import ResponseEncoder

EVENTS = TypeAdapter(ResponseStreamEvent)


def frames(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.split(b"\n\n"):
        if block:
            kind, data = block.split(b"\n")
            event = orjson.loads(data.removeprefix(b"data: "))
            assert kind == b"event: " + event["type"].encode()
            EVENTS.validate_python(event)  # the SDK's own model of the event
            out.append(event)
    return out


def test_items_fold_into_one_assistant_message_per_turn() -> None:
    items = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [],
         "content": [{"type": "reasoning_text", "text": "think"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "functions.f:0", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "functions.f:0", "output": "42"},
        {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text",
                                                         "text": "short"}]},
        {"type": "message", "role": "assistant", "content": "It is 42."},
    ]
    assert messages_from_items(items) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me look.", "reasoning_content": "think",
         "tool_calls": [{"id": "functions.f:0", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "functions.f:0", "content": "42"},
        {"role": "assistant", "content": "It is 42.", "reasoning_content": "short"},
    ]
    back = items_from_messages(messages_from_items(items), "k")
    assert [i["type"] for i in back] == ["message", "message", "reasoning", "message",
                                         "function_call", "function_call_output",
                                         "reasoning", "message"]


def test_unsupported_items_are_refused_naming_them() -> None:
    with pytest.raises(APIError) as refused:
        messages_from_items([{"role": "user", "content": "x"}, {"type": "item_reference"}])
    assert refused.value.param == "input[1].type"


def test_stream_events_come_in_the_documented_order() -> None:
    encoder = ResponseEncoder("k", "kimi-k2.5-thinking", {})
    raw = encoder.start()
    for event in (ReasoningDelta("hm"), ReasoningDelta("m"), ContentDelta("Hi"),
                  ToolCallDelta(0, "functions.f:0", "f", '{"a"'), ToolCallDelta(0, None, None,
                                                                                ": 1}"),
                  ToolCallDelta(1, "functions.g:1", "g", "{}"),
                  InvalidToolCall(1, "functions.g:1", "no such tool"),
                  Usage(5, 7, 3), Finish("tool_calls")):
        raw += encoder.feed(event)
    events = frames(raw + encoder.end())
    assert [e["type"].removeprefix("response.") for e in events] == [
        "created", "in_progress",
        "output_item.added", "content_part.added", "reasoning_text.delta",
        "reasoning_text.delta", "reasoning_text.done", "content_part.done", "output_item.done",
        "output_item.added", "content_part.added", "output_text.delta", "output_text.done",
        "content_part.done", "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.delta",
        "function_call_arguments.done", "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.done",
        "output_item.done", "completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = Response.model_validate(events[-1]["response"])
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call",
                                              "function_call"]
    assert final.output[2].arguments == '{"a": 1}'
    assert final.output[3].model_extra == {"error": "no such tool"}
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 3
    # the whole body is what the stream added up to
    folded = ResponseEncoder("k", "kimi-k2.5-thinking", {}).fold([
        ReasoningDelta("hm"), ContentDelta("Hi"), Finish("stop")])
    assert [o["id"] for o in folded["output"]] == ["rs_k_0", "msg_k_1"]


def test_an_agent_alternating_reasoning_and_text_gets_an_item_each_time() -> None:
    body = ResponseEncoder("k", "kimi-k2.5-agent", {}).fold([
        ReasoningDelta("step 1"), ContentDelta("a"), ReasoningDelta("step 2"),
        ContentDelta("b"), Finish("stop")])
    assert [o["type"] for o in body["output"]] == ["reasoning", "message", "reasoning",
                                                   "message"]


def test_a_summary_request_streams_the_reasoning_as_a_summary() -> None:
    encoder = ResponseEncoder("k", "m", {}, summary=True)
    raw = encoder.feed(ReasoningDelta("why")) + encoder.end()
    kinds = [e["type"] for e in frames(raw)]
    assert kinds[:3] == ["response.output_item.added",
                         "response.reasoning_summary_part.added",
                         "response.reasoning_summary_text.delta"]


def test_a_failure_after_the_start_ends_with_response_failed() -> None:
    encoder = ResponseEncoder("k", "m", {})
    raw = encoder.start() + encoder.feed(ContentDelta("par"))
    raw += encoder.error(APIError(502, "upstream 'sim' failed", code="upstream_failed"))
    last = frames(raw)[-1]
    assert last["type"] == "response.failed"
    assert last["response"]["error"] == {"code": "server_error",
                                         "message": "upstream 'sim' failed"}
    assert last["response"]["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(("effort", "k3"), [
    ("minimal", "low"), ("low", "low"), ("medium", "high"), ("high", "high"), ("xhigh", "max"),
    ("none", None), (None, None)])
def test_effort_maps_to_k3_words_and_to_nothing_on_k2(effort: str | None,
                                                      k3: str | None) -> None:
    body: dict[str, object] = {"model": "kimi-k3-thinking", "input": "hi"}
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    request = ResponsesBody.model_validate(body).to_wire().request
    assert request.effort(("low", "high", "max")) == k3  # K3 takes it
    assert request.effort(()) is None  # a K2.x family ignores it


def test_the_body_becomes_one_chat_request() -> None:
    wire = ResponsesBody.model_validate({
        "model": "kimi-k2.5-thinking", "input": "hi", "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                  {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "f"}, "reasoning": {"effort": "none"},
        "max_output_tokens": 9, "parallel_tool_calls": False}).to_wire()
    assert wire.thinking is False
    assert wire.request.messages == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "hi"}]
    assert wire.request.tools == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}}}]  # hosted tools are left out
    assert wire.request.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert wire.request.max_tokens == 9
    assert wire.request.extra == {"parallel_tool_calls": False}
    with pytest.raises(APIError):
        ResponsesBody.model_validate({"model": "m", "input": "x", "background": True,
                                      "store": False}).to_wire()


def _lp(token: str) -> TokenLogprob:
    return {"token": token, "logprob": -1.0, "bytes": list(token.encode()), "top_logprobs": []}


def test_output_text_carries_the_logprobs_of_its_tokens_only() -> None:
    encoder = ResponseEncoder("k", "kimi-k2.5-thinking", {}, logprobs=True)
    raw = encoder.start()
    for event in (Logprobs([_lp("hm")]), ReasoningDelta("hm"), Logprobs([_lp("</think>")]),
                  Logprobs([_lp("H")]), ContentDelta("H"), Logprobs([_lp("i")]),
                  ContentDelta("i"), Logprobs([_lp("<|call|>")]),
                  ToolCallDelta(0, "functions.f:0", "f", "{}"), Finish("tool_calls")):
        raw += encoder.feed(event)
    events = frames(raw + encoder.end())
    deltas = [e["logprobs"] for e in events if e["type"] == "response.output_text.delta"]
    assert [[lp["token"] for lp in d] for d in deltas] == [["</think>", "H"], ["i"]]
    response = Response.model_validate(events[-1]["response"])
    message = next(item for item in response.output if item.type == "message")
    part = message.content[0]
    assert part.type == "output_text"
    assert [lp.token for lp in part.logprobs or ()] == ["</think>", "H", "i"]
    plain = ResponseEncoder("k", "m", {}).fold([Logprobs([_lp("a")]), ContentDelta("a"),
                                                  Finish("stop")])
    assert plain["output"][0]["content"][0]["logprobs"] == []


@pytest.mark.parametrize(("fields", "logprobs"), [
    ({}, None), ({"include": ["message.output_text.logprobs"]}, 0), ({"top_logprobs": 4}, 4),
    ({"include": ["message.output_text.logprobs"], "top_logprobs": 2}, 2)])
def test_logprobs_are_asked_by_include_or_top_logprobs(fields: dict[str, Any],
                                                      logprobs: int | None) -> None:
    wire = ResponsesBody.model_validate({"model": "m", "input": "hi", **fields}).to_wire()
    assert wire.request.logprobs == logprobs
