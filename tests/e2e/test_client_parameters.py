"""Parameters real clients send, through a real gateway in front of the simulated engine,
driven with the official SDKs: OpenAI's ``reasoning_effort`` (every value the SDK sends, mapped
onto K3's ``thinking_effort`` and ignored by K2.x families), Moonshot's ``thinking.effort``,
``GET /v1/models/{id}``, and the sampling the gateway fills in when a client sends none (each
family's own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from helpers.clients import last_upstream_request

pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "Say hello"}]


def toml(url: str, family: str, kind: str = "openai_chat") -> str:
    return (f'[[upstreams]]\nname = "sim"\nkind = "{kind}"\nurl = "{url}"\n'
            f'family = "{family}"\ndialect = "vllm"\n')


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)


@pytest.fixture(params=["openai_chat", "kimi_raw"])
def k3(request: pytest.FixtureRequest, start_simulator: Callable[..., Any],
       start_gateway: Callable[..., Any]) -> Any:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--family", "k3")
    gw = start_gateway(toml(sim.v1, "k3", request.param))
    gw.sim, gw.kind = sim, request.param
    return gw


@pytest.mark.parametrize(("effort", "k3_effort"), [
    ("minimal", "low"), ("low", "low"), ("medium", "high"), ("high", "high"),
    ("xhigh", "max"), ("max", "max"), (None, "max")])
def test_reasoning_effort_sets_k3s_thinking_effort(k3: Any, effort: str | None,
                                                  k3_effort: str) -> None:
    extra = {} if effort is None else {"reasoning_effort": effort}
    answer = client(k3).chat.completions.create(model="kimi-k3-thinking", messages=USER,
                                                **extra)  # type: ignore[call-overload]
    assert answer.choices[0].message.content
    sent = last_upstream_request(k3.sim)
    if k3.kind == "openai_chat":
        assert sent["chat_template_kwargs"]["thinking_effort"] == k3_effort
    else:
        assert f"invoked with `thinking_effort={k3_effort}`" in sent["prompt"]


def test_reasoning_effort_none_switches_thinking_off_and_an_explicit_effort_wins(
        k3: Any) -> None:
    client(k3).chat.completions.create(model="kimi-k3-thinking", messages=USER,
                                       reasoning_effort="none")
    if k3.kind == "openai_chat":
        assert last_upstream_request(k3.sim)["chat_template_kwargs"] == {"thinking": False}
    client(k3).chat.completions.create(
        model="kimi-k3-thinking", messages=USER, reasoning_effort="minimal",
        extra_body={"chat_template_kwargs": {"thinking_effort": "max"}})
    sent = last_upstream_request(k3.sim)
    if k3.kind == "openai_chat":
        assert sent["chat_template_kwargs"]["thinking_effort"] == "max"
    else:
        assert "invoked with `thinking_effort=max`" in sent["prompt"]


def test_moonshots_thinking_object_carries_k3s_effort(k3: Any) -> None:
    """KVV's ``--think-mode kimi`` spelling: ``thinking: {"type": "enabled", "keep": "all",
    "effort": ...}``; its effort wins over ``reasoning_effort``, ``medium`` is refused as K3's
    encoder refuses it, and one that disagrees with chat_template_kwargs is a 400."""
    client(k3).chat.completions.create(
        model="kimi-k3-thinking", messages=USER, reasoning_effort="xhigh",
        extra_body={"thinking": {"type": "enabled", "keep": "all", "effort": "low"}})
    sent = last_upstream_request(k3.sim)
    if k3.kind == "openai_chat":
        assert sent["chat_template_kwargs"]["thinking_effort"] == "low"
    else:
        assert "invoked with `thinking_effort=low`" in sent["prompt"]
    for body, param in (
            ({"thinking": {"type": "enabled", "effort": "medium"}}, "thinking.effort"),
            ({"thinking": {"type": "enabled", "effort": "high"},
              "chat_template_kwargs": {"thinking_effort": "low"}},
             "chat_template_kwargs.thinking_effort")):
        with pytest.raises(openai.BadRequestError) as info:
            client(k3).chat.completions.create(model="kimi-k3-thinking", messages=USER,
                                               extra_body=body)
        assert info.value.body["param"] == param  # type: ignore[index]


def test_k2_ignores_reasoning_effort_but_refuses_an_explicit_effort(
        start_simulator: Callable[..., Any], start_gateway: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(toml(sim.v1, "k2.5"))
    for effort in ("minimal", "low", "medium", "high", "xhigh", "max"):
        answer = client(gw).chat.completions.create(
            model="kimi-k2.5-thinking", messages=USER,
            reasoning_effort=effort)  # type: ignore[arg-type]
        assert answer.choices[0].message.content
        assert last_upstream_request(sim)["chat_template_kwargs"] == {"thinking": True}
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(
            model="kimi-k2.5-thinking", messages=USER,
            extra_body={"chat_template_kwargs": {"thinking_effort": "max"}})
    assert "thinking_effort" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(
            model="kimi-k2.5-thinking", messages=USER,
            extra_body={"thinking": {"type": "enabled", "effort": "high"}})
    assert "thinking_effort" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(model="kimi-k2.5-thinking", messages=USER,
                                           reasoning_effort="extreme")  # type: ignore[arg-type]
    assert info.value.body["param"] == "reasoning_effort"  # type: ignore[index]


def test_a_model_is_retrieved_by_id_or_alias(start_simulator: Callable[..., Any],
                                            start_gateway: Callable[..., Any]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(toml(sim.v1, "k2.5"))
    model = client(gw).models.retrieve("kimi-k2.5-agent")
    assert (model.id, model.object, model.owned_by) == ("kimi-k2.5-agent", "model", "kimi-modes")
    assert model.model_extra is not None and model.model_extra["mode"] == "agent"
    assert client(gw).models.retrieve("kimi-k2.5").id == "kimi-k2.5-thinking"
    with pytest.raises(openai.NotFoundError) as info:
        client(gw).models.retrieve("gpt-4o")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize(("family", "model", "sent"), [
    ("k2-instruct", "kimi-k2-instruct-instant", {"temperature": 0.6}),
    ("k2-thinking", "kimi-k2-thinking-thinking", {"temperature": 1.0}),
    ("k3", "kimi-k3-instant", {"temperature": 0.6, "top_p": 0.95}),
])
def test_unset_sampling_is_the_familys(start_simulator: Callable[..., Any],
                                       start_gateway: Callable[..., Any], family: str,
                                       model: str, sent: dict[str, float]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--family", family,
                          "--sampling", "official")
    gw = start_gateway(toml(sim.v1, family))
    client(gw).chat.completions.create(model=model, messages=USER, max_tokens=8)
    upstream = last_upstream_request(sim)
    assert {k: upstream.get(k) for k in ("temperature", "top_p") if k in upstream} == sent
