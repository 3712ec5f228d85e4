"""What the simulated engine refuses before it generates, and the request fields it reads
beyond the conversation: Moonshot's sampling policy (``--sampling official``), K3's dynamic
tool declarations, ``response_format``.

Each refusal is a :class:`RequestError`, answered with HTTP 400 (404 for ``model``) in vLLM's
error shape, its message the one Moonshot's API gives where that is known ("invalid
temperature: only 1 is allowed for this model").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema

from kimi_modes.protocol.families import family_info

#: ``open``: any value is taken, as vLLM and SGLang do; ``official``: what Moonshot's own API
#: takes for the family served (:class:`~kimi_modes.protocol.families.OfficialSampling`).
SAMPLING_POLICIES = ("open", "official")
#: A tool name Moonshot's API takes: a letter or ``_`` first, then letters, digits, ``_`` and
#: ``-``, at most 256 characters (Kimi-Vendor-Verifier refuses ``1bad_name``, ``bad@name``,
#: ``""`` and 257 characters).
TOOL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,255}")
_PENALTIES = ("presence_penalty", "frequency_penalty")


class RequestError(ValueError):
    """The request cannot be served; ``param`` names the offending field (vLLM's 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def check_sampling(body: Mapping[str, Any], family: str, thinking: bool) -> None:
    """Refuse, as Moonshot's API does for ``family`` (thinking on or off), a ``temperature``
    outside [0, 1] or other than the mode's where it is pinned, a pinned ``top_p`` other than
    the mode's, a pinned penalty other than 0 and a pinned ``n`` other than 1. Absent (or
    null) fields are fine."""
    info = family_info(family)
    policy = info.official_sampling
    recommended = info.default_sampling(thinking)
    temperature = _number(body, "temperature")
    if temperature is not None:
        if policy.temperature_pinned and temperature != recommended.temperature:
            raise RequestError(_only("temperature", recommended.temperature), "temperature")
        if not 0 <= temperature <= 1:
            raise RequestError("invalid temperature: must be within [0, 1] for this model",
                               "temperature")
    top_p = _number(body, "top_p")
    if (top_p is not None and policy.top_p_pinned and recommended.top_p is not None
            and top_p != recommended.top_p):
        raise RequestError(_only("top_p", recommended.top_p), "top_p")
    for name in _PENALTIES:
        value = _number(body, name)
        if value is not None and policy.penalties_pinned and value != 0:
            raise RequestError(_only(name, 0), name)
    n = _number(body, "n")
    if n is not None and policy.n_pinned and n != 1:
        raise RequestError(_only("n", 1), "n")


def _only(name: str, value: float) -> str:
    return f"invalid {name}: only {value:g} is allowed for this model"


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"invalid {name}: must be a number", name)
    return float(value)


# --- dynamic tools (K3) ---------------------------------------------------------------------


def dynamic_tools(messages: list[Any], tools: Any) -> list[dict[str, Any]]:
    """The tools K3 messages declare (``{"role": "system", "content": "", "tools": [...]}``,
    kimi-protocol.md §9), checked as Moonshot's API checks them (Kimi-Vendor-Verifier's
    ``test_dynamic_tools``): only a system message may carry tools, with empty content; each
    tool is a ``function`` with a valid name; no name twice across the request's ``tools``
    and every message. A tool message must name its ``tool_call_id``."""
    seen = {t["function"].get("name") for t in tools or ()
            if isinstance(t, dict) and isinstance(t.get("function"), dict)}
    declared: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise RequestError(f"messages[{index}]: a tool message needs its tool_call_id",
                               "messages")
        if "tools" not in message:
            continue
        where = f"messages[{index}].tools"
        if role != "system":
            raise RequestError(f"{where}: only a system message may declare tools", "messages")
        if message.get("content"):
            raise RequestError(f"{where}: a system message that declares tools must have "
                               "empty content", "messages")
        for tool in _valid_tools(message["tools"], where):
            name = tool["function"]["name"]
            if name in seen:
                raise RequestError(f"{where}: the tool name {name!r} is declared twice",
                                   "messages")
            seen.add(name)
            declared.append(tool)
    return declared


def _valid_tools(tools: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise RequestError(f"{where} must be an array", "tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RequestError(f"{where}[{i}] must be an object", "tools")
        if tool.get("type") != "function":
            raise RequestError(f"{where}[{i}].type must be 'function'", "tools")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise RequestError(f"{where}[{i}].function must be an object", "tools")
        name = function.get("name")
        if not isinstance(name, str) or TOOL_NAME_RE.fullmatch(name) is None:
            raise RequestError(
                f"{where}[{i}].function.name {name!r} is not a valid tool name (a letter or "
                "'_' first, then letters, digits, '_' or '-', at most 256)", "tools")
        if name in names:
            raise RequestError(f"{where}: the tool name {name!r} is declared twice", "tools")
        names.add(name)
    return tools


# --- response_format ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A JSON ``response_format``: ``json_object``, or ``json_schema`` with its ``schema``
    (``strict`` false: only valid JSON is promised, as Moonshot documents)."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    strict: bool = True


def response_format(body: Mapping[str, Any]) -> ResponseFormat | None:
    """The request's JSON ``response_format`` (``None`` for none or ``text``), checked as
    Moonshot's API and vLLM check it: a known type; ``json_schema`` with ``name``, an object
    ``schema`` that is a valid JSON Schema and a boolean ``strict``."""
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError("response_format must be an object", "response_format")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise RequestError(f"response_format.type {kind!r} is not one of 'text', "
                           "'json_object', 'json_schema'", "response_format")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise RequestError("response_format.json_schema is required for type 'json_schema'",
                           "response_format")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise RequestError("response_format.json_schema.name is required", "response_format")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise RequestError("response_format.json_schema.schema must be a JSON Schema object",
                           "response_format")
    strict = spec.get("strict", True)
    if not isinstance(strict, bool):
        raise RequestError("response_format.json_schema.strict must be true or false",
                           "response_format")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise RequestError(f"response_format.json_schema.schema is not a valid JSON Schema: "
                           f"{exc.message}", "response_format") from None
    return ResponseFormat("json_schema", schema, strict)
