"""Runs belong to the API key that started them: two keys and an operator key on a real
gateway (Agent mode on the simulated engine). A key sees, watches, cancels and resumes only
its own runs; someone else's run answers exactly like an unknown id; the operator sees all."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

RULES = [
    {"name": "slow", "match": {"user": "(?i)take your time", "step": 0},
     "reply": {"content": "Finally."}, "ttft": 60},
    {"name": "quick", "match": {"user": "(?i)say"}, "reply": {"content": "Said."}},
]


@pytest.fixture
def gateway(tmp_path: Path, start_simulator: Callable[..., Any],
            start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> Any:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    return start_gateway('[server]\napi_keys = ["sk-a", "sk-b"]\n'
                         'operator_api_keys = ["sk-op"]\n' + upstream_toml(sim.v1))


def _client(gw: Any, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.v1, headers={"Authorization": f"Bearer {key}"},
                        timeout=30)


def _ask(gw: Any, key: str, text: str) -> str:
    """An agent request as ``key``; returns the id of the run it made."""
    answer = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0).chat.completions.create(
        model="kimi-k2.5-agent", messages=[{"role": "user", "content": text}])
    return "run_" + answer.id.removeprefix("chatcmpl-")


def _ids(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/runs", params=params)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["data"]]


def _not_found(run_id: str) -> dict[str, Any]:
    return {"error": {"message": f"no run with id {run_id!r}", "type": "not_found_error",
                      "param": "run_id", "code": "run_not_found"}}


def test_a_key_sees_only_its_own_runs_and_the_operator_sees_all(gateway: Any) -> None:
    a, b, op = (_client(gateway, k) for k in ("sk-a", "sk-b", "sk-op"))
    run_a = _ask(gateway, "sk-a", "Say hello")
    run_b = _ask(gateway, "sk-b", "Say goodbye")

    assert _ids(a) == [run_a]
    assert _ids(b) == [run_b]
    assert _ids(op) == [run_b, run_a]
    assert _ids(b, status="completed", mode="agent") == [run_b]

    record = a.get(f"/runs/{run_a}")
    assert record.status_code == 200 and record.json()["final_answer"] == "Said."
    assert record.json()["owner"].startswith("key_")
    assert "sk-a" not in record.text  # the owner is a hash of the key, never the key
    assert op.get(f"/runs/{run_a}").json()["owner"] == record.json()["owner"]
    assert op.get(f"/runs/{run_b}").json()["owner"] != record.json()["owner"]
    with a.stream("GET", f"/runs/{run_a}/events") as events:
        assert events.status_code == 200
        assert "event: finished" in events.read().decode()

    # B gets exactly what an unknown id gets, on every route.
    for method, path in (("GET", f"/runs/{run_a}"), ("GET", f"/runs/{run_a}/events"),
                         ("DELETE", f"/runs/{run_a}"), ("POST", f"/runs/{run_a}/resume")):
        foreign = b.request(method, path)
        unknown = b.request(method, path.replace(run_a, "run_nope"))
        assert foreign.status_code == unknown.status_code == 404, (method, path)
        assert foreign.json() == _not_found(run_a), (method, path)
        assert unknown.json() == _not_found("run_nope"), (method, path)
    # A's own run is found: it is just not a sub-agent, so it cannot be resumed.
    resumed = a.post(f"/runs/{run_a}/resume")
    assert resumed.status_code == 409 and resumed.json()["error"]["code"] == "not_resumable"
    assert a.delete(f"/runs/{run_a}").json()["error"]["code"] == "run_finished"


def test_only_the_owner_or_an_operator_cancels_a_running_run(gateway: Any) -> None:
    a, b, op = (_client(gateway, k) for k in ("sk-a", "sk-b", "sk-op"))
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["run"] = _ask(gateway, "sk-a", "Take your time")
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    running: list[str] = []
    for _ in range(400):
        running = _ids(op, status="running")
        if running:
            break
        time.sleep(0.05)
    (run_id,) = running
    assert _ids(a, status="running") == [run_id]
    assert _ids(b) == []
    denied = b.delete(f"/runs/{run_id}")
    assert denied.status_code == 404 and denied.json() == _not_found(run_id)
    assert a.get(f"/runs/{run_id}").json()["status"] == "running"  # B changed nothing
    cancelled = op.delete(f"/runs/{run_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    thread.join(30)
    assert not thread.is_alive() and "run" not in outcome
    assert a.get(f"/runs/{run_id}").json()["status"] == "cancelled"


def test_query_parameters_out_of_range_are_400(gateway: Any) -> None:
    a = _client(gateway, "sk-a")
    for params, message in (({"offset": 10**30}, "offset must be between 0 and"),
                            ({"offset": -1}, "offset must be between 0 and"),
                            ({"limit": 1000}, "limit must be between 1 and 100")):
        response = a.get("/runs", params=params)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert message in error["message"] and error["type"] == "invalid_request_error"
    run_id = _ask(gateway, "sk-a", "Say hi")
    response = a.get(f"/runs/{run_id}/events", params={"after": 2**64})
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"
