"""What the simulated model answers when no script rule matches, and the reply type itself.

The rule-based default is deterministic and depends only on the conversation:

- the last message is a tool result: reasoning about it, then a content answer summarising the
  results (``NAME: first 200 characters`` per result);
- tools are declared, ``tool_choice`` allows them, and the last user message names declared
  tools (whole word): one call per named tool, in the order named, with arguments built from
  the tool's JSON schema (:func:`synthesize_arguments`; ``key=value`` pairs in the user message
  fill fields of that name). ``tool_choice`` ``required`` or a named function forces a call
  (with none named, ``required`` calls the tool whose name and description share the most
  words with the message);
- the last user message asks for the ``thinking_effort``: the effort in force (``low``,
  ``high``, ``max``; ``unknown`` without one), as K3 reads it from its system prompt;
- otherwise reasoning about the last user message and a content answer that echoes its first
  30 words (``You said: ...``).

Then the request's shape applies: at ``thinking_effort`` ``low`` the reasoning is its first
sentence only (``high`` and ``max`` keep all of it); with a JSON ``response_format`` and no
tool call the content is compact JSON (:func:`json_content`).

Reasoning is produced only when the request thinks; whether it is sent is decided later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from kimi_modes.protocol.format import format_output
from kimi_modes.simulator.checks import RequestError, ResponseFormat
from kimi_modes.simulator.conversation import Conversation, Tool

_ECHO_WORDS = 30
_MAX_DEPTH = 8
_RESULT_CHARS = 200
_PAIR_RE = re.compile(r"""([\w-]+)=("[^"]*"|'[^']*'|[^\s,;]+)""")
_WORD_RE = re.compile(r"[a-z]{4,}")
_QUOTED_KEY_RE = re.compile(r"""['"`]([A-Za-z_][\w-]*)['"`]""")


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A call the model writes. ``arguments`` is the text written (possibly invalid JSON);
    ``id`` defaults to ``functions.NAME:IDX``, IDX counting the calls of the reply from 0."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(slots=True)
class Reply:
    """An answer, before limits. ``raw``, when set, is the exact text the model writes and
    replaces the other three. ``ttft``/``tpot``/``fault`` override the engine's for this reply;
    ``rule`` names the script rule that produced it (``None``: the default)."""

    reasoning: str = ""
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    raw: str | None = None
    ttft: float | None = None
    tpot: float | None = None
    fault: str | None = None
    rule: str | None = None

    def raw_text(self, family: str, thinking: bool) -> str:
        """The text a Kimi model of ``family`` writes for this reply (stop token excluded)."""
        if self.raw is not None:
            return self.raw
        calls = [(c.id or f"functions.{c.name}:{i}", c.arguments)
                 for i, c in enumerate(self.tool_calls)]
        return format_output(family, reasoning=self.reasoning, content=self.content,
                             tool_calls=calls, thinking=thinking)


def default_reply(conv: Conversation) -> Reply:
    """The rule-based answer to ``conv`` (see the module docstring). Raises
    :class:`RequestError` when the ``response_format`` schema is one the simulated engine
    cannot produce a value for (as vLLM's guided decoding refuses a schema it cannot
    compile)."""
    reply = _rule_reply(conv)
    if conv.thinking_effort == "low" and ". " in reply.reasoning:
        reply.reasoning = reply.reasoning.split(". ", 1)[0] + "."
    if conv.response_format is not None and not reply.tool_calls:
        reply.content = json_content(conv.response_format, conv.last_user_text,
                                     reply.content)
    return reply


