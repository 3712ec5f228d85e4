"""KVV ``tests/k3_features``, K3 only: ``tool_choice`` and ``response_format`` (here),
dynamic tools (:mod:`.dynamic_tools`) and thinking effort (:mod:`.effort`). As KVV's
conftest does, every check runs twice, non-streamed and streamed (the stream reassembled).

Left out, as KVV skips or marks them flaky: prompt-driven ``tool_choice: auto`` tests, the
response-format prompt-token constants of Moonshot's tokenizer, and the effort tests KVV
skips (reasoning length low < high < max, default closest to max, thinking disabled, keep).
"""

from __future__ import annotations

from typing import Any

from kimi_modes.bench.verify.kvv.case import (
    WEATHER_TOOL,
    Case,
    Verdict,
    calls_one_of,
    refused,
    run_cases,
)
from kimi_modes.bench.verify.kvv.dynamic_tools import dynamic_tool_cases
from kimi_modes.bench.verify.kvv.effort import effort_checks
from kimi_modes.bench.verify.kvv.probe import (
    Answer,
    Check,
    Prober,
    parse_json,
    user,
    validate_arguments,
)

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                                   "temperature": {"type": "number"}},
                  "required": ["city", "temperature"], "additionalProperties": False}


def _text_answer(answer: Answer) -> str | None:
    if not answer.accepted:
        return answer.describe()
    if answer.message.get("tool_calls") or not answer.content:
        return f"no text answer: {answer.message}"[:160]
    return None


def _json_answer(keys: tuple[str, ...], schema: dict[str, Any] | None = None) -> Verdict:
    def verdict(answer: Answer) -> str | None:
        if not answer.accepted:
            return answer.describe()
        if answer.finish_reason != "stop":
            return f"finish_reason {answer.finish_reason!r}, not 'stop'"
        parsed = parse_json(answer.content)
        if not isinstance(parsed, dict):
            return f"content is not a JSON object: {answer.content[:80]!r}"
        missing = [k for k in keys if k not in parsed]
        if missing:
            return f"keys {missing} missing from {answer.content[:80]!r}"
        return validate_arguments(schema, answer.content) if schema is not None else None
    return verdict


def _tool_choice_cases() -> list[Case]:
    ask = user("What is the weather in Beijing? Please look it up.")

    def no_call(answer: Answer) -> str | None:
        if not answer.accepted:
            return answer.describe()
        if answer.message.get("tool_calls") or answer.finish_reason != "stop":
            return f"called a tool (finish_reason {answer.finish_reason!r})"
        return None

    return [
        Case("tool_choice=required forces a call",
             {"messages": ask, "tools": [WEATHER_TOOL], "tool_choice": "required"},
             calls_one_of("get_weather")),
        Case("tool_choice=none forbids a call",
             {"messages": ask, "tools": [WEATHER_TOOL], "tool_choice": "none"}, no_call),
        Case("required without tools refused", {"messages": ask, "tool_choice": "required"},
             refused),
        Case("required with tools=[] refused",
             {"messages": ask, "tools": [], "tool_choice": "required"}, refused),
        Case("tool_choice='bogus' refused",
             {"messages": ask, "tools": [WEATHER_TOOL], "tool_choice": "bogus"}, refused),
        *(Case(f"tool_choice={choice} without tools accepted",
               {"messages": user("Hello."), "tool_choice": choice}, _text_answer)
          for choice in ("none", "auto")),
    ]


def _response_format_cases() -> list[Case]:
    hello = user("hello")

    def fmt(value: Any) -> dict[str, Any]:
        return {"messages": hello, "response_format": value}

    def text(answer: Answer) -> str | None:
        problem = _text_answer(answer)
        if problem is None and answer.finish_reason != "stop":
            return f"finish_reason {answer.finish_reason!r}, not 'stop'"
        return problem

    return [
        Case("response_format text",
             {"messages": user("Describe Beijing in one sentence."),
              "response_format": {"type": "text"}}, text),
        Case("response_format json_object",
             {"messages": user("Return the weather of Beijing as JSON. The response must "
                               "contain a key named 'city'."),
              "response_format": {"type": "json_object"}}, _json_answer(("city",))),
        Case("response_format json_schema strict",
             {"messages": user("Return the weather of Beijing as JSON following the schema."),
              "response_format": {"type": "json_schema", "json_schema": {
                  "name": "weather", "strict": True, "schema": WEATHER_SCHEMA}}},
             _json_answer(("city", "temperature"), WEATHER_SCHEMA)),
        Case("response_format json_schema non-strict",
             {"messages": user("Return the weather of Beijing as JSON."),
              "response_format": {"type": "json_schema", "json_schema": {
                  "name": "weather", "strict": False, "schema": {
                      "type": "object", "properties": {"city": {"type": "string"}}}}}},
             _json_answer(())),
        Case("response_format type 'bogus' refused", fmt({"type": "bogus"}), refused),
        Case("json_schema without name refused",
             fmt({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}),
             refused),
        Case("json_schema without schema refused",
             fmt({"type": "json_schema", "json_schema": {"name": "weather"}}), refused),
        Case("type json_schema without json_schema refused", fmt({"type": "json_schema"}),
             refused),
        Case("json_schema strict 'yes' refused",
             fmt({"type": "json_schema", "json_schema": {
                 "name": "weather", "strict": "yes", "schema": {"type": "object"}}}), refused),
        Case("json_schema schema 'x' refused",
             fmt({"type": "json_schema", "json_schema": {"name": "weather", "schema": "x"}}),
             refused),
    ]


async def k3_suite(p: Prober, think_mode: str, max_tokens: int) -> list[Check]:
    """Every k3_features check this verifier runs."""
    checks = await run_cases(p, "k3", [*_tool_choice_cases(), *_response_format_cases(),
                                       *dynamic_tool_cases()])
    for stream in (False, True):
        checks += await effort_checks(p, think_mode, stream, max_tokens)
    return checks
