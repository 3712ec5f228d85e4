"""``n`` and ``logprobs`` through a real gateway in front of the simulated engine (vLLM's wire),
driven with the official ``openai`` SDK: several choices parsed each on its own (reasoning,
tool calls), streamed and not, with the logprobs the engine gives; the Responses API's
``output_text`` logprobs; and the clear 400s where they cannot be given."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from helpers.clients import last_upstream_request
from helpers.tools import weather_tool

pytestmark = pytest.mark.slow

WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
#: The first choice of a request calls the tool (the rule is used once per reset); the other
#: choices get the simulator's default answer ("You said: ...").
RULES = {"rules": [{"name": "call", "match": {"user": "weather"}, "times": 1, "reply": {
    "reasoning": "The user wants the weather.",
    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}}]}


def toml(url: str, kind: str = "openai_chat", dialect: str = "vllm") -> str:
    return (f'[[upstreams]]\nname = "sim"\nkind = "{kind}"\nurl = "{url}"\n'
            f'family = "k2.5"\ndialect = "{dialect}"\n')


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)


@pytest.fixture(params=["openai_chat", "kimi_raw"])
def gw(request: pytest.FixtureRequest, start_simulator: Callable[..., Any],
       start_gateway: Callable[..., Any], tmp_path: Path) -> Any:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(rules))
    gateway = start_gateway(toml(sim.v1, request.param))
    gateway.sim, gateway.kind = sim, request.param
    return gateway


def ask(gw: Any, **fields: Any) -> Any:
    gw.sim.control(reset=True)
    return client(gw).chat.completions.create(
        model="kimi-k2.5-thinking", messages=WEATHER, tools=[weather_tool()], **fields)


def test_n_choices_are_parsed_each_on_its_own(gw: Any) -> None:
    answer = ask(gw, n=3)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    call, *plain = answer.choices
    assert call.finish_reason == "tool_calls"
    assert call.message.reasoning_content == "The user wants the weather."  # type: ignore
    assert call.message.tool_calls is not None
    assert call.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(call.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    for choice in plain:
        assert choice.finish_reason == "stop" and not choice.message.tool_calls
        assert (choice.message.content or "").startswith("You said:")
        assert choice.logprobs is None
    assert last_upstream_request(gw.sim)["n"] == 3  # one upstream request for all three
    single = ask(gw)
    assert answer.usage is not None and single.usage is not None
    assert answer.usage.prompt_tokens == single.usage.prompt_tokens
    assert answer.usage.completion_tokens > 2 * single.usage.completion_tokens


def test_streamed_choices_and_logprobs_match_the_whole_answer(gw: Any) -> None:
    whole = ask(gw, n=2, logprobs=True, top_logprobs=2)
    stream = ask(gw, n=2, logprobs=True, top_logprobs=2, stream=True,
                 stream_options={"include_usage": True})
    content: dict[int, str] = {0: "", 1: ""}
    tokens: dict[int, list[str]] = {0: [], 1: []}
    finish: dict[int, str | None] = {}
    calls: dict[int, int] = {0: 0, 1: 0}
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            content[choice.index] += choice.delta.content or ""
            calls[choice.index] += len(choice.delta.tool_calls or ())
            if choice.logprobs and choice.logprobs.content:
                tokens[choice.index] += [t.token for t in choice.logprobs.content]
                assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token
                           for t in choice.logprobs.content)
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert finish == {0: "tool_calls", 1: "stop"} and calls[0] >= 1 and calls[1] == 0
    assert whole.usage is not None and usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    for index, choice in enumerate(whole.choices):
        assert choice.logprobs is not None and choice.logprobs.content
        assert [t.token for t in choice.logprobs.content] == tokens[index]
        assert content[index] == (choice.message.content or "")
    # every token the choice generated, the reasoning's included: the content is among them
    answer = whole.choices[1]
    joined = "".join(t.token for t in answer.logprobs.content)  # type: ignore[union-attr]
    assert answer.message.content and answer.message.content in joined
    assert joined.index(answer.message.reasoning_content or "") < joined.index(  # type: ignore
        answer.message.content)
    sent = last_upstream_request(gw.sim)
    if gw.kind == "openai_chat":
        assert (sent["logprobs"], sent["top_logprobs"], sent["n"]) == (True, 2, 2)
    else:
        assert (sent["logprobs"], sent["n"]) == (2, 2)


def test_responses_output_text_carries_logprobs(gw: Any) -> None:
    oa = client(gw)
    response = oa.responses.create(model="kimi-k2.5-instant", input="Say hello",
                                   include=["message.output_text.logprobs"], top_logprobs=1)
    message = next(item for item in response.output if item.type == "message")
    part = message.content[0]
    assert part.type == "output_text" and part.logprobs
    assert part.text in "".join(lp.token for lp in part.logprobs)
    assert all(len(lp.top_logprobs) == 1 for lp in part.logprobs)
    streamed: list[str] = []
    with oa.responses.stream(model="kimi-k2.5-instant", input="Say hello",
                             include=["message.output_text.logprobs"]) as events:
        for event in events:
            if event.type == "response.output_text.delta":
                streamed += [lp.token for lp in event.logprobs]
    assert streamed == [lp.token for lp in part.logprobs]


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 3}, "top_logprobs")])
def test_what_cannot_be_given_is_a_400_naming_the_parameter(
        sim: Any, start_gateway: Callable[..., Any], fields: dict[str, Any], param: str) -> None:
    gw = start_gateway(toml(sim.v1))
    response = httpx.post(gw.v1 + "/chat/completions", json={
        "model": "kimi-k2.5-agent", "messages": WEATHER, **fields}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_an_upstream_without_logprobs_refuses_them_and_without_n_is_asked_n_times(
        sim: Any, start_gateway: Callable[..., Any]) -> None:
    gw = start_gateway(toml(sim.v1, dialect="moonshot"))
    with pytest.raises(openai.BadRequestError) as refused:
        client(gw).chat.completions.create(model="kimi-k2.5-instant", messages=WEATHER,
                                           logprobs=True, stream=True, n=2)  # a real 400
    assert refused.value.param == "logprobs"
    chats = sim.stats()["by_path"].get("/v1/chat/completions", 0)
    answer = client(gw).chat.completions.create(model="kimi-k2.5-instant", messages=WEATHER,
                                                n=2, seed=7)
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.message.content for c in answer.choices)
    assert sim.stats()["by_path"]["/v1/chat/completions"] - chats == 2
    assert "n" not in last_upstream_request(sim) and last_upstream_request(sim)["seed"] == 8
