"""What the gateway remembers between requests stays with the caller and the conversation:
another API key never receives a reasoning it did not produce, and clients that re-serialise
tool-call arguments still get theirs back (a real gateway, the simulated engine)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from helpers.tools import weather_tool

WEATHER = weather_tool()
RULES = [
    {"name": "secret", "match": {"user": "(?i)weather", "after_tool": False},
     "reply": {"reasoning": "The admin password is hunter2; now the weather.",
               "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}},
    {"name": "answer", "match": {"after_tool": True}, "reply": {"content": "Sunny."}},
]


@pytest.fixture
def gateway(tmp_path: Any, start_simulator: Callable[..., Any],
            start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    gw = start_gateway(upstream_toml(sim.v1) + '[server]\napi_keys = ["sk-alice", "sk-bob"]\n')
    gw.sim = sim
    return gw


def ask(gw: Any, key: str, messages: list[dict[str, Any]]) -> Any:
    client = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)
    return client.chat.completions.create(model="kimi-k2.5-thinking", messages=messages,
                                          tools=[WEATHER])  # type: ignore[arg-type, list-item]


def reasoning_sent(gw: Any) -> list[Any]:
    last = httpx.get(gw.sim.url + "/sim/stats").json()["last_requests"][-1]["body"]
    return [m.get("reasoning_content") for m in last["messages"] if m["role"] == "assistant"]


def continuation(call: Any, arguments: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{
                "id": call.id, "type": "function",
                "function": {"name": call.function.name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]


def test_another_key_never_gets_the_first_callers_reasoning(gateway: Any) -> None:
    first = ask(gateway, "sk-alice", [{"role": "user", "content": "What's the weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    # Bob sends the very same conversation (Kimi's call ids repeat across conversations).
    ask(gateway, "sk-bob", continuation(call, call.function.arguments))
    assert reasoning_sent(gateway) == [None]
    ask(gateway, "sk-alice", continuation(call, call.function.arguments))
    assert reasoning_sent(gateway) == ["The admin password is hunter2; now the weather."]


@pytest.mark.parametrize("style", ["spaced", "compact", "reordered"])
def test_re_serialised_arguments_still_get_their_reasoning_back(gateway: Any,
                                                                style: str) -> None:
    first = ask(gateway, "sk-alice", [{"role": "user", "content": "What's the weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    value = json.loads(call.function.arguments)
    arguments = {"spaced": json.dumps(value, indent=1),  # LangChain-like json.dumps
                 "compact": json.dumps(value, separators=(",", ":")),  # JSON.stringify
                 "reordered": json.dumps(dict(reversed(list(value.items()))))}[style]
    ask(gateway, "sk-alice", continuation(call, arguments))
    assert reasoning_sent(gateway) == ["The admin password is hunter2; now the weather."]
