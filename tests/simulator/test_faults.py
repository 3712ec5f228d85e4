"""Injected faults (per request by header, by rates, at run time), ``down``, cancellation."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from helpers.simulator import Sim

MODEL = "moonshotai/Kimi-K2.5"
ASK = {"model": MODEL, "messages": [{"role": "user", "content": "Count the waves for me"}]}


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def read_stream(sim: Sim, headers: dict[str, str] | None = None,
                **body: Any) -> tuple[list[str], Exception | None]:
    """The ``data:`` lines received, and the error that ended the stream (if any)."""
    lines: list[str] = []
    try:
        with httpx.stream("POST", sim.v1 + "/chat/completions", timeout=30, headers=headers,
                          json={**ASK, "stream": True, **body}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
    except httpx.HTTPError as exc:
        return lines, exc
    return lines, None


@pytest.mark.parametrize(("fault", "error"), [
    ("500", openai.InternalServerError), ("429", openai.RateLimitError),
    ("503", openai.APIStatusError),
])
def test_status_fault_by_header(sim: Sim, fault: str, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        sim.openai().chat.completions.create(**ASK, extra_headers={"x-sim-fault": fault})
    assert raised.value.status_code == int(fault)  # type: ignore[attr-defined]
    assert sim.stats()["faults"] == {fault: 1}
    assert sim.openai().chat.completions.create(**ASK).choices[0].message.content


def test_cut_stream_ends_without_done(sim: Sim) -> None:
    lines, error = read_stream(sim, {"x-sim-fault": "cut"})
    assert isinstance(error, httpx.RemoteProtocolError)
    assert lines and "[DONE]" not in lines
    whole, _ = read_stream(sim)
    assert len(lines) < len(whole)
    assert sim.stats()["faults"]["cut"] == 1


def test_cut_after_n_tokens(sim: Sim) -> None:
    lines, error = read_stream(sim, {"x-sim-fault": "cut:3"})
    assert error is not None
    assert len(lines) == 4  # the role chunk and three tokens


def test_cut_non_streaming_answer(sim: Sim) -> None:
    with pytest.raises(openai.APIConnectionError):
        sim.openai().chat.completions.create(**ASK, extra_headers={"x-sim-fault": "cut"})


def test_hang_never_answers_and_counts_the_disconnect(sim: Sim) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.v1 + "/chat/completions", json=ASK, headers={"x-sim-fault": "hang"},
                   timeout=0.3)
    wait_for(lambda: sim.stats()["cancelled_by_phase"].get("hang") == 1)
    assert sim.stats()["faults"]["hang"] == 1


def test_unknown_fault_header_is_a_400(sim: Sim) -> None:
    response = httpx.post(sim.v1 + "/chat/completions", json=ASK, headers={"x-sim-fault": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-sim-fault"


def test_rates_by_control_are_seeded(sim: Sim) -> None:
    sim.control(fail_rate=0.5, fail_status=429, retry_after=2, seed=7)

    def outcomes() -> list[int]:
        with httpx.Client() as client:
            return [client.post(sim.v1 + "/chat/completions", json=ASK).status_code
                    for _ in range(16)]

    first = outcomes()
    assert set(first) == {200, 429}
    sim.control(seed=7)
    assert outcomes() == first
    response = httpx.post(sim.v1 + "/chat/completions", json=ASK,
                          headers={"x-sim-fault": "429"})
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize(("flags", "check"), [
    (("--fail-rate", "1", "--fail-status", "503"), "503"),
    (("--cut-rate", "1"), "cut"),
])
def test_rates_from_the_command_line(start_simulator: Callable[..., Sim], flags: tuple[str, ...],
                                     check: str) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0", *flags)
    lines, error = read_stream(sim)
    if check == "cut":
        assert isinstance(error, httpx.RemoteProtocolError)
    else:
        assert error is None and lines == []
    assert sim.stats()["faults"] == {check: 1}


def test_control_rejects_unknown_or_bad_settings(sim: Sim) -> None:
    for body in ({"tpot": -1}, {"fail_status": 418}, {"bogus": 1}, {"down": "yes"}):
        assert httpx.post(sim.url + "/sim/control", json=body).status_code == 400


def test_down_cuts_streams_and_answers_503_until_up(sim: Sim) -> None:
    sim.control(tpot=0.05)
    result: list[tuple[list[str], Exception | None]] = []
    reader = threading.Thread(target=lambda: result.append(read_stream(sim)))
    reader.start()
    wait_for(lambda: sim.stats()["running"] == 1)
    sim.control(down=True)
    reader.join(10)
    lines, error = result[0]
    assert isinstance(error, httpx.RemoteProtocolError) and "[DONE]" not in lines
    assert httpx.post(sim.v1 + "/chat/completions", json=ASK).status_code == 503
    assert httpx.get(sim.url + "/health").status_code == 503
    assert httpx.get(sim.v1 + "/models").status_code == 503
    sim.control(down=False, tpot=0)
    assert httpx.get(sim.url + "/health").status_code == 200
    assert httpx.post(sim.v1 + "/chat/completions", json=ASK).status_code == 200


def test_cut_inflight(sim: Sim) -> None:
    sim.control(tpot=0.05)
    result: list[tuple[list[str], Exception | None]] = []
    reader = threading.Thread(target=lambda: result.append(read_stream(sim)))
    reader.start()
    wait_for(lambda: sim.stats()["running"] == 1)
    assert sim.control(cut_inflight=True)["in_flight"] == 1
    reader.join(10)
    assert isinstance(result[0][1], httpx.RemoteProtocolError)
    sim.control(tpot=0)
    assert httpx.post(sim.v1 + "/chat/completions", json=ASK).status_code == 200


def test_client_disconnect_cancels_the_request(sim: Sim) -> None:
    sim.control(tpot=0.05)
    with httpx.stream("POST", sim.v1 + "/chat/completions", timeout=30,
                      json={**ASK, "stream": True}) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    wait_for(lambda: sim.stats()["cancelled"] == 1)
    stats = sim.stats()
    assert stats["cancelled_by_phase"] == {"generating": 1}
    assert stats["running"] == 0 and stats["in_flight"] == 0
    assert sim.metrics()["vllm:request_success_total:abort"] == 1


def test_disconnect_while_queued_leaves_the_queue(sim: Sim) -> None:
    sim.control(max_num_seqs=1, ttft=5)
    blocker = threading.Thread(target=lambda: read_stream(sim), daemon=True)
    blocker.start()
    wait_for(lambda: sim.stats()["running"] == 1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.v1 + "/chat/completions", json=ASK, timeout=0.3)
    wait_for(lambda: sim.stats()["cancelled_by_phase"].get("queued") == 1)
    assert sim.stats()["waiting"] == 0
    sim.control(cut_inflight=True)
