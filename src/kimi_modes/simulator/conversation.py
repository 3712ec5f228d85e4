"""What the simulated model "reads": a conversation, from a chat request or a rendered prompt.

Replies are decided on a :class:`Conversation` whichever endpoint the request came in on:
:func:`from_chat` reads an OpenAI chat body, :func:`from_prompt` reads a prompt rendered in
Kimi's format (K2.x: kimi-protocol.md §3–4; K3's XTML: §9) as ``/v1/completions`` receives
it. Both keep only what the reply rules look at: each message's role and plain text, the
declared tools (name and JSON schema; a K2.5 TypeScript declaration is read back into a rough
schema; K3's dynamic declarations in system messages included), ``tool_choice``, the thinking
switch and effort, and a JSON ``response_format``.
"""

from __future__ import annotations

import base64
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol import xtml
from kimi_modes.protocol.errors import PromptError
from kimi_modes.protocol.families import family_info
from kimi_modes.protocol.ids import function_name_from_id
from kimi_modes.simulator.checks import (
    RequestError,
    ResponseFormat,
    dynamic_tools,
    response_format,
)
from kimi_modes.simulator.tokenize import count_tokens


@dataclass(slots=True, frozen=True)
class Message:
    """``role`` is system, user, assistant or tool; ``name`` is a tool result's function."""

    role: str
    text: str
    name: str | None = None


