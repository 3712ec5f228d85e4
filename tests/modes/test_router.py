"""Router: the engine and the request each mode gets (defaults, switch, options, refusals)."""

from __future__ import annotations

from typing import Any

import pytest

from kimi_modes.engines.base import ChatRequest, Event, Finish
from kimi_modes.engines.scripted import ScriptedEngine
from kimi_modes.modes import (
    AgentOptions,
    Catalog,
    ChatMode,
    Mode,
    ModeDefaults,
    ModeError,
    ModeOptions,
    Resolved,
    Router,
)
from kimi_modes.modes.catalog import model_id
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.families import Family

CATALOG = Catalog([("small", "k2.5"), ("big", "k2.5")])

DEFAULTS = {Mode.INSTANT: ModeDefaults(0.6, 0.95, max_tokens=100),
            Mode.THINKING: ModeDefaults(1.0, 0.95, upstream="big")}


class FakeService:
    """Stands for an Agent service: records what it was given (the Router's contract)."""

    name = "agent"

    def __init__(self) -> None:
        self.calls: list[tuple[ChatRequest, ModeOptions]] = []

    async def stream(self, request: ChatRequest, options: ModeOptions) -> Any:
        self.calls.append((request, options))
        yield ReasoningDelta("[agent run run_x]\n")
        yield ToolCallDelta(0, "functions.f:0", "f", "{}")
        yield Finish("tool_calls")


def resolve_mode(model: str, thinking: bool | None = None) -> Resolved:
    return CATALOG.resolve(model, thinking)


def router(agent: Any = None, swarm: Any = None) -> Router:
    engines = {"small": ScriptedEngine([ContentDelta("hi"), Finish("stop")], name="small"),
               "big": ScriptedEngine([ContentDelta("hi"), Finish("stop")], name="big")}
    return Router(CATALOG, engines, DEFAULTS,
                  agents={Family.K2_5: agent} if agent else None,
                  swarms={Family.K2_5: swarm} if swarm else None)


def test_each_model_goes_to_an_upstream_serving_it() -> None:
    """K3 and K2.6 at once: a mode's configured upstream is used only where it serves the
    model asked for; otherwise the model's first upstream."""
    catalog = Catalog([("k26", "k2.6"), ("k3", "k3"), ("big", "k3")], default="k2.6")
    engines = {n: ScriptedEngine([Finish("stop")], name=n) for n in ("k26", "k3", "big")}
    r = Router(catalog, engines, DEFAULTS, agents={Family.K3: FakeService()})
    for model, thinking, upstream in [("kimi-k3-thinking", None, "big"),
                                      ("kimi-k3-instant", None, "k3"),
                                      ("kimi-k2.6-instant", None, "k26"),
                                      ("kimi-k2.6-instant", True, "k26"),
                                      ("kimi-thinking", None, "k26")]:
        engine, _ = r.route(catalog.resolve(model, thinking), ChatRequest([]))
        assert isinstance(engine, ChatMode) and engine.engine is engines[upstream], model
    engine, _ = r.route(catalog.resolve("kimi-k3-agent"), ChatRequest([]))
    assert engine.name == "agent"
    with pytest.raises(ModeError) as info:  # K2.6 has no agent service here
        r.route(catalog.resolve("kimi-k2.6-agent"), ChatRequest([]))
    assert info.value.status == 501 and "kimi-k2.6-instant" in info.value.message
    with pytest.raises(ValueError, match="without an engine"):
        Router(catalog, {"k26": engines["k26"]}, DEFAULTS)


def test_chat_modes_get_their_upstream_and_sampling_defaults() -> None:
    r = router()
    engine, request = r.route(resolve_mode("kimi-k2.5-instant"), ChatRequest([]))
    assert isinstance(engine, ChatMode) and engine.engine is r.engines["small"]
    assert (request.thinking, request.temperature, request.top_p, request.max_tokens) == (
        False, 0.6, 0.95, 100)
    engine, request = r.route(resolve_mode("kimi-k2.5-instant", True),
                              ChatRequest([], temperature=0.2))
    assert isinstance(engine, ChatMode) and engine.engine is r.engines["big"]
    assert (request.thinking, request.temperature, request.max_tokens) == (True, 0.2, None)


