"""KVV ``tests/k3_features/test_dynamic_tools.py``: tools declared inside a system message
(``{"role": "system", "content": "", "tools": [...]}``) beside the request's own. Callable
from any system position, alone or several, with nested schemas, next to global tools;
refused (400) in a user or assistant message, with non-empty content, when malformed (no
type / function / name, a bad name, a type other than ``function``, not an array, an item
that is not an object), when a name is declared twice (in one message, across messages, or
also globally), and a tool message without ``tool_call_id``. ``tool_choice`` ``required``
forces the calls (K3 takes no named function here)."""

from __future__ import annotations

from typing import Any

from kimi_modes.bench.verify.kvv.case import WEATHER_TOOL, Case, calls_one_of, refused
from kimi_modes.bench.verify.kvv.probe import Answer, user

ASK = user("what is the weather in beijing?")
HELLO = user("hello")


def _fn(name: str, description: str = "A tool.") -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {}}}}


def _system(*tools: Any, content: str = "") -> dict[str, Any]:
    return {"role": "system", "content": content, "tools": list(tools)}


def _without(field: str) -> dict[str, Any]:
    tool = _fn("good_tool")
    del (tool["function"] if field == "name" else tool)[field]
    return tool


_NESTED = {"type": "function", "function": {
    "name": "nested_tool", "description": "A tool with a nested parameter schema.",
    "parameters": {"type": "object", "properties": {"location": {
        "type": "object", "properties": {"lat": {"type": "number"},
                                         "lon": {"type": "number"}}}}}}}
_NOT_STRICT = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather of a city.", "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
_BOGUS = {"type": "bogus", "function": {"name": "x"}}


def _calls_including(name: str) -> Any:
    def verdict(answer: Answer) -> str | None:
        problem = calls_one_of()(answer)
        if problem is None and name not in answer.call_names:
            return f"{name!r} not among the calls {answer.call_names}"
        return problem
    return verdict


def dynamic_tool_cases() -> list[Case]:
    """KVV's dynamic-tool tests, in its order."""
    def required(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"messages": list(messages), "tool_choice": "required", **extra}

    def plain(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"messages": list(messages), **extra}

    weather = calls_one_of("get_weather")
    return [
        Case("dynamic tool in a system message callable", required(_system(WEATHER_TOOL), *ASK),
             weather),
        Case("dynamic tool in a later system message",
             required({"role": "system", "content": "You are a helpful assistant."},
                      *user("hi"), {"role": "assistant", "content": "Hello!"},
                      _system(WEATHER_TOOL), *ASK), weather),
        Case("dynamic tool as the last message", required(*ASK, _system(WEATHER_TOOL)),
             weather),
        Case("three dynamic tools in one message",
             required(_system(_fn("get_weather"), _fn("get_time"), _fn("get_news")), *ASK),
             calls_one_of("get_weather", "get_time", "get_news")),
        Case("dynamic tool with a nested schema",
             required(_system(_NESTED), *user("use the tool")), calls_one_of("nested_tool")),
        Case("two dynamic messages with distinct tools",
             required(_system(_fn("get_weather")), _system(_fn("get_time")), *ASK),
             calls_one_of("get_weather", "get_time")),
        Case("dynamic tool with strict=false", required(_system(_NOT_STRICT), *ASK), weather),
        Case("global and dynamic tools coexist",
             required(_system(WEATHER_TOOL), *ASK,
                      tools=[_fn("get_stock_price", "Get the stock price of a company.")]),
             _calls_including("get_weather")),
        Case("required with only dynamic tools", required(_system(WEATHER_TOOL), *ASK),
             calls_one_of()),
        Case("dynamic tool in a user message refused",
             plain({"role": "user", "content": "hi", "tools": [WEATHER_TOOL]}, *ASK), refused),
        Case("dynamic tool in an assistant message refused",
             plain(*user("hi"), {"role": "assistant", "content": "hello",
                                 "tools": [WEATHER_TOOL]}, *ASK), refused),
        Case("content and dynamic tools both set refused",
             plain(_system(WEATHER_TOOL, content="not empty"), *HELLO), refused),
        *(Case(f"dynamic tool missing {field} refused",
               plain(_system(_without(field)), *HELLO), refused)
          for field in ("type", "function", "name")),
        *(Case(f"dynamic tool name {label} refused", plain(_system(_fn(name)), *HELLO), refused)
          for label, name in (("starting with a digit", "1bad_name"),
                              ("with '@'", "bad@name"), ("empty", ""),
                              ("of 257 characters", "a" * 257))),
        Case("dynamic tool of type 'bogus' refused", plain(_system(_BOGUS), *HELLO), refused),
        Case("valid and bogus-type dynamic tools refused",
             plain(_system(_fn("good_tool"), _BOGUS), *HELLO), refused),
        Case("dynamic tools not an array refused",
             plain({"role": "system", "content": "", "tools": {"type": "function"}}, *HELLO),
             refused),
        Case("dynamic tools item not an object refused", plain(_system(None), *HELLO),
             refused),
        Case("duplicate dynamic tool names refused",
             plain(_system(_fn("dup"), _fn("dup")), *HELLO), refused),
        Case("duplicate names across dynamic messages refused",
             plain(_system(_fn("dup")), _system(_fn("dup")), *HELLO), refused),
        Case("duplicate name global and dynamic refused",
             plain(_system(_fn("dup")), *HELLO, tools=[_fn("dup")]), refused),
        Case("tool message without tool_call_id refused",
             plain({"role": "tool", "content": "some tool result"}, *HELLO), refused),
    ]
