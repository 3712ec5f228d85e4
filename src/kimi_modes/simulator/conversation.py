"""What the simulated model "reads": a conversation, from a chat request or a rendered prompt.

Replies are decided on a :class:`Conversation` whichever endpoint the request came in on:
:func:`from_chat` reads an OpenAI chat body, :func:`from_prompt` reads a prompt rendered in
Kimi's format (kimi-protocol.md §3–4) as ``/v1/completions`` receives it. Both keep only what
the reply rules look at: each message's role and plain text, the declared tools (name and JSON
schema; a K2.5 TypeScript declaration is read back into a rough schema) and the thinking switch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.ids import function_name_from_id
from kimi_modes.simulator.tokenize import count_tokens


class RequestError(ValueError):
    """The request cannot be read; ``param`` names the offending field (vLLM's 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


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
    """``tool_choice`` is ``auto``, ``none``, ``required`` or the name of a forced function."""

    messages: list[Message]
    tools: list[Tool]
    thinking: bool
    tool_choice: str = "auto"

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
    """Read an OpenAI chat body; the thinking switch is ``chat_template_kwargs.thinking``."""
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
    switch = kwargs.get("thinking", True) if isinstance(kwargs, dict) else True
    return Conversation(
        messages, _chat_tools(body.get("tools")), _thinks(family, switch is not False),
        _tool_choice(body.get("tool_choice"), bool(body.get("tools"))),
    )


def chat_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a chat body: message texts plus a fixed overhead per message.

    An approximation of the rendered prompt's length (deterministic, cheap).
    """
    total = 8
    for raw in body.get("messages") or ():
        if isinstance(raw, dict):
            total += 4 + count_tokens(_text(raw.get("content")))
            reasoning = raw.get("reasoning_content") or raw.get("reasoning")
            if isinstance(reasoning, str):
                total += count_tokens(reasoning)
            if raw.get("tool_calls"):
                total += count_tokens(orjson.dumps(raw["tool_calls"]).decode())
    if body.get("tools"):
        total += 4 + count_tokens(orjson.dumps(body["tools"]).decode())
    return total


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
    if isinstance(value, dict):
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    if value in ("none", "required", "auto"):
        return str(value)
    return "auto" if has_tools else "none"


def _thinks(family: str, switch: bool) -> bool:
    return family == "k2-thinking" or (family == "k2.5" and switch)


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
    """Read a Kimi prompt. For K2.5 thinking is on when the prompt ends in ``<think>``."""
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
    thinking = prompt.endswith(T.THINK_BEGIN) if family == "k2.5" else family == "k2-thinking"
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
