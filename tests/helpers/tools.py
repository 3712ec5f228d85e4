"""Tool schemas the tests declare, built from one set of parts so that every file's weather
tool is the same tool unless a test says otherwise."""

from __future__ import annotations

from typing import Any

#: The properties a test may pick for its weather tool.
WEATHER_PROPERTIES: dict[str, dict[str, Any]] = {
    "city": {"type": "string", "description": "City name"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7},
}


def function_tool(name: str, description: str, properties: dict[str, Any],
                  required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An OpenAI chat-completions function tool."""
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(required)},
    }}


def weather_tool(*fields: str, required: tuple[str, ...] = ("city",)) -> dict[str, Any]:
    """``get_weather`` with the given properties (default: city only, required)."""
    fields = fields or ("city",)
    return function_tool("get_weather", "Get the current weather for a city.",
                         {f: WEATHER_PROPERTIES[f] for f in fields}, required)


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """The same tool in Anthropic's shape (``name``, ``description``, ``input_schema``)."""
    fn = tool["function"]
    return {"name": fn["name"], "description": fn.get("description", ""),
            "input_schema": fn["parameters"]}


#: The weather tool of most tests: a city (required) and a unit.
WEATHER = weather_tool("city", "unit")

#: A tool the client answers itself (Agent mode hands its calls back).
LOOKUP_ORDER = function_tool("lookup_order", "Look an order up.",
                             {"order": {"type": "string"}}, ("order",))