async def test_agent_gets_its_options_and_the_sampling_of_its_switch() -> None:
    service = FakeService()
    r = router(agent=service)
    options = ModeOptions(agent=AgentOptions(max_steps=3))
    engine, request = r.route(resolve_mode("kimi-k2.5-agent", False),
                              ChatRequest([{"role": "user", "content": "x"}]), options)
    events: list[Event] = [e async for e in engine.stream(request)]
    (given, given_options), = service.calls
    assert given_options is options and given.thinking is False
    assert (given.temperature, given.max_tokens) == (0.6, None)  # no chat max_tokens default
    assert events[-1] == Finish("tool_calls")


def test_agent_and_swarm_without_a_run_store_are_501() -> None:
    for model in ("kimi-k2.5-agent", "kimi-k2.5-swarm"):
        with pytest.raises(ModeError) as info:
            router().route(resolve_mode(model), ChatRequest([]))
        assert info.value.status == 501 and info.value.code == "mode_not_available"


def test_swarm_refuses_client_tools() -> None:
    service = FakeService()
    with pytest.raises(ModeError) as info:
        router(swarm=service).route(resolve_mode("kimi-k2.5-swarm"), ChatRequest(
            [], tools=[{"type": "function", "function": {"name": "f"}}]))
    assert info.value.status == 400 and info.value.param == "tools"


async def test_agent_progress_is_never_restored_as_reasoning() -> None:
    service = FakeService()
    r = router(agent=service)
    question = [{"role": "user", "content": "x"}]
    engine, request = r.route(resolve_mode("kimi-k2.5-agent"), ChatRequest(question))
    [e async for e in engine.stream(request)]
    continued = [*question, {"role": "assistant", "content": "", "tool_calls": [{
        "id": "functions.f:0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "functions.f:0", "content": "ok"}]
    engine, request = r.route(resolve_mode("kimi-k2.5-thinking"), ChatRequest(continued))
    [e async for e in engine.stream(request)]
    sent = r.engines["big"]
    assert isinstance(sent, ScriptedEngine)
    assert "reasoning_content" not in sent.requests[-1].messages[1]


@pytest.mark.parametrize(("family", "thinking", "expected"), [
    ("k2-instruct", False, (0.6, None)),
    ("k2-thinking", True, (1.0, None)),
    ("k2.6", False, (0.6, 0.95)),
    ("k2.6", True, (1.0, 0.95)),
    ("k3", True, (1.0, 0.95)),
])
def test_unset_defaults_are_the_familys_recommended_sampling(
        family: str, thinking: bool, expected: tuple[float, float | None]) -> None:
    catalog = Catalog([("up", family)])
    engines = {"up": ScriptedEngine([ContentDelta("hi"), Finish("stop")], name="up")}
    resolved = catalog.resolve(model_id(family, Mode.THINKING if thinking else Mode.INSTANT))
    unset = {Mode.INSTANT: ModeDefaults(None, None), Mode.THINKING: ModeDefaults(None, None)}
    _, request = Router(catalog, engines, unset).route(resolved, ChatRequest([]))
    assert (request.temperature, request.top_p) == expected
    _, request = Router(catalog, engines, unset).route(resolved, ChatRequest([], top_p=0.5))
    assert request.top_p == 0.5  # the client's own value wins
    configured = {Mode.INSTANT: ModeDefaults(0.3, None), Mode.THINKING: ModeDefaults(0.3, None)}
    _, request = Router(catalog, engines, configured).route(resolved, ChatRequest([]))
    assert (request.temperature, request.top_p) == (0.3, expected[1])  # a configured one wins
