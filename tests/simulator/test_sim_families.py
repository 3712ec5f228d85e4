"""Every Kimi family through the simulated engine, on both endpoints.

``/v1/completions`` takes the prompt protocol renders for the family and answers the raw text
the family writes (K3: XTML); ``/v1/chat/completions`` answers that text parsed, as vLLM's
parsers for the family would. The two must agree: the raw text, parsed by protocol, is the
chat answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from kimi_modes.protocol import family_info, format_output, parse_output, render_prompt
from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.families import Family

if TYPE_CHECKING:
    from helpers.simulator import Sim

MODEL = "moonshotai/Kimi-K2.5"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
HELLO = [{"role": "user", "content": "Hello there"}]
ASK_TOOL = [{"role": "user", "content": "Use get_weather for city=Paris days=3"}]


@pytest.fixture(scope="module", params=list(Family))
def family_sim(
    request: pytest.FixtureRequest, start_module_sim: Callable[..., Sim]
) -> tuple[Sim, Family]:
    """A simulated engine serving one family (each family in turn), and the family."""
    family = Family(request.param)
    return start_module_sim("--family", family, "--ttft", "0", "--tpot", "0"), family


def post(sim: Sim, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(sim.v1 + path, json={"model": MODEL, **body}, timeout=30)


def chat(sim: Sim, **body: Any) -> dict[str, Any]:
    response = post(sim, "/chat/completions", body)
    assert response.status_code == 200, response.text
    return dict(response.json()["choices"][0])


def complete(sim: Sim, prompt: str, **body: Any) -> dict[str, Any]:
    response = post(sim, "/completions", {"prompt": prompt, "max_tokens": 500, **body})
    assert response.status_code == 200, response.text
    return dict(response.json()["choices"][0])


def streamed(sim: Sim, body: dict[str, Any]) -> tuple[str, str, dict[int, dict[str, str]], str]:
    """Reasoning, content, calls by index and the finish reason of a streamed chat."""
    reasoning, content, finish = "", "", ""
    calls: dict[int, dict[str, str]] = {}
    for event in sim.sse({"model": MODEL, **body}):
        if event == "[DONE]" or not event["choices"]:
            continue
        choice = event["choices"][0]
        delta = choice["delta"]
        reasoning += delta.get("reasoning") or ""
        content += delta.get("content") or ""
        for call in delta.get("tool_calls") or ():
            entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
            entry["id"] = call.get("id") or entry["id"]
            function = call.get("function") or {}
            entry["name"] = function.get("name") or entry["name"]
            entry["arguments"] += function.get("arguments") or ""
        finish = choice.get("finish_reason") or finish
    return reasoning, content, calls, finish


def test_chat_answers_with_the_familys_reasoning(family_sim: tuple[Sim, Family]) -> None:
    sim, family = family_sim
    choice = chat(sim, messages=HELLO)
    assert choice["message"]["content"] == "You said: Hello there"
    assert choice["finish_reason"] == "stop"
    reasoning = choice["message"]["reasoning"]
    if family_info(family).thinks():
        assert reasoning.startswith("The user wrote 2 words.")
    else:
        assert reasoning is None
    off = chat(sim, messages=HELLO, chat_template_kwargs={"thinking": False})
    assert off["message"]["content"] == "You said: Hello there"
    assert (off["message"]["reasoning"] is None) is (not family_info(family).thinks(False))


def test_completions_write_the_familys_raw_text(family_sim: tuple[Sim, Family]) -> None:
    sim, family = family_sim
    for thinking in (True, False):
        prompt = render_prompt({"messages": HELLO}, family, thinking=thinking)
        text = complete(sim, prompt)["text"]
        thinks = family_info(family).thinks(thinking)
        reasoning = "The user wrote 2 words. A direct answer fits; I will echo them."
        expected = format_output(
            family, reasoning=reasoning if thinks else None, content="You said: Hello there",
            thinking=thinking,
        )
        assert text == expected
        answer = parse_output(text, family, thinking=thinking)
        assert answer.content == "You said: Hello there"
        assert answer.reasoning_content == (reasoning if thinks else None)


def test_a_tool_call_agrees_on_both_endpoints(family_sim: tuple[Sim, Family]) -> None:
    sim, family = family_sim
    tools = [WEATHER]
    whole = chat(sim, messages=ASK_TOOL, tools=tools)
    assert whole["finish_reason"] == "tool_calls"
    (call,) = whole["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 3}
    reasoning, content, calls, finish = streamed(
        sim, {"messages": ASK_TOOL, "tools": tools}
    )
    assert finish == "tool_calls" and content == ""
    assert calls == {0: {"id": call["id"], "name": "get_weather",
                         "arguments": call["function"]["arguments"]}}
    assert reasoning == (whole["message"]["reasoning"] or "")
    prompt = render_prompt({"messages": ASK_TOOL, "tools": tools}, family)
    text = complete(sim, prompt, skip_special_tokens=False)["text"]
    answer = parse_output(text, family, tools=tools)
    assert [(c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
        ("get_weather", {"city": "Paris", "days": 3})
    ]
    assert answer.reasoning_content == (whole["message"]["reasoning"] or None)
    # the tool result, read back from the rendered prompt, gets the summary
    history = [
        *ASK_TOOL,
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": call["id"], "type": "function", "function": call["function"]}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C"},
    ]
    summary = parse_output(
        complete(sim, render_prompt({"messages": history, "tools": tools}, family))["text"],
        family,
    )
    assert summary.content == "Here is what the tools returned. get_weather: Sunny, 21 C"
    assert chat(sim, messages=history, tools=tools)["message"]["content"] == summary.content


def test_ignore_eos_generates_past_the_familys_stop_token(family_sim: tuple[Sim, Family]) -> None:
    sim, family = family_sim
    prompt = render_prompt({"messages": HELLO}, family, thinking=False)
    choice = complete(sim, prompt, max_tokens=40, ignore_eos=True,
                      skip_special_tokens=False)
    stop = family_info(family).stop_strings[0]
    answer, filler = choice["text"].split(stop)
    assert parse_output(answer, family, thinking=False).content == "You said: Hello there"
    assert filler.startswith(" The lighthouse keeper")
    assert choice["finish_reason"] == "length"


def test_stop_strings_of_the_family_end_a_completion(family_sim: tuple[Sim, Family]) -> None:
    sim, family = family_sim
    prompt = render_prompt({"messages": HELLO}, family, thinking=False)
    stops = list(family_info(family).stop_strings)
    choice = complete(sim, prompt, ignore_eos=True, stop=stops,
                      skip_special_tokens=False)
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stops[0]
    assert parse_output(choice["text"], family, thinking=False).content == "You said: Hello there"


# -- K3 specifics ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k3_sim(start_module_sim: Callable[..., Sim]) -> Sim:
    return start_module_sim("--family", "k3", "--ttft", "0", "--tpot", "0")


def test_k3_completion_is_xtml(k3_sim: Sim) -> None:
    prompt = render_prompt({"messages": HELLO}, "k3", thinking_effort="low")
    text = complete(k3_sim, prompt)["text"]
    assert text.endswith(
        f"{T.XTML_CLOSE}think{T.XTML_SEP}{T.XTML_OPEN}response{T.XTML_SEP}You said: Hello there"
        f"{T.XTML_CLOSE}response{T.XTML_SEP}{T.XTML_CLOSE}message{T.XTML_SEP}"
    )
    assert T.THINK_END not in text and T.IM_END not in text


def test_k3_tool_choice_none_in_the_prompt_stops_the_call(k3_sim: Sim) -> None:
    prompt = render_prompt({"messages": ASK_TOOL, "tools": [WEATHER], "tool_choice": "none"},
                           "k3")
    answer = parse_output(complete(k3_sim, prompt)["text"], "k3")
    assert answer.tool_calls == [] and answer.content is not None


def test_k3_thinking_effort_is_checked_as_the_encoder_does(k3_sim: Sim) -> None:
    good = chat(k3_sim, messages=HELLO, chat_template_kwargs={"thinking_effort": "low"})
    assert good["message"]["content"] == "You said: Hello there"
    bad = post(k3_sim, "/chat/completions",
               {"messages": HELLO, "chat_template_kwargs": {"thinking_effort": "medium"}})
    assert bad.status_code == 400
    assert "thinking_effort 'medium'" in bad.json()["error"]["message"]


def test_k3_chat_is_cut_by_a_fault_and_paced_by_its_timings(k3_sim: Sim) -> None:
    events: list[str] = []
    with (
        httpx.stream("POST", k3_sim.v1 + "/chat/completions", timeout=30,
                     headers={"x-sim-fault": "cut:4"},
                     json={"model": MODEL, "messages": HELLO, "stream": True}) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        events.extend(response.iter_lines())
    assert "data: [DONE]" not in events
    reasoning, content, _, finish = streamed(k3_sim, {"messages": HELLO})
    assert (content, finish) == ("You said: Hello there", "stop")
    started = time.monotonic()
    with httpx.stream("POST", k3_sim.v1 + "/chat/completions", timeout=30,
                      headers={"x-sim-ttft": "0.3"},
                      json={"model": MODEL, "messages": HELLO, "stream": True}) as response:
        assert response.status_code == 200
        response.read()
    assert time.monotonic() - started >= 0.3
    assert reasoning.startswith("The user wrote 2 words.")
