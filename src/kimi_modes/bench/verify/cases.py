"""The tool-call verifier's input: a JSONL file of chat-completion request bodies, one per
line, as Moonshot's K2-Vendor-Verifier (K2VV) reads them, plus an optional label per line.

A line is the body a client would POST to ``/v1/chat/completions`` (``messages``, ``tools``,
``tool_choice``, sampling fields...). K2VV's conventions hold: a message with the role
``_input`` is sent as ``system``; ``model`` is replaced by the model being verified; each case
is named by its 1-based line number (``data_index``) and keyed by the MD5 of the body as sent
(K2VV's ``compute_hash``: ``json.dumps(body, sort_keys=True, ensure_ascii=False)``).

One key is ours: ``expected_finish_reason`` (``"tool_calls"``: a tool call is expected;
``"stop"``: a plain answer is expected). It is the ground truth when no reference endpoint or
reference results are given, and it is never sent.

The bundled sample set (:func:`sample_path`) is such a file, written by hand
(``scripts/make_tool_calls_sample.py``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators

from kimi_modes.bench._jsonl import JsonlError, read_objects

#: The label key of a line: the finish reason a correct deployment gives.
LABEL_KEY = "expected_finish_reason"
#: The values a label may take.
LABELS = ("tool_calls", "stop")
SAMPLE_NAME = "tool_calls_sample.jsonl"
_ROLES = {"system", "developer", "user", "assistant", "tool", "_input"}


class InputError(Exception):
    """The input file cannot be used; the message is one line and names the line."""


@dataclass(frozen=True, slots=True)
class Case:
    """One line of the input: its 1-based line number, the body as written (label included)
    and the label (``None`` when the line has none)."""

    data_index: int
    raw: dict[str, Any]
    label: str | None


def sample_path() -> Traversable:
    """The bundled sample set (``kimi_modes/bench/data/tool_calls_sample.jsonl``)."""
    return resources.files("kimi_modes.bench").joinpath("data", SAMPLE_NAME)


def load_cases(path: Path | Traversable | None = None, limit: int | None = None) -> list[Case]:
    """The cases of a JSONL file (the bundled sample set when ``path`` is ``None``), at most
    ``limit`` of them. Blank lines are skipped (they still count for ``data_index``). Raises
    :class:`InputError` for an unreadable file, a line that is not a JSON object, a label that
    is not one of :data:`LABELS`, or no request at all."""
    source = sample_path() if path is None else path
    cases: list[Case] = []
    try:
        for line in read_objects(source):
            if limit is not None and len(cases) >= limit:
                break
            raw, where = line.value, line.where
            if not isinstance(raw.get("messages"), list) or not raw["messages"]:
                raise InputError(f"{where}: the request has no 'messages' list")
            label = raw.get(LABEL_KEY)
            if label is not None and label not in LABELS:
                raise InputError(
                    f"{where}: {LABEL_KEY} must be one of {', '.join(LABELS)}, not {label!r}"
                )
            cases.append(Case(line.number, raw, label))
    except JsonlError as exc:
        raise InputError(str(exc)) from None
    if not cases:
        raise InputError(f"{str(path) if path is not None else SAMPLE_NAME!r} holds no request")
    return cases


def prepare_body(
    raw: Mapping[str, Any],
    *,
    model: str,
    temperature: float | None = None,
    max_tokens: int | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body to send for a line: a deep copy without the label, ``_input`` roles made
    ``system``, ``model`` set, then ``temperature``/``max_tokens`` when given and
    ``extra_body``'s top-level keys (they win, as the ``openai`` SDK's ``extra_body`` does);
    always non-streaming (``stream`` false, no ``stream_options``)."""
    body = copy.deepcopy(dict(raw))
    body.pop(LABEL_KEY, None)
    for message in body.get("messages") or ():
        if isinstance(message, dict) and message.get("role") == "_input":
            message["role"] = "system"
    body["model"] = model
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(copy.deepcopy(dict(extra_body or {})))
    body["stream"] = False  # the verifier reads whole responses, whatever the line asks
    body.pop("stream_options", None)
    return body


def request_hash(body: Mapping[str, Any]) -> str:
    """K2VV's ``compute_hash`` of a body: the MD5 of its sorted-key JSON (an identity for
    resuming, not a security measure)."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def forced_function(body: Mapping[str, Any]) -> str | None:
    """The function a named ``tool_choice`` forces (``{"type": "function", "function":
    {"name": ...}}``), else ``None``."""
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def check_case(raw: Mapping[str, Any]) -> list[str]:
    """What is wrong with a line as a verifier request (empty: nothing). Checks the messages
    (known roles, user text, assistant tool calls with ids and JSON-object arguments, tool
    messages answering an earlier call), the tools (functions with names and valid JSON
    schemas), ``tool_choice`` (auto/none/required or a declared function) and the label."""
    problems: list[str] = []
    names = _check_tools(raw.get("tools"), problems)
    _check_messages(raw.get("messages"), problems)
    choice = raw.get("tool_choice")
    forced = forced_function(raw)
    if choice is not None and choice not in ("auto", "none", "required") and forced is None:
        problems.append(f"tool_choice {choice!r} is not auto, none, required or a function")
    if forced is not None and forced not in names:
        problems.append(f"tool_choice names {forced!r}, which is not declared")
    if choice is not None and not names:
        problems.append("tool_choice without tools")
    if raw.get(LABEL_KEY) not in LABELS:
        problems.append(f"{LABEL_KEY} is missing or not one of {', '.join(LABELS)}")
    return problems


def _check_tools(tools: Any, problems: list[str]) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list) or not tools:
        problems.append("tools must be a non-empty list")
        return names
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(
            function, dict
        ):
            problems.append(f"tools[{i}] is not a function tool")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"tools[{i}] has no name")
            continue
        if name in names:
            problems.append(f"tool {name!r} is declared twice")
        names.add(name)
        schema = function.get("parameters")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"tool {name!r}: parameters must be an object schema")
            continue
        cls = jsonschema_validators.validator_for(
            schema, default=jsonschema_validators.Draft202012Validator
        )
        try:
            cls.check_schema(schema)
        except jsonschema_exceptions.SchemaError as exc:
            problems.append(f"tool {name!r}: invalid JSON schema: {exc.message}")
    return names


def _check_messages(messages: Any, problems: list[str]) -> None:
    if not isinstance(messages, list) or not messages:
        problems.append("messages must be a non-empty list")
        return
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            problems.append(f"messages[{i}] has an unknown role {role!r}")
            continue
        assert isinstance(message, dict)
        if role == "user" and not message.get("content"):
            problems.append(f"messages[{i}] (user) has no content")
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(call, dict) or not call.get("id") or not isinstance(
                    function, dict
                ):
                    problems.append(f"messages[{i}] has a tool call without id or function")
                    continue
                try:
                    arguments = json.loads(function.get("arguments", ""))
                except (TypeError, json.JSONDecodeError):
                    arguments = None
                if not isinstance(arguments, dict):
                    problems.append(f"messages[{i}] has a call whose arguments are not an object")
                open_calls.add(call["id"])
        if role == "tool" and message.get("tool_call_id") not in open_calls:
            problems.append(f"messages[{i}] answers no earlier tool call")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") not in ("user", "tool"):
        problems.append("the last message must be a user message or a tool result")
