"""The runs API served by a real uvicorn server on a loopback port, read with httpx: listing,
the assembled run, cancelling through the registered callback, and the SSE event stream
(live following, re-attaching with Last-Event-ID / ?after=, keep-alives, disconnects)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from helpers.processes import free_port
from kimi_modes.runs import RunStore
from kimi_modes.server.auth import SINGLE_USER, Caller
from kimi_modes.server.runs_api import RunsAPI

USER = [{"role": "user", "content": "Add 2 and 2."}]


@dataclass
class Served:
    url: str
    store: RunStore
    client: httpx.AsyncClient


def _authorize(request: Request) -> Caller | Response:
    if request.headers.get("authorization") == "Bearer secret":
        return SINGLE_USER
    return JSONResponse({"error": {"message": "invalid API key", "type": "authentication_error",
                                   "param": None, "code": "invalid_api_key"}}, status_code=401)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    store = RunStore(tmp_path / "runs.sqlite3", delta_interval=0.05)
    await store.open()
    api = RunsAPI(store, authorize=_authorize, keepalive=0.3, cancel_wait=5.0)
    app = Starlette(routes=api.routes())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning",
                                           timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10,
                                 headers={"Authorization": "Bearer secret"}) as client:
        yield Served(url, store, client)
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    await store.close()


async def _finished_run(store: RunStore, answer: str = "4") -> str:
    run = await store.create_run("agent", "kimi-k2.5-agent", USER, {"budgets": {"max_steps": 3}})
    await store.emit(run.id, "run_started", {"workspace": "/w"})
    await store.emit(run.id, "step", {"step": 1})
    await store.emit(run.id, "message_delta", {"step": 1, "kind": "reasoning",
                                               "text": "Use the tool."})
    await store.emit(run.id, "tool_call", {"step": 1, "id": "functions.add:0", "name": "add",
                                           "arguments": '{"a": 2, "b": 2}'})
    await store.emit(run.id, "tool_result", {"step": 1, "id": "functions.add:0", "name": "add",
                                             "output": "4", "is_error": False,
                                             "duration": 0.25, "meta": {"exit_code": 0}})
    await store.emit(run.id, "step", {"step": 2})
    await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": answer})
    await store.finish(run.id, "completed", "answer", {"role": "assistant", "content": answer},
                       {"prompt_tokens": 50, "completion_tokens": 9, "reasoning_tokens": 4})
    return run.id


@dataclass
class SSE:
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None


async def _read_sse(response: httpx.Response, sse: SSE, *, stop_after: int | None = None) -> SSE:
    """Parse an SSE body into ``sse``; stop after ``stop_after`` events if given."""
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in current:
                sse.events.append({"id": current.get("id"), "event": current.get("event"),
                                   "data": json.loads(current["data"])})
                if stop_after is not None and len(sse.events) >= stop_after:
                    return sse
            current = {}
        elif line.startswith(":"):
            sse.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "retry":
                sse.retry = int(value)
            else:
                current[name] = value
    return sse


def _assert_error(response: httpx.Response, status: int, message: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert message in body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


# -- list, get, delete ------------------------------------------------------------------


async def test_list_runs_newest_first_with_paging_and_filters(served: Served) -> None:
    empty = await served.client.get("/v1/runs")
    assert empty.json() == {"object": "list", "data": [], "has_more": False, "limit": 20,
                            "offset": 0}
    done = [await _finished_run(served.store, str(i)) for i in range(3)]
    running = await served.store.create_run("agent", "kimi-k2.5-agent", USER)
    await served.store.emit(running.id, "run_started", {})

    body = (await served.client.get("/v1/runs")).json()
    assert [r["id"] for r in body["data"]] == [running.id, *reversed(done)]
    first = body["data"][1]
    assert first["object"] == "run" and first["status"] == "completed"
    assert first["stop_reason"] == "answer" and first["task"] == "Add 2 and 2."
    assert first["step_count"] == 2 and first["tool_call_count"] == 1
    assert first["usage"]["completion_tokens"] == 9
    assert "messages" not in first and "steps" not in first

    page = (await served.client.get("/v1/runs", params={"limit": 2, "offset": 1})).json()
    assert [r["id"] for r in page["data"]] == [done[2], done[1]] and page["has_more"] is True
    last = (await served.client.get("/v1/runs", params={"limit": 2, "offset": 2})).json()
    assert last["has_more"] is False and len(last["data"]) == 2
    only = (await served.client.get("/v1/runs", params={"status": "running"})).json()
    assert [r["id"] for r in only["data"]] == [running.id]

    err = _assert_error(await served.client.get("/v1/runs", params={"limit": 0}), 400,
                        "limit must be between 1 and 100")
    assert err["param"] == "limit" and err["type"] == "invalid_request_error"
    _assert_error(await served.client.get("/v1/runs", params={"offset": "x"}), 400,
                  "offset must be an integer")
    for huge in (2**63, 10**30):  # past SQLite's integers: refused, not a 500
        err = _assert_error(await served.client.get("/v1/runs", params={"offset": huge}), 400,
                            "offset must be between 0 and")
        assert err["param"] == "offset" and err["type"] == "invalid_request_error"
    assert (await served.client.get("/v1/runs", params={"offset": 2**63 - 1})).json()[
        "data"] == []
    err = _assert_error(await served.client.get("/v1/runs", params={"status": "done"}), 400,
                        "unknown status 'done'")
    assert err["param"] == "status"


async def test_get_run_assembles_steps_calls_results_and_tokens(served: Served) -> None:
    run_id = await _finished_run(served.store)
    body = (await served.client.get(f"/v1/runs/{run_id}")).json()
    assert body["object"] == "run" and body["id"] == run_id
    assert body["status"] == "completed" and body["stop_reason"] == "answer"
    assert body["final_answer"] == "4"
    assert body["final"] == {"role": "assistant", "content": "4"}
    assert body["usage"] == {"prompt_tokens": 50, "completion_tokens": 9,
                             "reasoning_tokens": 4}
    assert body["messages"] == USER and body["params"] == {"budgets": {"max_steps": 3}}
    assert body["live"] is False and body["mode"] == "agent"
    one, two = body["steps"]
    assert one["reasoning"] == "Use the tool." and two["content"] == "4"
    (call,) = one["tool_calls"]
    assert call["name"] == "add" and call["arguments"] == '{"a": 2, "b": 2}'
    assert call["result"]["output"] == "4" and call["result"]["duration"] == 0.25
    assert call["result"]["meta"] == {"exit_code": 0} and call["result"]["is_error"] is False
    assert call["result"]["finished_at"] >= call["started_at"]

    err = _assert_error(await served.client.get("/v1/runs/run_nope"), 404,
                        "no run with id 'run_nope'")
    assert err["type"] == "not_found_error" and err["code"] == "run_not_found"


async def test_delete_cancels_through_the_registered_callback(served: Served) -> None:
    store = served.store
    run = await store.create_run("agent", "kimi-k2.5-agent", USER)
    called: list[str] = []

    async def agent() -> None:  # what the agent service does with its loop task
        try:
            await store.emit(run.id, "run_started", {})
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await store.finish(run.id, "cancelled", "cancelled")
            raise

    task = asyncio.create_task(agent())

    def cancel() -> None:
        called.append(run.id)
        task.cancel()

    store.register_cancel(run.id, cancel)
    await asyncio.sleep(0.05)
    response = await served.client.delete(f"/v1/runs/{run.id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled" and body["stop_reason"] == "cancelled"
    assert body["cancel_requested"] is True and body["finished_at"] is not None
    assert called == [run.id] and task.cancelled()

    err = _assert_error(await served.client.delete(f"/v1/runs/{run.id}"), 409,
                        "already finished with status 'cancelled'")
    assert err["code"] == "run_finished"
    _assert_error(await served.client.delete("/v1/runs/run_nope"), 404, "no run with id")


async def test_routes_are_behind_authorize(served: Served) -> None:
    run_id = await _finished_run(served.store)
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        for method, path in (("GET", "/v1/runs"), ("GET", f"/v1/runs/{run_id}"),
                             ("DELETE", f"/v1/runs/{run_id}"),
                             ("GET", f"/v1/runs/{run_id}/events")):
            response = await anonymous.request(method, path)
            _assert_error(response, 401, "invalid API key")


async def test_a_store_not_open_yet_or_closed_answers_503(tmp_path: Path) -> None:
    closed = RunStore(tmp_path / "r.db")
    await closed.open()
    run = await closed.create_run("agent", "kimi-k2.5-agent", USER)
    await closed.close()
    assert closed.is_closed
    starting = RunsAPI(lambda: None)  # the gateway has no store yet
    app = Starlette(routes=starting.routes() + RunsAPI(closed).routes("/closed"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        err = _assert_error(await client.get("/v1/runs"), 503, "still starting")
        assert err["code"] == "starting"
        for method, path in (("GET", "/closed/runs"), ("GET", f"/closed/runs/{run.id}"),
                             ("GET", f"/closed/runs/{run.id}/events"),
                             ("DELETE", f"/closed/runs/{run.id}")):
            err = _assert_error(await client.request(method, path), 503, "shutting down")
            assert err["code"] == "shutting_down"


# -- the event stream ---------------------------------------------------------------------


async def test_events_replay_then_follow_live_and_end_after_finished(served: Served) -> None:
    store = served.store
    run = await store.create_run("agent", "kimi-k2.5-agent", USER)
    await store.emit(run.id, "run_started", {"workspace": "/w"})
    sse = SSE()

    async def watch() -> None:
        async with served.client.stream("GET", f"/v1/runs/{run.id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            await _read_sse(response, sse)

    watcher = asyncio.create_task(watch())
    await _wait_for(lambda: len(sse.events) == 1)
    assert sse.events[0]["event"] == "run_started" and sse.events[0]["id"] == "1"
    await store.emit(run.id, "step", {"step": 1})
    await _wait_for(lambda: len(sse.events) == 2)  # live, not at the end
    await store.emit(run.id, "tool_call", {"step": 1, "id": "functions.add:0", "name": "add",
                                           "arguments": "{}"})
    await store.emit(run.id, "tool_result", {"step": 1, "id": "functions.add:0", "name": "add",
                                             "output": "4", "is_error": False,
                                             "duration": 0.1, "meta": {}})
    await asyncio.sleep(0.7)  # idle: keep-alive comments (every 0.3 s here)
    await store.emit(run.id, "message_delta", {"step": 1, "kind": "content", "text": "4"})
    await store.finish(run.id, "completed", "answer", "4", {"prompt_tokens": 1,
                                                            "completion_tokens": 1})
    await asyncio.wait_for(watcher, 5)  # the stream ended by itself after `finished`

    assert [e["event"] for e in sse.events] == ["run_started", "step", "tool_call",
                                                "tool_result", "message_delta", "finished"]
    assert [e["id"] for e in sse.events] == [str(i) for i in range(1, 7)]
    assert all(e["data"]["run_id"] == run.id for e in sse.events)
    assert [e["data"]["seq"] for e in sse.events] == list(range(1, 7))
    assert sse.events[3]["data"]["output"] == "4"
    finished = sse.events[-1]["data"]
    assert finished["type"] == "finished" and finished["status"] == "completed"
    assert finished["final_answer"] == "4" and finished["usage"]["prompt_tokens"] == 1
    assert "keep-alive" in sse.comments and sse.retry == 3000


async def test_reattach_with_last_event_id_or_after(served: Served) -> None:
    store = served.store
    run = await store.create_run("agent", "kimi-k2.5-agent", USER)
    await store.emit(run.id, "run_started", {})
    for step in (1, 2, 3):
        await store.emit(run.id, "step", {"step": step})

    # A first connection reads three events and drops.
    first = SSE()
    async with served.client.stream("GET", f"/v1/runs/{run.id}/events") as response:
        await _read_sse(response, first, stop_after=3)
    assert [e["id"] for e in first.events] == ["1", "2", "3"]

    await store.emit(run.id, "step", {"step": 4})  # happens while nobody watches
    second = SSE()

    async def reattach() -> None:
        headers = {"Last-Event-ID": first.events[-1]["id"]}
        async with served.client.stream("GET", f"/v1/runs/{run.id}/events",
                                         headers=headers, params={"after": 0}) as response:
            await _read_sse(response, second)  # the header wins over ?after=

    task = asyncio.create_task(reattach())
    await _wait_for(lambda: len(second.events) == 2)
    await store.finish(run.id, "failed", "error", error="upstream died")
    await asyncio.wait_for(task, 5)
    assert [e["id"] for e in second.events] == ["4", "5", "6"]
    assert second.events[-1]["data"]["error"] == "upstream died"

    # ?after= on a finished run: replay from there and end.
    third = SSE()
    async with served.client.stream("GET", f"/v1/runs/{run.id}/events",
                                    params={"after": 4}) as response:
        await _read_sse(response, third)
    assert [e["id"] for e in third.events] == ["5", "6"]
    # Past the end: nothing but the end.
    fourth = SSE()
    async with served.client.stream("GET", f"/v1/runs/{run.id}/events",
                                    headers={"Last-Event-ID": "6"}) as response:
        await _read_sse(response, fourth)
    assert fourth.events == []


async def test_event_stream_errors(served: Served) -> None:
    err = _assert_error(await served.client.get("/v1/runs/run_nope/events"), 404,
                        "no run with id 'run_nope'")
    assert err["code"] == "run_not_found"
    run_id = await _finished_run(served.store)
    err = _assert_error(await served.client.get(f"/v1/runs/{run_id}/events",
                                                headers={"Last-Event-ID": "abc"}), 400,
                        "Last-Event-ID must be an integer")
    assert err["param"] == "Last-Event-ID"
    _assert_error(await served.client.get(f"/v1/runs/{run_id}/events",
                                          params={"after": -1}), 400, "between 0 and")
    err = _assert_error(await served.client.get(f"/v1/runs/{run_id}/events",
                                                headers={"Last-Event-ID": str(2**64)}), 400,
                        "Last-Event-ID must be between 0 and")
    assert err["param"] == "Last-Event-ID"


async def test_a_client_disconnect_only_unsubscribes(served: Served) -> None:
    store = served.store
    run = await store.create_run("agent", "kimi-k2.5-agent", USER)
    await store.emit(run.id, "run_started", {})
    sse = SSE()
    async with served.client.stream("GET", f"/v1/runs/{run.id}/events") as response:
        await _read_sse(response, sse, stop_after=1)
        assert store.subscriber_count(run.id) == 1
    await _wait_for(lambda: store.subscriber_count(run.id) == 0)
    # The run itself goes on.
    assert store.is_live(run.id)
    await store.emit(run.id, "step", {"step": 1})
    assert await store.finish(run.id, "completed", "answer", "ok")
    assert (await served.client.get(f"/v1/runs/{run.id}")).json()["status"] == "completed"


async def test_many_watchers_of_one_run(served: Served) -> None:
    store = served.store
    run = await store.create_run("agent", "kimi-k2.5-agent", USER)
    await store.emit(run.id, "run_started", {})
    results = [SSE() for _ in range(10)]

    async def watch(sse: SSE) -> None:
        async with served.client.stream("GET", f"/v1/runs/{run.id}/events") as response:
            await _read_sse(response, sse)

    tasks = [asyncio.create_task(watch(sse)) for sse in results]
    await _wait_for(lambda: all(len(s.events) == 1 for s in results))
    for step in range(1, 21):
        await store.emit(run.id, "step", {"step": step})
    await store.finish(run.id, "completed", "answer", "ok")
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for sse in results:
        assert [e["id"] for e in sse.events] == [str(i) for i in range(1, 23)]


async def _wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()
