"""The Anthropic translation layer, checked against the real ``anthropic`` SDK.

Requests: bodies are converted to the engines' OpenAI chat shape, including bodies the SDK
itself builds. Responses: the encoder's bytes and the non-streaming body are served to the
SDK through an ``httpx2.MockTransport`` (the SDK's HTTP layer; a transport double is the
right seam for a pure encoder) and must parse, stream and accumulate as Anthropic's do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import MessageParam, RawMessageStartEvent, ToolParam, ToolUseBlock
from hypothesis import given, settings
from hypothesis import strategies as st

from kimi_modes.engines.base import ChatRequest, Event, Finish, InvalidToolCall, Usage
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.server.anthropic_api import (
    RAW_ARGUMENTS_KEY,
    TEMPERATURE_SCALE,
    THINKING_SIGNATURE,
    AnthropicRequestError,
    MessageStreamEncoder,
    anthropic_error_body,
    anthropic_error_type,
    build_message_response,
    parse_messages_request,
    tool_input,
)
from kimi_modes.server.errors import APIError
from kimi_modes.server.wire import WireRequest

USER: MessageParam = {"role": "user", "content": "Hi"}
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "kimi-k2.5", "max_tokens": 256, "messages": [USER], **fields}


def flat(wire: WireRequest) -> Any:
    """The engine request's fields beside the wire's own (``thinking``, ``stream``, ...)."""
    request = wire.request
    fields = {f: getattr(request, f) for f in request.__slots__}
    fields.update(model=wire.model, thinking=wire.thinking, stream=wire.stream,
                  options=wire.options)
    return SimpleNamespace(**fields)


def parse(**fields: Any) -> Any:
    return flat(parse_messages_request(body(**fields)))


def rejects(request: Any, *fragments: str) -> AnthropicRequestError:
    with pytest.raises(AnthropicRequestError) as info:
        parse_messages_request(request)
    for fragment in fragments:
        assert fragment in info.value.message
    return info.value


# --- requests: the basics --------------------------------------------------------------------


def test_minimal_request() -> None:
    wire = parse_messages_request(body())
    assert wire.model == "kimi-k2.5"
    assert wire.request == ChatRequest(messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=256)
    request = flat(wire)
    assert request.thinking is None  # absent: the mode decides
    assert request.stream is False


def test_system_string_becomes_first_message() -> None:
    request = parse(system="Be brief.", stream=True)
    assert request.messages[0] == {"role": "system", "content": "Be brief."}
    assert request.stream is True


def test_system_text_blocks_are_joined_and_cache_control_ignored() -> None:
    system = [
        {"type": "text", "text": "You are Kimi.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in French."},
    ]
    request = parse(system=system)
    assert request.messages[0] == {
        "role": "system",
        "content": "You are Kimi.\n\nAnswer in French.",
    }


def test_system_role_message() -> None:
    request = parse(messages=[{"role": "system", "content": [{"type": "text", "text": "S"}]}, USER])
    assert request.messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Hi"},
    ]


def test_sampling_parameters() -> None:
    request = parse(
        temperature=1.0,
        top_p=0.95,
        top_k=40,
        stop_sequences=["END", "\n\nHuman:"],
        metadata={"user_id": "u-1"},
        service_tier="auto",
    )
    assert request.temperature == pytest.approx(0.6)
    assert request.top_p == 0.95
    assert request.extra == {"top_k": 40}
    assert request.stop == ["END", "\n\nHuman:"]


@pytest.mark.parametrize(("requested", "engine"), [(0.0, 0.0), (0.5, 0.3), (0.7, 0.42), (1.0, 0.6)])
def test_temperature_uses_moonshots_scale(requested: float, engine: float) -> None:
    assert TEMPERATURE_SCALE == 0.6
    assert parse(temperature=requested).temperature == engine


def test_temperature_above_anthropic_range_is_rejected() -> None:
    rejects(body(temperature=1.5), "temperature: ", "less than or equal to 1")


@pytest.mark.parametrize(
    ("thinking", "switch"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, True),
        ({"type": "disabled"}, False),
        ({"type": "adaptive"}, None),
        ({"type": "between_tools"}, True),
        (None, None),
    ],
)
def test_thinking_switch(thinking: dict[str, Any] | None, switch: bool | None) -> None:
    request = parse(thinking=thinking) if thinking is not None else parse()
    assert request.thinking is switch


def test_agent_and_swarm_options_are_read_as_on_the_openai_api() -> None:
    request = parse(agent={"max_steps": 2, "max_time": 30}, swarm={"fan_out": "required"})
    assert request.options.agent.max_steps == 2 and request.options.agent.max_time == 30
    assert request.options.swarm.fan_out == "required"
    rejects(body(agent={"max_steps": 0}), "agent.max_steps")
    rejects(body(swarm={"fan_out": "always"}), "swarm.fan_out")


def test_thinking_enabled_needs_a_budget() -> None:
    rejects(body(thinking={"type": "enabled"}), "thinking.budget_tokens: is required")
    rejects(body(thinking={"type": "sometimes"}), "thinking.type: input should be 'enabled'")


# --- requests: content blocks ----------------------------------------------------------------


def test_user_text_and_images() -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    request = parse(messages=[{"role": "user", "content": content}])
    assert request.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


def test_single_text_block_collapses_to_a_string() -> None:
    request = parse(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    assert request.messages == [{"role": "user", "content": "Hi"}]


def test_image_errors_say_what_to_send() -> None:
    file_image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    rejects(
        body(messages=[{"role": "user", "content": [file_image]}]),
        "messages.0.content.0.source.type: image source 'file' is not supported",
        "'base64' or 'url'",
    )
    bmp = {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}
    error = rejects(
        body(messages=[{"role": "user", "content": [bmp]}]),
        "messages.0.content.0.source.media_type",
    )
    assert error.param == "messages.0.content.0.source.media_type"


def test_text_documents_become_text() -> None:
    document = {
        "type": "document",
        "title": "Notes",
        "source": {"type": "text", "media_type": "text/plain", "data": "Line one."},
    }
    request = parse(
        messages=[{"role": "user", "content": [document, {"type": "text", "text": "Sum up."}]}]
    )
    assert request.messages[0]["content"] == [
        {"type": "text", "text": "Notes\n\n"},
        {"type": "text", "text": "Line one."},
        {"type": "text", "text": "Sum up."},
    ]
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "J"},
    }
    rejects(body(messages=[{"role": "user", "content": [pdf]}]), "document source 'base64'")


def conversation() -> list[dict[str, Any]]:
    """A thinking + tool_use + tool_result exchange, as an Anthropic client sends it back."""
    return [
        {"role": "user", "content": "Weather in Tokyo and Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two cities.", "signature": THINKING_SIGNATURE},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Checking both."},
                {
                    "type": "tool_use",
                    "id": "functions.get_weather:0",
                    "name": "get_weather",
                    "input": {"city": "東京"},
                },
                {
                    "type": "tool_use",
                    "id": "functions.get_weather:1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "functions.get_weather:0",
                    "content": "晴れ 21°C",
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "functions.get_weather:1",
                    "content": [{"type": "text", "text": "service down"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Use Celsius."},
            ],
        },
        {"role": "assistant", "content": "Tokyo is 21°C; Paris is unknown."},
        {"role": "user", "content": "Thanks"},
    ]


def test_multi_turn_with_thinking_tool_use_and_tool_result() -> None:
    request = parse(system="Sys", messages=conversation(), tools=[WEATHER_TOOL])
    assert request.messages == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "Weather in Tokyo and Paris?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "reasoning_content": "Two cities.",
            "tool_calls": [
                {
                    "id": "functions.get_weather:0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "東京"}'},
                },
                {
                    "id": "functions.get_weather:1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "晴れ 21°C"},
        {
            "role": "tool",
            "tool_call_id": "functions.get_weather:1",
            "content": "Error: service down",
        },
        {"role": "user", "content": "Use Celsius."},
        {"role": "assistant", "content": "Tokyo is 21°C; Paris is unknown."},
        {"role": "user", "content": "Thanks"},
    ]


def test_tool_results_go_first_even_after_text() -> None:
    messages = conversation()[:3]
    messages[2]["content"] = list(reversed(messages[2]["content"]))
    converted = parse(messages=messages).messages
    assert [m["role"] for m in converted] == ["user", "assistant", "tool", "tool", "user"]
    assert [m.get("tool_call_id") for m in converted[2:4]] == [
        "functions.get_weather:1",
        "functions.get_weather:0",
    ]


def test_tool_result_with_image_and_empty_error() -> None:
    messages = [
        *conversation()[:2],
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "functions.get_weather:0",
                    "content": [
                        {"type": "text", "text": "radar:"},
                        {"type": "image", "source": {"type": "url", "url": "https://x/r.png"}},
                    ],
                },
                {"type": "tool_result", "tool_use_id": "functions.get_weather:1", "is_error": True},
            ],
        },
    ]
    converted = parse(messages=messages).messages
    assert converted[2] == {
        "role": "tool",
        "tool_call_id": "functions.get_weather:0",
        "content": [
            {"type": "text", "text": "radar:"},
            {"type": "image_url", "image_url": {"url": "https://x/r.png"}},
        ],
    }
    assert converted[3] == {
        "role": "tool",
        "tool_call_id": "functions.get_weather:1",
        "content": "Error",
    }
    assert len(converted) == 4  # no empty user message after the tool results


def test_tool_result_must_answer_the_previous_tool_use() -> None:
    messages = [
        USER,
        {"role": "assistant", "content": "No tools here."},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}],
        },
    ]
    error = rejects(
        body(messages=messages),
        "messages.2.content.0: tool_result block must follow an assistant tool_use "
        "with id 'toolu_9'",
    )
    assert error.param == "messages.2.content.0.tool_use_id"


def test_duplicate_tool_use_ids_are_rejected() -> None:
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    rejects(
        body(messages=[USER, {"role": "assistant", "content": [use, use]}]),
        "messages.1.content.1.id: tool_use id 't1' is used twice",
    )


def test_unsupported_blocks_name_the_supported_ones() -> None:
    rejects(
        body(messages=[USER, {"role": "assistant", "content": [{"type": "server_tool_use"}]}]),
        "messages.1.content.0.type: content block type 'server_tool_use' is not supported",
        "supported: redacted_thinking, text, thinking, tool_use",
    )
    rejects(
        body(messages=[{"role": "user", "content": [{"type": "tool_use"}]}]),
        "messages.0.content.0.type: content block type 'tool_use' is not supported",
    )


# --- requests: tools -------------------------------------------------------------------------


def test_tools_become_openai_functions() -> None:
    bare = {
        "name": "now",
        "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
    }
    request = parse(tools=[WEATHER_TOOL, {**bare, "type": "custom"}])
    assert request.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        },
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
    ]


def test_server_tools_are_rejected() -> None:
    rejects(
        body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
        "tools.0.type: tool type 'web_search_20250305'",
        "declare it as a custom tool",
    )
    rejects(body(tools=[{"name": "f"}]), "tools.0.input_schema: is required")


@pytest.mark.parametrize(
    ("choice", "expected", "extra"),
    [
        ({"type": "auto"}, "auto", {}),
        ({"type": "any"}, "required", {}),
        ({"type": "none"}, "none", {}),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            {},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            "auto",
            {"parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            "required",
            {"parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any, extra: dict[str, Any]) -> None:
    request = parse(tools=[WEATHER_TOOL], tool_choice=choice)
    assert request.tool_choice == expected
    assert request.extra == extra


def test_tool_choice_errors() -> None:
    rejects(
        body(tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "nope"}),
        "tool_choice.name: no tool named 'nope' in 'tools' (declared: get_weather)",
    )
    rejects(
        body(tools=[WEATHER_TOOL], tool_choice={"type": "tool"}), "tool_choice.name: is required"
    )
    rejects(body(tool_choice={"type": "any"}), "tool_choice: type 'any' needs tools")
    rejects(body(tool_choice={"type": "sometimes"}), "tool_choice.type: input should be 'auto'")


# --- requests: validation messages -----------------------------------------------------------


def test_body_must_be_an_object() -> None:
    error = rejects([1, 2], "the request body must be a JSON object")
    assert error.param is None


def test_missing_fields_are_named() -> None:
    error = rejects({"model": "m", "messages": [USER]}, "max_tokens: is required")
    assert error.param == "max_tokens"
    rejects({"max_tokens": 5}, "model: is required", "messages: is required")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"messages": []}, "messages: list should have at least 1 item"),
        ({"max_tokens": 0}, "max_tokens: input should be greater than or equal to 1"),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role: input should be 'user'",
        ),
        (
            {"messages": [{"role": "user", "content": 7}]},
            "messages.0.content: must be a string or a list",
        ),
        (
            {"messages": [{"role": "user", "content": ["hi"]}]},
            "messages.0.content.0: a content block must",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages.0.content.0.type: is",
        ),
        ({"messages": [{"role": "user"}]}, "messages.0.content: is required"),
        ({"system": [{"type": "text"}]}, "system.0.text: is required"),
        ({"system": 3}, "system: must be a string or a list of content blocks"),
        ({"stream": "maybe"}, "stream: input should be a valid boolean"),
        (
            {
                "messages": [
                    USER,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "x"}],
                    },
                ]
            },
            "messages.1.content.0.input: input should be a valid dictionary",
        ),
    ],
)
def test_validation_errors_are_readable(fields: dict[str, Any], fragment: str) -> None:
    error = rejects(body(**fields), fragment)
    assert "\n" not in error.message and "pydantic" not in error.message


def test_many_errors_are_capped() -> None:
    error = rejects(
        {
            "messages": "x",
            "max_tokens": "y",
            "model": 1,
            "temperature": "z",
            "top_p": 9,
            "top_k": -1,
            "stream": 3,
        },
        "(and 2 more)",
    )
    assert error.message.count(";") == 5


# --- requests: what the SDK actually sends ---------------------------------------------------


def capture_request(call: Callable[[anthropic.Anthropic], Any]) -> dict[str, Any]:
    captured: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        captured.append(json.loads(request.content))
        return httpx2.Response(
            200, json=build_message_response("msg_x", "kimi", [ContentDelta("ok")])
        )

    call(client(handler))
    return captured[0]


def test_accepts_bodies_the_sdk_builds() -> None:
    sent = capture_request(
        lambda c: c.messages.create(
            model="kimi-k2.5",
            max_tokens=1024,
            system=[{"type": "text", "text": "Sys", "cache_control": {"type": "ephemeral"}}],
            messages=cast(list[MessageParam], conversation()),
            tools=[WEATHER_TOOL],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
            thinking={"type": "enabled", "budget_tokens": 1024},
            stop_sequences=["###"],
            metadata={"user_id": "u"},
            extra_body={"temperature": 0.5, "top_k": 20},
        )
    )
    request = flat(parse_messages_request(sent))
    assert request.thinking is True and request.temperature == 0.3
    assert request.extra == {"top_k": 20, "parallel_tool_calls": False}
    assert request.messages[0] == {"role": "system", "content": "Sys"}
    assert request.messages[2]["tool_calls"][0]["function"]["arguments"] == '{"city": "東京"}'


def test_an_answer_sent_back_round_trips() -> None:
    events: list[Event] = [
        ReasoningDelta("Need the tool."),
        ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city":"Oslo"}'),
        Finish("tool_calls"),
    ]
    answer = sdk_create(events)
    tool_use = answer.content[1]
    assert isinstance(tool_use, ToolUseBlock)
    follow_up: list[MessageParam] = [
        {"role": "user", "content": "Weather in Oslo?"},
        answer.to_param(),
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "-3°C"}],
        },
    ]
    sent = capture_request(
        lambda c: c.messages.create(model="kimi", max_tokens=64, messages=follow_up)
    )
    messages = parse_messages_request(sent).request.messages
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "Need the tool.",
        "tool_calls": [
            {
                "id": "functions.get_weather:0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "functions.get_weather:0",
        "content": "-3°C",
    }


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "invalid_request_error"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
        (599, "api_error"),
    ],
)
def test_error_types(status: int, kind: str) -> None:
    assert anthropic_error_type(status) == kind
    assert anthropic_error_body(status, "why") == {
        "type": "error",
        "error": {"type": kind, "message": "why"},
    }


def test_error_types_are_ones_the_sdk_knows() -> None:
    from typing import get_args

    from anthropic.types.shared import ErrorType

    known = set(get_args(ErrorType))
    assert {anthropic_error_type(s) for s in range(400, 600)} <= known


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, anthropic.BadRequestError),
        (429, anthropic.RateLimitError),
        (503, anthropic.InternalServerError),
        (504, anthropic.InternalServerError),
        (529, anthropic.InternalServerError),
    ],
)
def test_sdk_reads_error_bodies(status: int, exception: type[anthropic.APIStatusError]) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=anthropic_error_body(status, "upstream 'gpu-1': busy"))

    with pytest.raises(exception) as info:
        client(handler).messages.create(model="kimi", max_tokens=5, messages=[USER])
    assert info.value.status_code == status
    assert info.value.type == anthropic_error_type(status)
    assert info.value.api_message == "upstream 'gpu-1': busy"


# --- responses through the SDK ---------------------------------------------------------------


def client(handler: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="test",
        base_url="http://gateway.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def encode(events: list[Event], *, estimate: int = 3) -> bytes:
    encoder = MessageStreamEncoder("msg_01", "kimi-k2.5", estimate)
    return encoder.start() + b"".join(encoder.feed(e) for e in events) + encoder.end()


def sse_response(payload: bytes, chunk: int | None = None) -> httpx2.Response:
    content: bytes | Iterator[bytes] = payload
    if chunk is not None:
        content = iter([payload[i : i + chunk] for i in range(0, len(payload), chunk)])
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)


def sdk_stream(payload: bytes, chunk: int | None = None) -> anthropic.types.Message:
    c = client(lambda request: sse_response(payload, chunk))
    with c.messages.stream(model="kimi-k2.5", max_tokens=64, messages=[USER]) as stream:
        return stream.get_final_message()


def sdk_create(events: list[Event], *, estimate: int = 3) -> anthropic.types.Message:
    response = build_message_response("msg_01", "kimi-k2.5", events, input_tokens_estimate=estimate)
    c = client(lambda request: httpx2.Response(200, json=response))
    return c.messages.create(model="kimi-k2.5", max_tokens=64, messages=[USER])


def dump(message: anthropic.types.Message) -> dict[str, Any]:
    return message.model_dump(exclude_none=True)


THINK_TEXT_TOOLS: list[Event] = [
    ReasoningDelta("The user wants "),
    ReasoningDelta("weather."),
    ContentDelta("Let me "),
    ContentDelta("check — 東京."),
    ToolCallDelta(0, "functions.get_weather:0", "get_weather", '{"city": '),
    ToolCallDelta(0, None, None, '"東京", "days": [1, 2]}'),
    ToolCallDelta(1, "functions.get_time:1", "get_time", ""),
    ToolCallDelta(1, None, None, "{}"),
    Usage(prompt_tokens=42, completion_tokens=17, reasoning_tokens=5),
    Finish("tool_calls"),
]


def test_stream_accumulates_thinking_text_and_tool_use() -> None:
    message = sdk_stream(encode(THINK_TEXT_TOOLS))
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, weather, clock = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user wants weather."
    assert thinking.signature == THINKING_SIGNATURE
    assert text.type == "text" and text.text == "Let me check — 東京."
    assert weather.type == "tool_use" and weather.id == "functions.get_weather:0"
    assert weather.name == "get_weather" and weather.input == {"city": "東京", "days": [1, 2]}
    assert clock.type == "tool_use" and clock.input == {}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 42 and message.usage.output_tokens == 17
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 5


def test_non_streaming_body_equals_the_streamed_message() -> None:
    assert dump(sdk_create(THINK_TEXT_TOOLS)) == dump(sdk_stream(encode(THINK_TEXT_TOOLS)))


def test_stream_survives_any_chunking() -> None:
    payload = encode(THINK_TEXT_TOOLS)
    whole = dump(sdk_stream(payload))
    for chunk in (1, 2, 7, 64):  # splits frames, lines and multi-byte characters
        assert dump(sdk_stream(payload, chunk)) == whole


def test_raw_stream_events_in_order() -> None:
    c = client(lambda request: sse_response(encode([*THINK_TEXT_TOOLS[:4], Finish("stop")])))
    events = list(c.messages.create(model="kimi", max_tokens=9, messages=[USER], stream=True))
    kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in events]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", None),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
        ("content_block_start", None),
        ("content_block_delta", "text_delta"),
        ("content_block_delta", "text_delta"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]
    start = events[0]
    assert isinstance(start, RawMessageStartEvent)
    assert start.message.usage.input_tokens == 3 and start.message.stop_reason is None
    starts = [e.index for e in events if e.type == "content_block_start"]
    assert starts == [0, 1]


def test_stream_helper_events() -> None:
    c = client(lambda request: sse_response(encode(THINK_TEXT_TOOLS)))
    with c.messages.stream(model="kimi", max_tokens=9, messages=[USER]) as stream:
        seen = [event.type for event in stream]
        snapshot = stream.current_message_snapshot
    assert {"thinking", "signature", "text", "input_json", "content_block_stop"} <= set(seen)
    assert snapshot.content[0].type == "thinking"


def test_text_stream() -> None:
    c = client(lambda request: sse_response(encode(THINK_TEXT_TOOLS)))
    with c.messages.stream(model="kimi", max_tokens=9, messages=[USER]) as stream:
        assert "".join(stream.text_stream) == "Let me check — 東京."


async def test_async_client_streams() -> None:
    payload = encode(THINK_TEXT_TOOLS)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        return sse_response(payload)

    async_client = anthropic.AsyncAnthropic(
        api_key="test",
        base_url="http://gateway.test",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    async with async_client.messages.stream(model="kimi", max_tokens=9, messages=[USER]) as stream:
        message = await stream.get_final_message()
    assert dump(message) == dump(sdk_stream(payload))


@pytest.mark.parametrize(
    ("events", "stop_reason"),
    [
        ([ContentDelta("a"), Finish("stop")], "end_turn"),
        ([ContentDelta("a"), Finish("length")], "max_tokens"),
        ([ContentDelta("a")], "end_turn"),  # no Finish: the engine said nothing
        ([ToolCallDelta(0, "functions.f:0", "f", "{}"), Finish("stop")], "tool_use"),
        ([ToolCallDelta(0, "functions.f:0", "f", '{"a":'), Finish("length")], "max_tokens"),
        ([ContentDelta("a"), Finish("content_filter")], "refusal"),
        ([ContentDelta("a"), Finish("mystery")], "end_turn"),
    ],
)
def test_stop_reasons(events: list[Event], stop_reason: str) -> None:
    assert sdk_stream(encode(events)).stop_reason == stop_reason
    assert sdk_create(events).stop_reason == stop_reason


def test_invalid_tool_arguments_are_kept_raw() -> None:
    events: list[Event] = [
        ToolCallDelta(0, "functions.f:0", "f", '{"path": "/tmp'),  # cut off: not JSON
        ToolCallDelta(1, "functions.g:1", "g", "[1, 2]"),  # JSON, but not an object
        Finish("length"),
    ]
    streamed = sdk_stream(encode(events))
    created = sdk_create(events)
    for message in (streamed, created):
        first, second = message.content
        assert first.type == "tool_use" and first.input == {RAW_ARGUMENTS_KEY: '{"path": "/tmp'}
        assert second.type == "tool_use" and second.input == {RAW_ARGUMENTS_KEY: "[1, 2]"}


def test_invalid_tool_call_marks_are_ignored_safely() -> None:
    # The modes layer adds InvalidToolCall marks before Finish; Anthropic has no place for
    # them, so both encoders must pass over them without a frame and without failing.
    marked = [*THINK_TEXT_TOOLS[:-1], InvalidToolCall(1, "functions.get_time:1", "bad"),
              THINK_TEXT_TOOLS[-1]]
    encoder = MessageStreamEncoder("msg_01", "kimi-k2.5", 3)
    encoder.start()
    for event in THINK_TEXT_TOOLS[:-1]:
        encoder.feed(event)
    assert encoder.feed(InvalidToolCall(1, "functions.get_time:1", "bad")) == b""
    assert encode(marked) == encode(THINK_TEXT_TOOLS)
    assert dump(sdk_create(marked)) == dump(sdk_create(THINK_TEXT_TOOLS))


def test_tool_input() -> None:
    assert tool_input("") == {} and tool_input("  ") == {}
    assert tool_input('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert tool_input("nope") == {RAW_ARGUMENTS_KEY: "nope"}
    assert tool_input("NaN") == {RAW_ARGUMENTS_KEY: "NaN"}


def test_tool_name_arriving_late_and_missing_id() -> None:
    events: list[Event] = [
        ToolCallDelta(0, None, None, '{"q":'),
        ToolCallDelta(0, None, "search", ' "kimi"}'),
        ContentDelta("done"),
    ]
    message = sdk_stream(encode(events))
    tool, text = message.content
    assert tool.type == "tool_use" and tool.name == "search"
    assert tool.id == "functions.search:0"  # Kimi's id form when the engine gave none
    assert tool.input == {"q": "kimi"}
    assert text.type == "text" and text.text == "done"
    assert dump(sdk_create(events)) == dump(message)


def test_empty_deltas_open_no_blocks() -> None:
    events: list[Event] = [
        ReasoningDelta(""),
        ContentDelta(""),
        ContentDelta("x"),
        ContentDelta(""),
    ]
    message = sdk_stream(encode(events))
    assert [b.type for b in message.content] == ["text"]


def test_empty_answer() -> None:
    message = sdk_stream(encode([Finish("stop")]))
    assert message.content == [] and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 3 and message.usage.output_tokens == 0


def test_interleaved_kinds_open_new_blocks() -> None:
    events: list[Event] = [
        ReasoningDelta("a"),
        ContentDelta("b"),
        ReasoningDelta("c"),
        ContentDelta("d"),
    ]
    message = sdk_stream(encode(events))
    assert [b.type for b in message.content] == ["thinking", "text", "thinking", "text"]


def test_error_mid_stream_reaches_the_sdk() -> None:
    encoder = MessageStreamEncoder("msg_01", "kimi", 3)
    payload = encoder.start() + encoder.feed(ContentDelta("partial"))
    payload += encoder.error(APIError(503, "upstream 'gpu-1' is overloaded"))
    assert encoder.finished
    assert encoder.end() == b"" and encoder.error(APIError(500, "again")) == b""
    assert payload.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"upstream \'gpu-1\' is overloaded"}}\n\n'
    )
    c = client(lambda request: sse_response(payload))
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        c.messages.stream(model="kimi", max_tokens=9, messages=[USER]) as stream,
    ):
        stream.get_final_message()
    assert info.value.type == "overloaded_error"
    assert info.value.api_message == "upstream 'gpu-1' is overloaded"


def test_ping_is_skipped_by_the_sdk() -> None:
    encoder = MessageStreamEncoder("msg_01", "kimi", 3)
    payload = encoder.start(ping=False) + encoder.ping() + encoder.feed(ContentDelta("x"))
    payload += encoder.ping() + encoder.end()
    assert payload.count(b"event: ping\n") == 2
    assert [b.type for b in sdk_stream(payload).content] == ["text"]


def test_frames_are_well_formed_sse() -> None:
    payload = encode(THINK_TEXT_TOOLS)
    frames = payload.split(b"\n\n")
    assert frames[-1] == b""
    for frame in frames[:-1]:
        event, data = frame.split(b"\n")
        assert event.startswith(b"event: ") and data.startswith(b"data: ")
        assert orjson.loads(data[6:])["type"] == event[7:].decode()


def test_encoder_lifecycle() -> None:
    encoder = MessageStreamEncoder("msg_01", "kimi", 3)
    first = encoder.feed(ContentDelta("x"))  # starts the message itself
    assert first.startswith(b"event: message_start\n")
    assert encoder.start() == b""
    assert encoder.message()["content"] == [{"type": "text", "text": "x"}]
    assert encoder.message()["stop_reason"] is None
    assert encoder.end().endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert encoder.end() == b""
    with pytest.raises(RuntimeError):
        encoder.feed(ContentDelta("late"))


def test_resumed_tool_call_is_a_contract_violation() -> None:
    encoder = MessageStreamEncoder("msg_01", "kimi", 3)
    encoder.feed(ToolCallDelta(0, "functions.f:0", "f", "{"))
    encoder.feed(ToolCallDelta(1, "functions.g:1", "g", "{}"))
    with pytest.raises(ValueError, match="tool call 0"):
        encoder.feed(ToolCallDelta(0, None, None, "}"))


# --- property: stream and body agree for any event sequence ----------------------------------

_text = st.text(min_size=0, max_size=12)


@st.composite
def event_sequences(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    tool_index = 0
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["reasoning", "content", "tool"]))
        if kind == "reasoning":
            events.append(ReasoningDelta(draw(_text)))
        elif kind == "content":
            events.append(ContentDelta(draw(_text)))
        else:
            arguments = draw(
                st.one_of(
                    st.dictionaries(st.text(max_size=5), st.integers() | _text, max_size=3).map(
                        lambda d: json.dumps(d, ensure_ascii=False)
                    ),
                    _text,
                )
            )
            cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=3)))
            pieces = [
                arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)
            ]
            name = draw(st.from_regex(r"[a-z][a-z0-9_\-]{0,10}", fullmatch=True))
            events.append(
                ToolCallDelta(tool_index, f"functions.{name}:{tool_index}", name, pieces[0])
            )
            events.extend(ToolCallDelta(tool_index, None, None, p) for p in pieces[1:])
            tool_index += 1
    if draw(st.booleans()):
        events.append(Usage(draw(st.integers(0, 999)), draw(st.integers(0, 999))))
    if draw(st.booleans()):
        events.append(Finish(draw(st.sampled_from(["stop", "length", "tool_calls"]))))
    return events


@settings(max_examples=60, deadline=None)
@given(event_sequences(), st.sampled_from([None, 3]))
def test_stream_and_body_agree(events: list[Event], chunk: int | None) -> None:
    streamed = sdk_stream(encode(events), chunk)
    assert dump(streamed) == dump(sdk_create(events))
    text = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert "".join(b.text for b in streamed.content if b.type == "text") == text
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert "".join(b.thinking for b in streamed.content if b.type == "thinking") == reasoning
