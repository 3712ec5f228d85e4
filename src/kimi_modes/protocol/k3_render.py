"""Render an OpenAI chat request into a Kimi K3 (XTML) prompt (kimi-protocol.md §9).

Byte for byte what Moonshot's encoder (``encoding_k3.py``; no Jinja, the encoder is code)
builds, joined into one string, with two deliberate differences: client text never becomes
control tokens (it goes through
:func:`~kimi_modes.protocol.neutralize.neutralize_xtml_tokens`), and messages the encoder
would drop silently are mapped (``developer`` → ``system``) or refused, never dropped.
Reached through :func:`~kimi_modes.protocol.render_prompt` with a K3 family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol import xtml
from kimi_modes.protocol.errors import PromptError
from kimi_modes.protocol.neutralize import neutralize_xtml_tokens

_SYSTEM_ROLES = ("system", "developer")
_IMAGE_PART_TYPES = ("image_url", "image")

_TOOL_DECLARE = (
    "# Tools\nHere are the available tools, described in JSONSchema.\n\n```json\n{}\n```"
)
_DYNAMIC_TOOL_DECLARE = (
    "## New Tools Available\n"
    "The system dynamically extends the toolset via lazy-loading.\n"
    "You have access to all existing and extended tools.\n"
    "Here are the specs for the extended tools.\n\n"
    "```json\n{}\n```"
)
_THINKING_EFFORT = (
    "`thinking_effort` guides on how much to think in your thinking channel (not including "
    "the response channel), supported values include `low`, `medium`, `high`, and `max`.\n"
    "Now the system is invoked with `thinking_effort={}`."
)
_TOOL_CHOICE = {
    "required": "The system is invoked with `tool_choice=required`.\n"
    "You MUST call tools in the next message.",
    "none": "The system is invoked with `tool_choice=none`.\n"
    "You MUST NOT call any tools in the next message.",
}
_RAW_JSON = (
    "Your response must be raw JSON data without markdown code blocks (```json) or any "
    "additional formatting."
)
_JSON_OBJECT = "The system is invoked with `response_format=json_object`.\n" + _RAW_JSON
_JSON_SCHEMA = (
    "The system is invoked with `response_format=json_schema`.\n"
    + _RAW_JSON
    + "\nThe JSON data must match the following schema:\n```json\n{}\n```"
)


def render_xtml_prompt(
    request: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    *,
    thinks: bool,
    thinking_effort: str | None,
    add_generation_prompt: bool,
) -> str:
    """The K3 prompt for ``messages`` (already checked by the caller).

    Reads ``tools``, ``tool_choice`` and ``response_format`` from ``request``. ``thinks``:
    whether the think channel is on; ``thinking_effort``: the effort message's value
    (``None``: no effort message). Raises :class:`PromptError` for what the encoder cannot
    write (a tool result whose tool cannot be named, arguments that are not an object).
    """
    out: list[str] = []
    tools = request.get("tools")
    if tools:
        out.append(
            _system("tool-declare", _TOOL_DECLARE.format(_sorted_json(tools, "'tools'")), False)
        )
    if thinks and thinking_effort is not None:
        out.append(_system("thinking-effort", _THINKING_EFFORT.format(thinking_effort)))
    calls: Sequence[Mapping[str, Any]] = ()
    tool_index = 0
    for index, message in enumerate(_resolve_tool_results(messages)):
        role = message["role"]
        if role == "assistant":
            calls = message.get("tool_calls") or ()
            tool_index = 0
            out.append(_assistant(message, index, thinks))
        elif role == "tool":
            tool_index += 1
            out.append(_tool_result(message, index, tool_index, calls))
        elif role in _SYSTEM_ROLES and message.get("tools"):
            body = _DYNAMIC_TOOL_DECLARE.format(
                _sorted_json(message["tools"], f"messages[{index}].tools")
            )
            out.append(_system("tool-declare", body, False))
        else:
            name_role = "user" if role == "user" else "system"
            attrs = [("role", name_role), *_name(message, index)]
            body = _content(message.get("content"), index)
            out.append(xtml.element("message", body, attrs) + T.XTML_END_OF_MSG)
    choice = request.get("tool_choice")
    if isinstance(choice, str) and choice in _TOOL_CHOICE:
        out.append(_system("tool-choice", _TOOL_CHOICE[choice]))
    out += _response_format(request.get("response_format"))
    if add_generation_prompt:
        out.append(xtml.open_tag("message", [("role", "assistant")]))
        out.append(xtml.open_tag("think" if thinks else "response"))
    return "".join(out)


def _system(kind: str, body: str, strip: bool = True) -> str:
    """An internal system message (the encoder strips these bodies, but not declarations)."""
    attrs = [("role", "system"), ("type", kind)]
    return xtml.element("message", body.strip() if strip else body, attrs) + T.XTML_END_OF_MSG


def _sorted_json(value: object, what: str) -> str:
    """Compact JSON with keys sorted at every depth, non-ASCII kept (the encoder's dump)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} cannot be written as JSON: {exc}") from None
    return neutralize_xtml_tokens(text)


def _response_format(response_format: object) -> list[str]:
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_object":
        return [_system("response-format", _JSON_OBJECT)]
    if kind == "json_schema":
        assert isinstance(response_format, Mapping)
        schema = _sorted_json(_schema(response_format), "the response_format schema")
        return [_system("response-format", _JSON_SCHEMA.format(schema))]
    return []


def _schema(response_format: Mapping[str, Any]) -> object:
    """The schema of a ``json_schema`` response format, looked up where the encoder does."""
    spec = response_format.get("json_schema")
    if isinstance(spec, Mapping):
        return spec.get("schema", spec.get("json_schema", spec))
    return spec


def _name(message: Mapping[str, Any], index: int) -> list[tuple[str, object]]:
    name = message.get("name")
    if not name:
        return []
    if not isinstance(name, str):
        raise PromptError(f"messages[{index}]: 'name' must be a string")
    return [("name", name)]


def _content(content: object, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return neutralize_xtml_tokens(content)
    if not isinstance(content, list | tuple):
        raise PromptError(f"messages[{index}]: 'content' must be a string or a list of parts")
    return "".join(_part(part, index) for part in content)


def _part(part: object, index: int) -> str:
    if not isinstance(part, Mapping) or "type" not in part:
        raise PromptError(f"messages[{index}]: a content part has no 'type'")
    if part["type"] in _IMAGE_PART_TYPES:
        return T.XTML_IMAGE_PLACEHOLDER
    if part["type"] != "text":
        raise PromptError(f"messages[{index}]: unsupported content part type {part['type']!r}")
    text = part.get("text")
    if not isinstance(text, str):
        raise PromptError(f"messages[{index}]: a text part needs a string 'text'")
    return neutralize_xtml_tokens(text)


def _assistant(message: Mapping[str, Any], index: int, thinks: bool) -> str:
    body: list[str] = []
    if thinks:
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise PromptError(f"messages[{index}]: 'reasoning_content' must be a string")
        text = neutralize_xtml_tokens(reasoning) if reasoning and reasoning.strip() else ""
        body.append(xtml.element("think", text))
    body.append(xtml.element("response", _content(message.get("content"), index)))
    calls = message.get("tool_calls")
    if calls:
        elements = [_call(call, position, index) for position, call in enumerate(calls, start=1)]
        body.append(xtml.element("tools", "".join(elements)))
    attrs = [("role", "assistant"), *_name(message, index)]
    return xtml.element("message", "".join(body), attrs) + T.XTML_END_OF_MSG


def _call(call: object, position: int, index: int) -> str:
    function = _function(call)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise PromptError(f"messages[{index}]: a tool call has no function name")
    try:
        return xtml.call_element(name, position, function.get("arguments"))
    except ValueError as exc:
        raise PromptError(f"messages[{index}]: {exc}") from None


def _function(call: object) -> Mapping[str, Any]:
    if not isinstance(call, Mapping):
        return {}
    function = call.get("function", call)
    return function if isinstance(function, Mapping) else {}


def _tool_result(
    message: Mapping[str, Any], index: int, tool_index: int, calls: Sequence[Mapping[str, Any]]
) -> str:
    name = message.get("tool", message.get("name"))
    if name is None and tool_index <= len(calls):
        name = _function(calls[tool_index - 1]).get("name")
    if not isinstance(name, str) or not name:
        raise PromptError(
            f"messages[{index}] (tool): cannot tell which tool this result is for; give "
            "'name', or answer the calls of the assistant message before it in order"
        )
    attrs = [("role", "tool"), ("tool", name), ("index", tool_index)]
    body = _content(message.get("content"), index)
    return xtml.element("message", body, attrs) + T.XTML_END_OF_MSG


def _resolve_tool_results(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Put each run of tool results in the order of the calls they answer, named after them.

    A run is matched against the latest assistant's calls by ``tool_call_id``; if every
    result matches it is sorted into call order (stable) and each takes its call's name; if
    any fails to match the run is left as it is. The input is not modified.
    """
    out: list[Mapping[str, Any]] = []
    positions: dict[str, tuple[int, object]] = {}
    i = 0
    while i < len(messages):
        message = messages[i]
        if message["role"] != "tool":
            if message["role"] == "assistant":
                positions = _call_positions(message.get("tool_calls") or ())
            out.append(message)
            i += 1
            continue
        run: list[Mapping[str, Any]] = []
        while i < len(messages) and messages[i]["role"] == "tool":
            run.append(messages[i])
            i += 1
        matches = [positions.get(str(m.get("tool_call_id"))) for m in run]
        if any(match is None for match in matches):
            out += run
            continue
        order = sorted(range(len(run)), key=lambda k: (matches[k] or (0, None))[0])
        for k in order:
            resolved = dict(run[k])
            name = (matches[k] or (0, None))[1]
            if name is not None:
                resolved["tool"] = name
                if "name" in resolved:
                    resolved["name"] = name
            out.append(resolved)
    return out


def _call_positions(calls: Sequence[object]) -> dict[str, tuple[int, object]]:
    """``call id → (1-based position, function name)``; the first of two equal ids wins."""
    positions: dict[str, tuple[int, object]] = {}
    for position, call in enumerate(calls, start=1):
        if isinstance(call, Mapping) and call.get("id") is not None:
            positions.setdefault(str(call["id"]), (position, _function(call).get("name")))
    return positions