def json_content(fmt: ResponseFormat, text: str, answer: str) -> str:
    """Compact JSON for ``fmt``: for ``json_object``, an object of the keys ``text`` quotes
    (``'city'``; values from ``key=value`` pairs, else ``"KEY example"``), or
    ``{"answer": answer}`` when it quotes none; for ``json_schema``, a value built from the
    schema like tool arguments (:func:`synthesize_arguments`), validated against it."""
    hints = {k: v.strip("\"'") for k, v in _PAIR_RE.findall(text)}
    value: Any
    if fmt.kind == "json_object" or fmt.schema is None:
        keys = dict.fromkeys(_QUOTED_KEY_RE.findall(text))
        value = {k: hints.get(k, f"{k} example") for k in keys} or {"answer": answer}
    else:
        value = _value(fmt.schema, fmt.schema, hints)
        try:
            jsonschema.validate(value, fmt.schema)
        except jsonschema.ValidationError as exc:
            raise RequestError(
                "the simulated engine cannot generate a value for this response_format "
                f"schema (supported: types, properties, required, enum, const, default, "
                f"bounds, minItems, minLength, $ref, anyOf/oneOf/allOf): {exc.message}",
                "response_format") from None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _rule_reply(conv: Conversation) -> Reply:
    results = conv.tool_results
    if results:
        names = ", ".join(r.name or "a tool" for r in results)
        summary = "; ".join(f"{r.name or 'tool'}: {r.text[:_RESULT_CHARS]}" for r in results)
        return Reply(
            reasoning=f"The tool results from {names} are in. I will summarise them.",
            content=f"Here is what the tools returned. {summary}",
        )
    text = conv.last_user_text
    calls = _calls_for(conv, text)
    if calls:
        listed = ", ".join(f"{c.name} with {c.arguments}" for c in calls)
        return Reply(reasoning=f"The user asks for a tool. I will call {listed}.",
                     tool_calls=calls)
    if "thinking_effort" in text:
        effort = conv.thinking_effort or "unknown"
        return Reply(reasoning=f"The system prompt sets thinking_effort={effort}. I report it.",
                     content=effort)
    words = text.split()
    snippet = " ".join(words[:_ECHO_WORDS]) + (" ..." if len(words) > _ECHO_WORDS else "")
    return Reply(
        reasoning=f"The user wrote {len(words)} words. A direct answer fits; I will echo them.",
        content=f"You said: {snippet}",
    )


def _calls_for(conv: Conversation, text: str) -> list[ToolCall]:
    if not conv.tools or conv.tool_choice == "none":
        return []
    by_name = {t.name: t for t in conv.tools}
    if conv.tool_choice in by_name:
        chosen = [by_name[conv.tool_choice]]
    else:
        found = []
        for tool in conv.tools:
            match = re.search(rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])", text)
            if match:
                found.append((match.start(), tool))
        chosen = [tool for _, tool in sorted(found, key=lambda item: item[0])]
        if not chosen and conv.tool_choice == "required":
            chosen = [_closest_tool(conv.tools, text)]
    hints = {k: v.strip("\"'") for k, v in _PAIR_RE.findall(text)}
    return [ToolCall(t.name, json.dumps(synthesize_arguments(t, hints), ensure_ascii=False))
            for t in chosen]


def _closest_tool(tools: list[Tool], text: str) -> Tool:
    """The tool whose name and description share the most words (of four letters or more)
    with ``text``; the first declared on a tie."""
    wanted = set(_WORD_RE.findall(text.lower()))

    def shared(tool: Tool) -> int:
        words = _WORD_RE.findall(f"{tool.name} {tool.description}".lower().replace("_", " "))
        return len(wanted.intersection(words))

    return max(tools, key=shared)


def synthesize_arguments(tool: Tool, hints: dict[str, str] | None = None) -> dict[str, Any]:
    """Arguments for ``tool``: its required fields, each with a value fitting its schema
    (``hints[name]`` when given, converted to the field's type; else the default, the first
    enum value, ``const``, the first example, or a value of the right type within bounds)."""
    schema = tool.parameters
    out = _value(schema, schema, hints or {}, top=True)
    return out if isinstance(out, dict) else {}


def _value(schema: Any, root: dict[str, Any], hints: dict[str, str], *, top: bool = False,
           name: str = "", depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return None  # a recursive schema: stop somewhere
    if not isinstance(schema, dict):
        return "example"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _value(target, root, hints, name=name, depth=depth + 1)
    if name in hints and not top:
        return _convert(hints[name], schema)
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    for key in ("enum", "examples"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _value(schema[key][0], root, hints, name=name, depth=depth + 1)
    kind = "object" if top else _type_of(schema)
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = [r for r in schema.get("required") or () if isinstance(r, str)]
        return {key: _value(props.get(key, {}), root, hints, name=key, depth=depth + 1)
                for key in required}
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        return [_value(schema.get("items", {}), root, hints, depth=depth + 1)
                for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum")
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            low = schema["exclusiveMinimum"] + 1
        value = max(1, low) if isinstance(low, int | float) else 1
        high = schema.get("maximum")
        value = min(value, high) if isinstance(high, int | float) else value
        return int(value) if kind == "integer" or float(value).is_integer() else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"{name or 'value'} example"
    return text.ljust(int(schema.get("minLength") or 0), "x")


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else "string"


def _convert(text: str, schema: dict[str, Any]) -> Any:
    kind = _type_of(schema)
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text
    if kind == "boolean":
        return text.lower() in ("true", "1", "yes")
    if kind in ("object", "array"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text
