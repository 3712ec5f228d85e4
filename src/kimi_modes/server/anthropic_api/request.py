"""``POST /v1/messages`` bodies → a :class:`~kimi_modes.server.wire.WireRequest` whose engine
request is in the engines' OpenAI chat shape.

See :func:`parse_messages_request` for what is accepted, and the package docstring for the
decisions (temperature scale, thinking switch, tool ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from kimi_modes.engines.base import ChatRequest
from kimi_modes.modes.options import AgentOptions, ModeOptions, SwarmOptions
from kimi_modes.server.wire import MODEL_FIELD, WireRequest

__all__ = [
    "TEMPERATURE_SCALE",
    "AnthropicRequestError",
    "CountTokensBody",
    "MessagesBody",
    "parse_count_request",
    "parse_messages_request",
]

TEMPERATURE_SCALE = 0.6
"""Engine temperature = Anthropic temperature × this (Moonshot's Anthropic API does the same)."""


class AnthropicRequestError(ValueError):
    """A ``/v1/messages`` body that cannot be served: answer 400 ``invalid_request_error``.

    ``message`` says what is wrong and where (``messages.2.content.0: ...``); ``param`` is the
    dotted location of the first problem, or ``None`` when it concerns the whole body.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class _Lenient(BaseModel):
    # Anthropic adds fields often (cache_control, citations, caller, ...): accept and ignore.
    model_config = ConfigDict(extra="allow")


#: Content: a string or a list of blocks. Checked by :func:`_blocks`, whose messages say
#: where a block is wrong; the schema says the same for the OpenAPI document.
_Content = Annotated[Any, WithJsonSchema({"anyOf": [
    {"type": "string"}, {"type": "array", "items": {"type": "object"}}]})]


class _InputMessage(_Lenient):
    role: Literal["user", "assistant", "system"]
    content: _Content


class CountTokensBody(_Lenient):
    """A ``POST /v1/messages/count_tokens`` body: the prompt part of a messages body. The
    content blocks are checked one by one afterwards, each with the location it came from."""

    model: str = Field(min_length=1, json_schema_extra=MODEL_FIELD)
    messages: list[_InputMessage] = Field(min_length=1)
    system: _Content | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    agent: AgentOptions | None = None
    swarm: SwarmOptions | None = None


class MessagesBody(CountTokensBody):
    """A ``POST /v1/messages`` body: the fields read (others are accepted and ignored)."""

    max_tokens: int = Field(ge=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None


class _TextBlock(_Lenient):
    type: Literal["text"]
    text: str


class _ImageBlock(_Lenient):
    type: Literal["image"]
    source: dict[str, Any]


class _Base64Source(_Lenient):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class _UrlSource(_Lenient):
    type: Literal["url"]
    url: str = Field(min_length=1)


class _DocumentBlock(_Lenient):
    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None


class _PlainTextSource(_Lenient):
    type: Literal["text"]
    data: str


class _ContentSource(_Lenient):
    type: Literal["content"]
    content: Any


class _ToolUseBlock(_Lenient):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class _ToolResultBlock(_Lenient):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: Any = None
    is_error: bool = False


class _ThinkingBlock(_Lenient):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None  # never verified: see THINKING_SIGNATURE


class _Tool(_Lenient):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]
    type: str | None = None


class _ToolChoice(_Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class _Thinking(_Lenient):
    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = Field(default=None, ge=1)


_M = TypeVar("_M", bound=BaseModel)

_MAX_REPORTED_ERRORS = 5


def _validate(model: type[_M], data: Any, loc: str) -> _M:
    """Validate ``data`` as ``model``; errors are reported at ``loc`` (dotted path)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _readable(exc, loc) from None


def _readable(exc: ValidationError, loc: str) -> AnthropicRequestError:
    problems: list[str] = []
    first: str | None = None
    for err in exc.errors(include_url=False):
        where = ".".join(
            [loc, *(str(p) for p in err["loc"])] if loc else [str(p) for p in err["loc"]]
        )
        if err["type"] == "missing":
            what = "is required"
        elif err["type"] == "model_type" and not err["loc"]:
            what = "must be an object"
        else:
            what = err["msg"][:1].lower() + err["msg"][1:]
        problems.append(f"{where}: {what}" if where else what)
        if first is None:
            first = where or None
    shown = problems[:_MAX_REPORTED_ERRORS]
    if len(problems) > _MAX_REPORTED_ERRORS:
        shown.append(f"(and {len(problems) - _MAX_REPORTED_ERRORS} more)")
    return AnthropicRequestError("; ".join(shown), first)


def _blocks(value: Any, loc: str) -> list[dict[str, Any]]:
    """A content value as a list of block dicts (a string is one text block)."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, list):
        for i, block in enumerate(value):
            if not isinstance(block, dict):
                raise AnthropicRequestError(
                    f"{loc}.{i}: a content block must be an object", f"{loc}.{i}"
                )
            if not isinstance(block.get("type"), str):
                raise AnthropicRequestError(
                    f"{loc}.{i}.type: is required (a string such as 'text')", f"{loc}.{i}.type"
                )
        return value
    raise AnthropicRequestError(f"{loc}: must be a string or a list of content blocks", loc)


def _image_part(block: dict[str, Any], loc: str) -> dict[str, Any]:
    source = _validate(_ImageBlock, block, loc).source
    kind = source.get("type")
    if kind == "base64":
        b64 = _validate(_Base64Source, source, f"{loc}.source")
        url = f"data:{b64.media_type};base64,{b64.data}"
    elif kind == "url":
        url = _validate(_UrlSource, source, f"{loc}.source").url
    else:
        raise AnthropicRequestError(
            f"{loc}.source.type: image source {kind!r} is not supported; "
            "send the image as 'base64' or 'url' (there is no Files API here)",
            f"{loc}.source.type",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: dict[str, Any], loc: str) -> list[dict[str, Any]]:
    doc = _validate(_DocumentBlock, block, loc)
    kind = doc.source.get("type")
    header = "\n\n".join(t for t in (doc.title, doc.context) if t)
    parts: list[dict[str, Any]] = [{"type": "text", "text": header + "\n\n"}] if header else []
    if kind == "text":
        parts.append(
            {"type": "text", "text": _validate(_PlainTextSource, doc.source, f"{loc}.source").data}
        )
    elif kind == "content":
        inner = _validate(_ContentSource, doc.source, f"{loc}.source").content
        for j, item in enumerate(_blocks(inner, f"{loc}.source.content")):
            parts.extend(_user_part(item, f"{loc}.source.content.{j}", allow={"text", "image"}))
    else:
        raise AnthropicRequestError(
            f"{loc}.source.type: document source {kind!r} is not supported (Kimi reads no PDFs "
            "or files here); send the document as a 'text' or 'content' source",
            f"{loc}.source.type",
        )
    return parts


def _unsupported(kind: str, loc: str, allow: Iterable[str]) -> AnthropicRequestError:
    return AnthropicRequestError(
        f"{loc}.type: content block type {kind!r} is not supported here "
        f"(supported: {', '.join(sorted(allow))})",
        f"{loc}.type",
    )


_USER_BLOCKS = frozenset({"text", "image", "document", "tool_result"})
_ASSISTANT_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "tool_use"})


def _user_part(block: dict[str, Any], loc: str, *, allow: Iterable[str]) -> list[dict[str, Any]]:
    """OpenAI content parts for one text / image / document block."""
    kind = block["type"]
    if kind not in allow:
        raise _unsupported(kind, loc, allow)
    if kind == "text":
        return [{"type": "text", "text": _validate(_TextBlock, block, loc).text}]
    if kind == "image":
        return [_image_part(block, loc)]
    return _document_parts(block, loc)


def _parts_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part collapses to a string; anything else stays a list of parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _tool_message(block: dict[str, Any], loc: str, known_ids: set[str]) -> dict[str, Any]:
    result = _validate(_ToolResultBlock, block, loc)
    if result.tool_use_id not in known_ids:
        raise AnthropicRequestError(
            f"{loc}: tool_result block must follow an assistant tool_use with id "
            f"{result.tool_use_id!r} (the previous message must be the assistant turn that "
            "called the tool)",
            f"{loc}.tool_use_id",
        )
    parts: list[dict[str, Any]] = []
    if result.content is not None:
        for j, item in enumerate(_blocks(result.content, f"{loc}.content")):
            parts.extend(
                _user_part(item, f"{loc}.content.{j}", allow={"text", "image", "document"})
            )
    content: str | list[dict[str, Any]]
    if all(p["type"] == "text" for p in parts):
        content = "\n".join(p["text"] for p in parts)
        if result.is_error:
            content = f"Error: {content}" if content else "Error"
    else:
        content = parts
        if result.is_error:
            content = [{"type": "text", "text": "Error: "}, *parts]
    return {"role": "tool", "tool_call_id": result.tool_use_id, "content": content}


def _system_text(value: Any, loc: str) -> str:
    texts = [_validate(_TextBlock, b, f"{loc}.{i}").text for i, b in enumerate(_blocks(value, loc))]
    return "\n\n".join(texts)


def _convert_messages(body: CountTokensBody) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if body.system is not None:
        system = _system_text(body.system, "system")
        if system:
            out.append({"role": "system", "content": system})
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(body.messages):
        loc = f"messages.{i}"
        blocks = _blocks(message.content, f"{loc}.content")
        tool_ids: set[str] = set()
        if message.role == "system":
            out.append(
                {"role": "system", "content": _system_text(message.content, f"{loc}.content")}
            )
        elif message.role == "user":
            # Tool results go first, right after the assistant turn that called the tools (as
            # OpenAI chats and Kimi's template need); the rest of the turn follows as one user
            # message. Anthropic itself wants tool_result blocks first, so order is unchanged
            # for well-formed requests.
            tools: list[dict[str, Any]] = []
            parts: list[dict[str, Any]] = []
            for j, block in enumerate(blocks):
                bloc = f"{loc}.content.{j}"
                if block["type"] == "tool_result":
                    tools.append(_tool_message(block, bloc, previous_tool_ids))
                else:
                    parts.extend(_user_part(block, bloc, allow=_USER_BLOCKS - {"tool_result"}))
            out.extend(tools)
            if parts or not tools:
                out.append({"role": "user", "content": _parts_content(parts) if parts else ""})
        else:
            out.append(_assistant_message(blocks, loc, tool_ids))
        previous_tool_ids = tool_ids
    last = out[-1]
    if last["role"] == "assistant" and not last.get("tool_calls"):
        last["partial"] = True  # a prefill: the answer continues it (Moonshot's partial mode)
        last.pop("reasoning_content", None)
    return out


def _assistant_message(
    blocks: list[dict[str, Any]], loc: str, tool_ids: set[str]
) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        bloc = f"{loc}.content.{j}"
        kind = block["type"]
        if kind == "text":
            texts.append(_validate(_TextBlock, block, bloc).text)
        elif kind == "thinking":
            reasoning.append(_validate(_ThinkingBlock, block, bloc).thinking)
        elif kind == "redacted_thinking":
            continue  # opaque to us: nothing Kimi could read
        elif kind == "tool_use":
            use = _validate(_ToolUseBlock, block, bloc)
            if use.id in tool_ids:
                raise AnthropicRequestError(
                    f"{bloc}.id: tool_use id {use.id!r} is used twice in this message; "
                    "ids must be unique",
                    f"{bloc}.id",
                )
            tool_ids.add(use.id)
            arguments = json.dumps(use.input, ensure_ascii=False)
            calls.append(
                {
                    "id": use.id,
                    "type": "function",
                    "function": {"name": use.name, "arguments": arguments},
                }
            )
        else:
            raise _unsupported(kind, bloc, _ASSISTANT_BLOCKS)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _convert_tools(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        loc = f"tools.{i}"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in (None, "custom"):
            raise AnthropicRequestError(
                f"{loc}.type: tool type {kind!r} is an Anthropic server or built-in tool, which "
                "this gateway does not provide; declare it as a custom tool with name, "
                "description and input_schema",
                f"{loc}.type",
            )
        tool = _validate(_Tool, item, loc)
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        function["parameters"] = tool.input_schema
        tools.append({"type": "function", "function": function})
    return tools


def _convert_tool_choice(
    raw: dict[str, Any], tools: list[dict[str, Any]] | None, extra: dict[str, Any]
) -> str | dict[str, Any]:
    choice = _validate(_ToolChoice, raw, "tool_choice")
    if choice.disable_parallel_tool_use:
        extra["parallel_tool_calls"] = False
    if choice.type == "auto":
        return "auto"
    if choice.type == "none":
        return "none"
    names = [t["function"]["name"] for t in tools or []]
    if not names:
        raise AnthropicRequestError(
            f"tool_choice: type {choice.type!r} needs tools; add them to 'tools'", "tool_choice"
        )
    if choice.type == "any":
        return "required"
    if not choice.name:
        raise AnthropicRequestError(
            "tool_choice.name: is required when tool_choice.type is 'tool'", "tool_choice.name"
        )
    if choice.name not in names:
        raise AnthropicRequestError(
            f"tool_choice.name: no tool named {choice.name!r} in 'tools' "
            f"(declared: {', '.join(names)})",
            "tool_choice.name",
        )
    return {"type": "function", "function": {"name": choice.name}}


def _convert_thinking(raw: dict[str, Any] | None) -> bool | None:
    if raw is None:
        return None
    thinking = _validate(_Thinking, raw, "thinking")
    if thinking.type == "enabled":
        if thinking.budget_tokens is None:
            raise AnthropicRequestError(
                "thinking.budget_tokens: is required when thinking.type is 'enabled' "
                "(Kimi has no budget; any value ≥ 1 works)",
                "thinking.budget_tokens",
            )
        return True  # Kimi has no reasoning budget: budget_tokens is checked, not used
    if thinking.type == "disabled":
        return False
    if thinking.type == "between_tools":
        return True
    return None  # adaptive: the mode decides


def parse_messages_request(body: Any) -> WireRequest:
    """Validate a ``POST /v1/messages`` body and convert it to the engines' chat shape.

    Accepts what the ``anthropic`` SDK sends (unknown fields are ignored): ``system`` as a
    string or text blocks (and ``role: system`` messages); text, image (``base64`` → a
    ``data:`` URL, or ``url``), document (``text`` or ``content`` sources), ``tool_result``,
    ``thinking``, ``redacted_thinking`` (dropped) and ``tool_use`` blocks; custom ``tools``;
    ``tool_choice``; ``thinking``; ``temperature`` (scaled, see :data:`TEMPERATURE_SCALE`),
    ``top_p``, ``top_k`` (into ``extra``), ``stop_sequences``, ``stream``; the Agent and
    Swarm options ``agent`` and ``swarm`` (:class:`~kimi_modes.modes.options.ModeOptions`,
    as on the OpenAI API); ``metadata`` is ignored. Raises :class:`AnthropicRequestError` on
    anything else.
    """
    parsed = _validate(MessagesBody, _object(body), "")
    wire = _prompt(parsed, body)
    if parsed.top_k is not None:
        wire.request.extra["top_k"] = parsed.top_k
    wire.request.max_tokens = parsed.max_tokens
    if parsed.temperature is not None:
        wire.request.temperature = round(parsed.temperature * TEMPERATURE_SCALE, 6)
    wire.request.top_p = parsed.top_p
    wire.request.stop = list(parsed.stop_sequences) if parsed.stop_sequences else None
    wire.stream = parsed.stream
    return wire


def parse_count_request(body: Any) -> WireRequest:
    """Validate a ``POST /v1/messages/count_tokens`` body: what
    :func:`parse_messages_request` reads of the prompt (model, system, messages, tools,
    tool_choice, thinking), into the same engine request. Raises
    :class:`AnthropicRequestError`."""
    return _prompt(_validate(CountTokensBody, _object(body), ""), body)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AnthropicRequestError("the request body must be a JSON object", None)
    return body


def _prompt(parsed: CountTokensBody, body: dict[str, Any]) -> WireRequest:
    extra: dict[str, Any] = {}
    tools = _convert_tools(parsed.tools) if parsed.tools else None
    tool_choice = (
        _convert_tool_choice(parsed.tool_choice, tools, extra) if parsed.tool_choice else None
    )
    thinking = _convert_thinking(parsed.thinking)
    options = ModeOptions(agent=parsed.agent or AgentOptions(),
                          swarm=parsed.swarm or SwarmOptions())
    request = ChatRequest(messages=_convert_messages(parsed), tools=tools,
                          tool_choice=tool_choice, extra=extra)
    return WireRequest(parsed.model, request, thinking, options,
                       prompt_estimate=max(1, len(orjson.dumps(body)) // 4))
