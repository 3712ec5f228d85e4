"""The gateway (a real server) in front of a real engine: llama.cpp's llama-server ``--jinja``
on the bundled SmolLM2-135M-Instruct (the ``llama_server`` fixture, tests/engines/conftest.py).

As an ``openai_chat`` upstream with dialect ``llama-server``: the openai SDK streamed and not,
a tool call and its result in the history, ``max_tokens`` → ``length``, llama-server's errors in
OpenAI's shape, a client that hangs up; the anthropic SDK once. As a ``kimi_raw`` upstream on
llama-server's ``/v1/completions``: SmolLM2 is no Kimi, so Kimi's template reaches it as plain
text; what is checked is the raw round trip, not the answer's sense.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.tools import weather_tool
from kimi_modes.protocol import render_prompt, tokens

if TYPE_CHECKING:
    from tests.engines.conftest import LlamaServer

pytestmark = [pytest.mark.slow]

WEATHER_TOOL = weather_tool()
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


def gateway_config(server: LlamaServer, kind: str = "openai_chat") -> str:
    return (
        f'[[upstreams]]\nname = "llama"\nkind = "{kind}"\nurl = "{server.v1}"\n'
        'family = "k2-instruct"\ndialect = "llama-server"\n'
    )


@pytest.fixture
def gateway(llama_server: LlamaServer, start_gateway: Callable[..., Any]) -> Any:
    return start_gateway(gateway_config(llama_server))


def oa(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0, timeout=120)


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus ``/metrics`` page (``None``: no such sample)."""
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_chat_streamed_and_not_give_the_same_greedy_answer(gateway: Any) -> None:
    client = oa(gateway)
    answer = client.chat.completions.create(
        model="kimi-instant", messages=HELLO, max_tokens=48, temperature=0
    )
    choice = answer.choices[0]
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert 0 < answer.usage.completion_tokens <= 48 and answer.usage.prompt_tokens > 0
    assert not choice.message.tool_calls

    stream = client.chat.completions.create(
        model="kimi-instant", messages=HELLO, max_tokens=48, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    pieces: list[str] = []
    finish = usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert len([p for p in pieces if p]) > 1  # really streamed, not one blob
    assert "".join(pieces) == choice.message.content
    assert finish == choice.finish_reason
    assert usage is not None and usage.completion_tokens == answer.usage.completion_tokens


def test_max_tokens_ends_with_length(gateway: Any) -> None:
    answer = oa(gateway).chat.completions.create(
        model="kimi-instant", max_tokens=3, temperature=0,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 3


def test_tool_call_history_round_trip(gateway: Any) -> None:
    """The second half of a tool round trip: an assistant tool call and its result in the
    history reach llama-server's template, and the model answers from them.

    SmolLM2's own template declares no tool support (llama-server's ``chat_template_caps``),
    so llama-server neither describes the tools to it nor parses or forces calls; a first
    half with ``tool_choice`` needs a model whose template does (docs/engines.md).
    """
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21, "sky": "clear"}'},
    ]  # fmt: skip
    answer = oa(gateway).chat.completions.create(
        model="kimi-instant", messages=messages, tools=[WEATHER_TOOL],
        temperature=0, max_tokens=32,
    )  # fmt: skip
    choice = answer.choices[0]
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.prompt_tokens > 30


def test_a_prompt_over_the_context_is_a_400_in_openais_shape(
    gateway: Any, llama_server: LlamaServer
) -> None:
    too_long = [{"role": "user", "content": "hello " * (llama_server.context + 100)}]
    with pytest.raises(openai.BadRequestError) as caught:
        oa(gateway).chat.completions.create(model="kimi-instant", messages=too_long)
    error = caught.value.body
    assert isinstance(error, dict)
    assert "context" in error["message"]
    assert error["type"] == "invalid_request_error"
    resp = httpx.post(gateway.v1 + "/chat/completions", timeout=120, json={
        "model": "kimi-instant", "messages": too_long, "stream": True})  # fmt: skip
    assert resp.status_code == 400
    assert "context" in resp.json()["error"]["message"]