@dataclass(slots=True, frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Conversation:
    """``tool_choice`` is ``auto``, ``none``, ``required`` or the name of a forced function;
    ``thinking_effort`` the effort in force (``None``: thinking off, or a family without
    efforts); ``response_format`` a JSON format the answer must take (``None``: text)."""

    messages: list[Message]
    tools: list[Tool]
    thinking: bool
    tool_choice: str = "auto"
    thinking_effort: str | None = None
    response_format: ResponseFormat | None = None

    @property
    def last_user_text(self) -> str:
        return next((m.text for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def system_text(self) -> str:
        return "\n".join(m.text for m in self.messages if m.role == "system")

    @property
    def turn(self) -> int:
        """How many user messages the conversation holds (1 on the first question)."""
        return sum(1 for m in self.messages if m.role == "user")

    @property
    def step(self) -> int:
        """How many assistant messages follow the last user message (0: a fresh question)."""
        count = 0
        for message in reversed(self.messages):
            if message.role == "user":
                break
            count += message.role == "assistant"
        return count

    @property
    def tool_results(self) -> list[Message]:
        """The tool results the conversation ends with (empty unless the last message is one)."""
        results: list[Message] = []
        for message in reversed(self.messages):
            if message.role != "tool":
                break
            results.append(message)
        return results[::-1]


def from_chat(body: dict[str, Any], family: str) -> Conversation:
    """Read an OpenAI chat body; the thinking switch is ``chat_template_kwargs.thinking``.

    For a family with efforts (K3) the effort is ``chat_template_kwargs.thinking_effort``,
    else ``reasoning_effort`` (whose ``none`` switches thinking off), as vLLM's K3 path reads
    them; one the family rejects (K3's ``medium``) is a :class:`RequestError`. A K2.x
    template ignores unknown keywords and ``reasoning_effort``, and so do we there. K3 also
    takes tools declared in system messages (:func:`~kimi_modes.simulator.checks.dynamic_tools`).
    """
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError("messages must be a non-empty list", "messages")
    call_names: dict[str, str] = {}
    messages: list[Message] = []
    for index, raw in enumerate(raw_messages):
        if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
            raise RequestError(f"messages[{index}] must be an object with a role", "messages")
        role = raw["role"]
        for call in raw.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(call.get("id"), str):
                call_names[call["id"]] = str(function.get("name", ""))
        name = None
        if role == "tool":
            call_id = str(raw.get("tool_call_id") or "")
            given = raw.get("name")
            name = (call_names.get(call_id) or (given if isinstance(given, str) else None)
                    or function_name_from_id(call_id) or None)
        elif role not in ("system", "user", "assistant"):
            role = "system"
        messages.append(Message(role, _text(raw.get("content")), name))
    kwargs = body.get("chat_template_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    info = family_info(family)
    effort = kwargs.get("thinking_effort")
    switch = kwargs.get("thinking")
    in_force = None
    if info.thinking_efforts:
        hint = body.get("reasoning_effort")
        if hint == "none" and switch is None:
            switch = False
        elif effort is None and hint is not None:
            effort = hint
        try:
            in_force = info.thinking_effort(info.thinks(switch is not False),
                                            None if effort is None else str(effort))
        except PromptError as exc:
            raise RequestError(str(exc), "chat_template_kwargs") from None
    tools = body.get("tools")
    if info.wire_format == "xtml":
        tools = [*(tools if isinstance(tools, list) else []),
                 *dynamic_tools(raw_messages, tools)]
    thinks = info.thinks(switch is not False)
    return Conversation(
        messages, _chat_tools(tools), thinks,
        _tool_choice(body.get("tool_choice"), bool(tools)),
        thinking_effort=in_force, response_format=response_format(body),
    )


def chat_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a chat body: message texts plus a fixed overhead per message, and
    per PNG image sent as a data URL one token per 28×28 pixels (MoonViT's 14-pixel patches
    merged 2×2, rounded up per side).

    An approximation of the rendered prompt's length (deterministic, cheap).
    """
    total = 8
    for raw in body.get("messages") or ():
        if isinstance(raw, dict):
            total += 4 + count_tokens(_text(raw.get("content")))
            total += sum(_image_tokens(part) for part in raw.get("content") or ()
                         if isinstance(raw.get("content"), list))
            reasoning = raw.get("reasoning_content") or raw.get("reasoning")
            if isinstance(reasoning, str):
                total += count_tokens(reasoning)
            if raw.get("tool_calls"):
                total += count_tokens(orjson.dumps(raw["tool_calls"]).decode())
    if body.get("tools"):
        total += 4 + count_tokens(orjson.dumps(body["tools"]).decode())
    return total


_PNG_DATA_URL = "data:image/png;base64,"


def _image_tokens(part: Any) -> int:
    """0 unless ``part`` is an image part holding a PNG data URL (its size from the header)."""
    image = part.get("image_url") if isinstance(part, dict) else None
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url.startswith(_PNG_DATA_URL):
        return 0
    try:
        header = base64.b64decode(url[len(_PNG_DATA_URL):len(_PNG_DATA_URL) + 32])
    except ValueError:
        return 0
    if len(header) < 24 or header[12:16] != b"IHDR":
        return 0
    width, height = int.from_bytes(header[16:20]), int.from_bytes(header[20:24])
    return -(-width // 28) * -(-height // 28)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append("[image]")
        return "".join(parts)
    return ""


def _chat_tools(raw_tools: Any) -> list[Tool]:
    tools: list[Tool] = []
    for raw in raw_tools or ():
        function = raw.get("function") if isinstance(raw, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            params = function.get("parameters")
            tools.append(Tool(
                function["name"], str(function.get("description") or ""),
                params if isinstance(params, dict) else {},
            ))
    return tools


def _tool_choice(value: Any, has_tools: bool) -> str:
    """The request's ``tool_choice`` as vLLM takes it: ``required`` or a named function
    needs tools; any other string than auto/none/required is refused."""
    if value is None:
        return "auto" if has_tools else "none"
    name = None
    if isinstance(value, dict):
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            name = str(function["name"])
    elif value in ("none", "required", "auto"):
        name = str(value)
    if name is None:
        raise RequestError(f"tool_choice {value!r} is not 'none', 'auto', 'required' or a "
                           "named function", "tool_choice")
    if not has_tools and name not in ("none", "auto"):
        raise RequestError("tool_choice needs tools: none are declared", "tool_choice")
    return name if has_tools else "none"


# --- reading a rendered prompt (/v1/completions) -------------------------------------------

_MESSAGE_RE = re.compile(
    "(" + "|".join(re.escape(t) for t in (T.IM_USER, T.IM_ASSISTANT, T.IM_SYSTEM)) + ")"
    + "(.*?)" + re.escape(T.IM_MIDDLE) + "(.*?)(?:" + re.escape(T.IM_END) + "|$)",
    re.DOTALL,
)
_RESULT_RE = re.compile(r"## Return of (\S+)\n(.*)", re.DOTALL)
_TS_FUNCTION_RE = re.compile(r"^type ([\w-]+) = \(_: \{(.*?)^\}\) => any;", re.DOTALL | re.M)
_TS_EMPTY_RE = re.compile(r"^type ([\w-]+) = \(_: \{\}\) => any;", re.M)
_TS_FIELD_RE = re.compile(r"^  (?!//)([\w-]+)(\??): (.+?),?$", re.M)
_THINK_BLOCK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)
_SECTION_RE = re.compile(re.escape(T.TOOL_CALLS_SECTION_BEGIN) + ".*", re.DOTALL)


def from_prompt(prompt: str, family: str) -> Conversation:
    """Read a Kimi prompt in ``family``'s wire format. Thinking is on when the prompt ends
    by opening the reasoning (the families that prefill it: K2.5 and later), else it is the
    family's default."""
    info = family_info(family)
    thinking = prompt.endswith(info.reasoning_begin) if info.think_prefill else info.thinks()
    if info.wire_format == "xtml":
        return _from_xtml_prompt(prompt, thinking)
    messages: list[Message] = []
    tools: list[Tool] = []
    for match in _MESSAGE_RE.finditer(prompt):
        start, name, body = match.groups()
        if not match.group(0).endswith(T.IM_END):
            continue  # the open generation prompt
        if start == T.IM_SYSTEM and name == "tool_declare":
            tools = _declared_tools(body)
        elif start == T.IM_SYSTEM and (result := _RESULT_RE.match(body)):
            name = function_name_from_id(result.group(1)) or None
            messages.append(Message("tool", result.group(2), name))
        elif start == T.IM_ASSISTANT:
            text = _SECTION_RE.sub("", _THINK_BLOCK_RE.sub("", body))
            messages.append(Message("assistant", text))
        else:
            messages.append(Message("user" if start == T.IM_USER else "system", body))
    return Conversation(messages, tools, thinking, "auto" if tools else "none")


def _declared_tools(body: str) -> list[Tool]:
    if body.lstrip().startswith("["):
        try:
            return _chat_tools(orjson.loads(body))
        except orjson.JSONDecodeError:
            return []
    tools = [Tool(m.group(1)) for m in _TS_EMPTY_RE.finditer(body)]
    for match in _TS_FUNCTION_RE.finditer(body):
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, optional, ts_type in _TS_FIELD_RE.findall(match.group(2)):
            properties[name] = _schema_of_ts_type(ts_type)
            if not optional:
                required.append(name)
        schema = {"type": "object", "properties": properties, "required": required}
        tools.append(Tool(match.group(1), parameters=schema))
    return tools


def _schema_of_ts_type(ts_type: str) -> dict[str, Any]:
    simple = {"string": "string", "number": "number", "boolean": "boolean", "{": "object"}
    if ts_type in simple:
        return {"type": simple[ts_type]}
    if ts_type.startswith("Array<"):
        return {"type": "array"}
    literals = []
    for item in ts_type.split(" | "):
        python = {"True": True, "False": False, "None": None}
        try:
            literals.append(python[item] if item in python else orjson.loads(item))
        except orjson.JSONDecodeError:
            return {}
    return {"enum": literals}


# --- reading a K3 (XTML) prompt ------------------------------------------------------------

_XTML_MESSAGE_RE = re.compile(
    re.escape(T.XTML_OPEN) + "(message(?: [^\n]*?)?)" + re.escape(T.XTML_SEP) + "(.*?)"
    + re.escape(xtml.close_tag("message") + T.XTML_END_OF_MSG),
    re.DOTALL,
)
_XTML_RESPONSE_RE = re.compile(
    re.escape(xtml.open_tag("response")) + "(.*?)" + re.escape(xtml.close_tag("response")),
    re.DOTALL,
)
_JSON_BLOCK_RE = re.compile(r"```json\n(.*)\n```", re.DOTALL)
_TOOL_CHOICE_RE = re.compile(r"`tool_choice=(\w+)`")
_EFFORT_RE = re.compile(r"`thinking_effort=(\w+)`")


def _from_xtml_prompt(prompt: str, thinking: bool) -> Conversation:
    """The messages of a K3 prompt (kimi-protocol.md §9): the internal system messages
    (``type="tool-declare"``, ``"tool-choice"``...) give the tools and ``tool_choice``; an
    assistant keeps its response channel; a tool result its tool's name."""
    messages: list[Message] = []
    tools: list[Tool] = []
    choice: str | None = None
    effort: str | None = None
    for match in _XTML_MESSAGE_RE.finditer(prompt):
        _, attributes = xtml.parse_header(match.group(1))
        role, kind, body = attributes.get("role", ""), attributes.get("type"), match.group(2)
        if kind == "tool-declare":
            declared = _JSON_BLOCK_RE.search(body)
            with contextlib.suppress(orjson.JSONDecodeError):
                tools += _chat_tools(orjson.loads(declared.group(1))) if declared else []
        elif kind == "tool-choice":
            chosen = _TOOL_CHOICE_RE.search(body)
            choice = chosen.group(1) if chosen else None
        elif kind == "thinking-effort":
            chosen = _EFFORT_RE.search(body)
            effort = chosen.group(1) if chosen else None
        elif kind is not None:
            continue  # response-format, dynamic declarations: not part of the conversation
        elif role == "assistant":
            response = _XTML_RESPONSE_RE.search(body)
            messages.append(Message("assistant", response.group(1) if response else ""))
        elif role == "tool":
            messages.append(Message("tool", body, attributes.get("tool")))
        else:
            messages.append(Message("user" if role == "user" else "system", body))
    return Conversation(messages, tools, thinking, choice or ("auto" if tools else "none"),
                        thinking_effort=effort if thinking else None)
