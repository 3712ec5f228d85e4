"""What the simulated engine refuses and honours over HTTP: Moonshot's sampling policy per
family (``--sampling official``), ``response_format`` (JSON that validates; schemas it cannot
produce refused), K3's dynamic tools and thinking effort, ``tool_choice`` without tools."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest

from helpers.simulator import Sim

HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"},
                                            "temperature": {"type": "number"},
                                            "unit": {"enum": ["c", "f"]}},
           "required": ["city", "temperature", "unit"], "additionalProperties": False}


def post(sim: Sim, **body: Any) -> httpx.Response:
    return httpx.post(sim.v1 + "/chat/completions", json={"messages": HELLO, **body},
                      timeout=30)


def refused(sim: Sim, message: str, **body: Any) -> None:
    response = post(sim, **body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def official(start_module_sim: Callable[..., Sim]) -> dict[str, Sim]:
    return {family: start_module_sim("--family", family, "--sampling", "official",
                                     "--ttft", "0", "--tpot", "0")
            for family in ("k2.5", "k3", "k2-instruct")}


def test_k2_5_pins_every_sampling_field(official: dict[str, Sim]) -> None:
    sim = official["k2.5"]
    off = {"chat_template_kwargs": {"thinking": False}}
    assert post(sim, temperature=1.0, top_p=0.95, presence_penalty=0).status_code == 200
    assert post(sim, temperature=0.6, **off).status_code == 200
    refused(sim, "invalid temperature: only 1 is allowed for this model", temperature=0.6)
    refused(sim, "invalid temperature: only 0.6 is allowed for this model", temperature=1.0,
            **off)
    refused(sim, "invalid top_p: only 0.95 is allowed", top_p=0.8)
    refused(sim, "invalid frequency_penalty: only 0 is allowed", frequency_penalty=0.5)
    refused(sim, "invalid n: only 1 is allowed", n=2)


def test_k3_takes_a_temperature_in_range_and_pins_the_rest(official: dict[str, Sim]) -> None:
    sim = official["k3"]
    for temperature in (0.0, 0.6, 1.0):
        assert post(sim, temperature=temperature).status_code == 200
    for temperature in (1.1, 2.0, -0.1):
        refused(sim, "invalid temperature: must be within [0, 1]", temperature=temperature)
    refused(sim, "invalid top_p: only 0.95", top_p=0.8)
    refused(sim, "invalid presence_penalty: only 0", presence_penalty=0.5)
    refused(sim, "invalid n: only 1 is allowed", n=2)


def test_k2_instruct_pins_nothing_but_the_range(official: dict[str, Sim]) -> None:
    sim = official["k2-instruct"]
    assert post(sim, temperature=0.3, top_p=0.5, presence_penalty=1.0, n=2).status_code == 200
    refused(sim, "within [0, 1]", temperature=1.5)


def test_open_sampling_takes_anything(sim: Sim) -> None:
    assert post(sim, temperature=1.7, top_p=0.3, presence_penalty=1).status_code == 200


def test_response_format_json_object_and_schema(sim: Sim) -> None:
    asked = [{"role": "user", "content": "Return JSON with a key named 'city', city=Paris please."}]
    for stream in (False, True):
        body = {"messages": asked, "response_format": {"type": "json_object"}}
        content = (collect(sim, body) if stream else
                   post(sim, **body).json()["choices"][0]["message"]["content"])
        assert json.loads(content) == {"city": "Paris"}
    body = {"response_format": {"type": "json_schema", "json_schema": {
        "name": "weather", "strict": True, "schema": WEATHER}}}
    choice = post(sim, **body).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    content = choice["message"]["content"]
    jsonschema.validate(json.loads(content), WEATHER)
    assert "\n" not in content and ": " not in content  # compact
    assert json.loads(collect(sim, {"messages": HELLO, **body})) == json.loads(content)


def collect(sim: Sim, body: dict[str, Any]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in sim.sse(body)
                   if e != "[DONE]" and e["choices"])


def test_response_format_refusals(sim: Sim) -> None:
    refused(sim, "is not one of", response_format={"type": "bogus"})
    refused(sim, "json_schema is required", response_format={"type": "json_schema"})
    refused(sim, "name is required", response_format={
        "type": "json_schema", "json_schema": {"schema": {"type": "object"}}})
    refused(sim, "must be a JSON Schema object", response_format={
        "type": "json_schema", "json_schema": {"name": "w", "schema": "x"}})
    refused(sim, "strict must be true or false", response_format={
        "type": "json_schema", "json_schema": {"name": "w", "strict": "yes", "schema": {}}})
    refused(sim, "not a valid JSON Schema", response_format={
        "type": "json_schema", "json_schema": {"name": "w", "schema": {"type": 5}}})
    refused(sim, "cannot generate a value", response_format={
        "type": "json_schema", "json_schema": {"name": "w", "schema": {
            "type": "string", "pattern": "^[0-9]{3}$"}}})


def test_tool_choice_needs_tools(sim: Sim) -> None:
    refused(sim, "tool_choice needs tools", tool_choice="required")
    refused(sim, "tool_choice needs tools", tools=[], tool_choice="required")
    refused(sim, "is not 'none', 'auto'", tool_choice="bogus")
    assert post(sim, tool_choice="none").status_code == 200


def test_k3_dynamic_tools(official: dict[str, Sim]) -> None:
    sim = official["k3"]
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    stock = {"type": "function", "function": {"name": "get_stock_price",
                                              "description": "Get the stock price."}}
    ask = {"role": "user", "content": "what is the weather in beijing?"}
    choice = post(sim, messages=[{"role": "system", "content": "", "tools": [weather]}, ask],
                  tools=[stock], tool_choice="required").json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    refused(sim, "only a system message", messages=[{**ask, "tools": [weather]}])
    refused(sim, "must have empty content",
            messages=[{"role": "system", "content": "x", "tools": [weather]}, ask])
    refused(sim, "declared twice", messages=[
        {"role": "system", "content": "", "tools": [stock]}, ask], tools=[stock])
    refused(sim, "not a valid tool name", messages=[
        {"role": "system", "content": "", "tools": [
            {"type": "function", "function": {"name": "1bad"}}]}, ask])
    refused(sim, "needs its tool_call_id", messages=[{"role": "tool", "content": "r"}, ask])


def test_k3_thinking_effort(official: dict[str, Sim]) -> None:
    sim = official["k3"]
    question = [{"role": "user", "content": "What is your thinking_effort?"}]

    def answer(**body: Any) -> dict[str, Any]:
        return dict(post(sim, **body).json()["choices"][0]["message"])

    assert answer(messages=question)["content"] == "max"
    assert answer(messages=question, reasoning_effort="low")["content"] == "low"
    assert answer(messages=question, reasoning_effort="max",
                  chat_template_kwargs={"thinking_effort": "high"})["content"] == "high"
    low, full = answer(reasoning_effort="low")["reasoning"], answer()["reasoning"]
    assert full.startswith(low) and len(low) < len(full)
    assert answer(reasoning_effort="none")["reasoning"] is None
    refused(sim, "not supported", reasoning_effort="medium")
