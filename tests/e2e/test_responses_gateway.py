"""The Responses API on a real gateway in front of the simulated engine, driven by the
clients' own code: the openai SDK (``responses.create``, ``responses.stream``, stored
responses), the OpenAI Agents SDK with its default Responses model, and the Codex CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from helpers import clients
from helpers.processes import REPO

pytestmark = pytest.mark.slow

RULES = [
    {"name": "slow", "match": {"user": "(?i)take your time", "step": 0},
     "reply": {"content": "Finally."}, "ttft": 60},
    {"name": "background", "match": {"user": "(?i)in the background", "step": 0},
     "reply": {"reasoning": "A moment.", "content": "Done in the background."}, "ttft": 1},
]
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


@pytest.fixture
def gateway(tmp_path: Path, start_simulator: Callable[..., Any],
            start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0.005", "--tpot", "0.001", "--script", str(script))
    gw = start_gateway('[server]\napi_keys = ["sk-a", "sk-b"]\n' + upstream_toml(sim.v1))
    gw.sim = sim
    return gw


def oa(gw: Any, key: str = "sk-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=60)


def test_streamed_tool_round_trip_then_a_previous_response_id_chain(gateway: Any) -> None:
    client = oa(gateway)
    with client.responses.stream(model="kimi-k2.5-thinking", tools=[WEATHER],
                                 input="Use get_weather for Paris",
                                 instructions="Be brief.") as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    # the documented order: created, in_progress, then item by item, completed last
    assert kinds[:3] == ["response.created", "response.in_progress",
                         "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert "response.reasoning_text.delta" in kinds
    assert kinds.index("response.function_call_arguments.done") < kinds.index(
        "response.output_item.done", kinds.index("response.function_call_arguments.delta"))
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id == "functions.get_weather:0"  # Kimi's own id
    assert first.usage is not None and first.usage.output_tokens_details.reasoning_tokens > 0
    # The next turn sends only the tool's output: the gateway has the rest, reasoning too.
    second = client.responses.create(
        model="kimi-k2.5-thinking", previous_response_id=first.id, tools=[WEATHER],
        instructions="Be brief.",
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": '{"temp": 21}'}])
    assert second.status == "completed" and "temp" in second.output_text
    assert second.previous_response_id == first.id
    sent = upstream_body(gateway)["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[0]["content"] == "Be brief."
    assert sent[2]["reasoning_content"] == reasoning.content[0].text
    assert sent[2]["tool_calls"][0]["id"] == call.call_id
    # a third turn on top of the second: the whole chain comes back
    third = client.responses.create(model="kimi-k2.5-instant", previous_response_id=second.id,
                                    input="Thanks!")
    assert third.output_text
    assert [m["role"] for m in upstream_body(gateway)["messages"]] == [
        "user", "assistant", "tool", "assistant", "user"]
    # stored: read back as answered, with the items the model saw
    again = client.responses.retrieve(second.id)
    assert again.output_text == second.output_text and again.usage == second.usage
    items = client.responses.input_items.list(second.id, order="asc")
    assert [i.type for i in items.data] == ["message", "reasoning", "function_call",
                                            "function_call_output"]


def test_stateless_turns_send_reasoning_items_back(gateway: Any) -> None:
    client = oa(gateway)
    first = client.responses.create(model="kimi-k2.5-thinking", input="call get_weather",
                                    tools=[WEATHER], store=False,
                                    include=["reasoning.encrypted_content"])
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    call = first.output[-1]
    history = [{"role": "user", "content": "call get_weather"},
               *[item.model_dump(exclude_none=True) for item in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}]
    second = client.responses.create(model="kimi-k2.5-thinking", input=history,
                                     tools=[WEATHER], store=False)
    assert "rain" in second.output_text
    assistant = upstream_body(gateway)["messages"][1]
    assert assistant["reasoning_content"] == first.output[0].content[0].text


def test_settings_reach_the_engine_and_come_back(gateway: Any) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"]}
    answer = oa(gateway).responses.create(
        model="kimi-k2.5-thinking", input="Say ok", max_output_tokens=300, temperature=0.3,
        top_p=0.9, metadata={"ticket": "42"}, reasoning={"effort": "none"},
        text={"format": {"type": "json_schema", "name": "ok", "schema": schema,
                         "strict": True}})
    sent = upstream_body(gateway)
    assert sent["chat_template_kwargs"] == {"thinking": False}  # effort none: thinking off
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "ok", "schema": schema, "strict": True}}
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (300, 0.3, 0.9)
    assert answer.metadata == {"ticket": "42"} and answer.max_output_tokens == 300
    assert [o.type for o in answer.output] == ["message"]
    # other efforts switch nothing on K2.x
    oa(gateway).responses.create(model="kimi-k2.5-thinking", input="hi",
                                 reasoning={"effort": "medium"})
    assert upstream_body(gateway)["chat_template_kwargs"] == {"thinking": True}


def test_hitting_max_output_tokens_is_incomplete(gateway: Any) -> None:
    stream = oa(gateway).responses.create(model="kimi-k2.5-instant", stream=True,
                                          input="Tell me a long story", max_output_tokens=3)
    events = list(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_a_background_agent_run_is_polled_to_completion(gateway: Any) -> None:
    client = oa(gateway)
    started = client.responses.create(model="kimi-k2.5-agent", background=True,
                                      input="Answer in the background please")
    assert started.status in ("queued", "in_progress") and started.background
    deadline = time.monotonic() + 30
    polled = client.responses.retrieve(started.id)
    while polled.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.2)
        polled = client.responses.retrieve(started.id)
    assert polled.status == "completed"
    assert polled.output_text == "Done in the background."
    assert polled.usage is not None and polled.usage.output_tokens > 0
    # it is the agent run, seen through the runs API too
    run = httpx.get(gateway.v1 + "/runs/run_" + started.id.removeprefix("resp_"),
                    headers={"Authorization": "Bearer sk-a"}).json()
    assert run["status"] == "completed" and run["mode"] == "agent"
    # and a later turn continues it
    follow = client.responses.create(model="kimi-k2.5-instant", previous_response_id=started.id,
                                     input="and now?")
    assert follow.output_text
    roles = [m["role"] for m in upstream_body(gateway)["messages"]]
    assert roles == ["user", "assistant", "user"]


def test_cancel_a_background_run_and_delete_it(gateway: Any) -> None:
    client = oa(gateway)
    started = client.responses.create(model="kimi-k2.5-agent", background=True,
                                      input="Take your time")
    with pytest.raises(openai.ConflictError):
        client.responses.delete(started.id)  # still running
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.responses.cancel(started.id)
    client.responses.delete(started.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(started.id)


def test_stored_responses_belong_to_their_key(gateway: Any) -> None:
    mine = oa(gateway, "sk-a").responses.create(model="kimi-k2.5-instant", input="hello")
    other = oa(gateway, "sk-b")
    for call in (lambda: other.responses.retrieve(mine.id),
                 lambda: other.responses.input_items.list(mine.id),
                 lambda: other.responses.delete(mine.id),
                 lambda: other.responses.create(model="kimi-k2.5-instant", input="hi",
                                                previous_response_id=mine.id)):
        with pytest.raises(openai.NotFoundError) as foreign:
            call()
        assert "not_found" in str(foreign.value.body)
    with pytest.raises(openai.NotFoundError) as unknown:
        other.responses.retrieve("resp_" + "0" * 32)
    assert foreign.value.body == {**unknown.value.body, "param": "previous_response_id",
                                  "code": "previous_response_not_found",
                                  "message": f"no response with id {mine.id!r}"}
    assert oa(gateway, "sk-a").responses.retrieve(mine.id).output_text == mine.output_text


def test_errors_come_in_openai_shape(gateway: Any) -> None:
    with pytest.raises(openai.NotFoundError) as unknown_model:
        oa(gateway).responses.create(model="gpt-5", input="hi")
    assert unknown_model.value.code == "model_not_found"
    route = httpx.post(gateway.v1 + "/responsez", json={},
                       headers={"Authorization": "Bearer sk-a"})
    assert route.status_code == 404 and route.json()["error"]["code"] != "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        oa(gateway).responses.create(model="kimi-k2.5-instant", input="hi", temperature=9)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as item:
        oa(gateway).responses.create(model="kimi-k2.5-instant",
                                     input=[{"type": "item_reference", "id": "x"}])
    assert item.value.param == "input[0].type"
    with pytest.raises(openai.BadRequestError):
        oa(gateway).responses.create(model="kimi-k2.5-instant", input="hi", background=True)
    with pytest.raises(openai.AuthenticationError):
        oa(gateway, "sk-wrong").responses.create(model="kimi-k2.5-instant", input="hi")


def test_the_agents_sdk_default_model_runs_a_streamed_tool_round_trip(gateway: Any) -> None:
    agents = pytest.importorskip("agents")
    import asyncio

    asked: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"sunny in {city}"

    async def run() -> tuple[Any, list[str]]:
        agents.set_tracing_disabled(True)
        agents.set_default_openai_client(
            openai.AsyncOpenAI(base_url=gateway.v1, api_key="sk-a", max_retries=0))
        agent = agents.Agent(name="weather", instructions="Be brief.",
                             model="kimi-k2.5-thinking", tools=[get_weather])
        result = agents.Runner.run_streamed(agent, "Use get_weather for Paris")
        seen = [event.data.type async for event in result.stream_events()
                if event.type == "raw_response_event"]
        return result, seen

    result, seen = asyncio.run(run())
    assert asked and "sunny in" in result.final_output
    assert "response.function_call_arguments.delta" in seen
    assert "response.output_text.delta" in seen
    # the SDK sent its reasoning item back: Kimi saw its reasoning with its tool call
    assistant = upstream_body(gateway)["messages"][2]
    assert assistant["reasoning_content"] and assistant["tool_calls"]


#: The Codex CLI the test runs (installed from npm into .cache/ once; npm's own cache makes a
#: second install fast). KIMI_MODES_CODEX points at another binary.
CODEX_VERSION = "0.171.0"


def _codex() -> str:
    given = os.environ.get("KIMI_MODES_CODEX")
    if given:
        return given
    prefix = REPO / ".cache" / "codex" / CODEX_VERSION
    binary = prefix / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the Codex CLI (apt-get install npm)"
        done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit",
                               "--no-fund", f"@openai/codex@{CODEX_VERSION}"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    return str(binary)


def test_codex_exec_answers_through_the_gateway(gateway: Any, tmp_path: Path) -> None:
    codex = _codex()
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "kimi-k2.5-thinking"\nmodel_provider = "kimi"\n'
        '[model_providers.kimi]\nname = "kimi-modes"\n'
        f'base_url = "{gateway.v1}"\nwire_api = "responses"\nenv_key = "KIMI_KEY"\n')
    done = subprocess.run(
        [codex, "exec", "--skip-git-repo-check", "Say hello"], cwd=tmp_path,
        env={**os.environ, "CODEX_HOME": str(home), "KIMI_KEY": "sk-a"},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "You said: Say hello" in done.stdout
    sent = upstream_body(gateway)
    assert sent["tools"] and sent["stream"] is True


def upstream_body(gw: Any) -> dict[str, Any]:
    """What the gateway's simulator last received."""
    return clients.last_upstream_request(gw.sim)