def test_a_client_that_hangs_up_frees_llama_servers_slot(
    gateway: Any, llama_server: LlamaServer
) -> None:
    predicted = metric(llama_server.url, "llamacpp:tokens_predicted_total") or 0.0
    budget = llama_server.context - 200
    with httpx.stream("POST", gateway.v1 + "/chat/completions", timeout=120, json={
            "model": "kimi-instant", "stream": True, "max_tokens": budget,
            "ignore_eos": True, "messages": [{"role": "user", "content": "Count to ten."}]},
    ) as resp:  # fmt: skip
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 5:
                break
    deadline = time.monotonic() + 20
    while httpx.get(llama_server.url + "/slots").json()[0]["is_processing"]:
        assert time.monotonic() < deadline, "llama-server still generates for no one"
        time.sleep(0.1)
    # The slot went idle because the request was cancelled, not because it ran to the end.
    done = (metric(llama_server.url, "llamacpp:tokens_predicted_total") or 0.0) - predicted
    assert done < budget / 2, done
    deadline = time.monotonic() + 5
    while (metric(gateway.url, "kimi_modes_client_disconnects_total", api="chat_completions")
           or 0) < 1:  # fmt: skip
        assert time.monotonic() < deadline, httpx.get(gateway.url + "/metrics").text
        time.sleep(0.05)


def test_anthropic_messages(gateway: Any) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="none", max_retries=0,
                                 timeout=120)
    message = client.messages.create(
        model="kimi-instant", max_tokens=32,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )  # fmt: skip
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 32


def test_kimi_raw_round_trips_raw_text(
    llama_server: LlamaServer, start_gateway: Callable[..., Any]
) -> None:
    """kimi_raw renders Kimi's prompt; SmolLM2 reads Kimi's markers as plain text (only
    ``<|im_end|>`` is a token of its own). The gateway's answer is llama-server's raw text for
    that prompt, unchanged, streamed or not."""
    gw = start_gateway(gateway_config(llama_server, kind="kimi_raw"))
    prompt = render_prompt({"messages": HELLO}, "k2-instruct", thinking=False)
    direct = httpx.post(llama_server.v1 + "/completions", timeout=120, json={
        "prompt": prompt, "max_tokens": 24, "temperature": 0,
        "stop": list(tokens.STOP_STRINGS)}).json()["choices"][0]  # fmt: skip
    assert direct["text"].strip()

    answer = oa(gw).chat.completions.create(
        model="kimi-instant", messages=HELLO, max_tokens=24, temperature=0
    )
    choice = answer.choices[0]
    assert choice.message.content == direct["text"]
    assert choice.finish_reason == direct["finish_reason"]
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 24
    stream = oa(gw).chat.completions.create(
        model="kimi-instant", messages=HELLO, max_tokens=24, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == direct["text"]


def test_n_is_asked_n_times_and_logprobs_are_llama_servers(gateway: Any) -> None:
    client = oa(gateway)
    answer = client.chat.completions.create(
        model="kimi-instant", messages=HELLO, max_tokens=6, temperature=0, n=2,
        logprobs=True, top_logprobs=2)
    assert [c.index for c in answer.choices] == [0, 1]
    assert answer.usage is not None
    assert answer.usage.completion_tokens == sum(
        len(c.logprobs.content or ()) for c in answer.choices if c.logprobs)
    for choice in answer.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        entries = choice.logprobs.content
        assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in entries)
        assert "".join(e.token for e in entries) == choice.message.content
    stream = client.chat.completions.create(
        model="kimi-instant", messages=HELLO, max_tokens=6, temperature=0, logprobs=True,
        stream=True)
    entries = [e for chunk in stream for c in chunk.choices
               for e in (c.logprobs.content if c.logprobs and c.logprobs.content else ())]
    assert all(e.top_logprobs == [] for e in entries)  # top_logprobs 0: none, as asked
    assert [e.token for e in entries] == [
        e.token for e in answer.choices[0].logprobs.content or ()]  # type: ignore[union-attr]
