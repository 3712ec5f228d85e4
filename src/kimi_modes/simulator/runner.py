"""Answering one planned request in time: capacity, latencies, faults and client disconnects.

:class:`Exchange` is a Starlette response that drives the raw ASGI connection itself, so that
it can watch for the client going away while it waits (in the queue, before the first token,
between tokens, or while hanging) and cancel at once, as vLLM aborts a request whose client
disconnected. Token ``k`` (0-based) of a stream is due at ``start + ttft + k * tpot`` (each
term scaled by its own jitter draw), measured on the loop clock from the moment the request
got a slot, so sleeping late never accumulates into drift; tokens that are already due are
sent together in one write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kimi_modes.simulator import wire
from kimi_modes.simulator.faults import Fault
from kimi_modes.simulator.generation import Generation
from kimi_modes.simulator.state import InFlight, SimState

_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache")]
_JSON = b"application/json"


class StreamCut(Exception):
    """Raised out of the app to make uvicorn close the connection mid-answer."""


class _HideStreamCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


def quiet_stream_cuts() -> None:
    """Keep uvicorn from logging a traceback for each deliberate cut (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideStreamCut) for f in logger.filters):
        logger.addFilter(_HideStreamCut())


@dataclass(slots=True)
class Job:
    """A request ready to be answered: its choices' generations (each with its encoder) and
    how to deliver them; ``top``: the logprobs asked for (``None``: none)."""

    encoders: list[wire.Encoder]
    gens: list[Generation]
    prompt_tokens: int
    stream: bool
    include_usage: bool
    ttft: float
    tpot: float
    jitter: float
    tokens_per_chunk: int
    fault: Fault | None = None
    top: int | None = None

    @property
    def longest(self) -> int:
        """The most tokens a choice generates (how long the answer takes)."""
        return max(gen.completion_tokens for gen in self.gens)


class Exchange(Response):
    """Answers ``job`` on the raw ASGI connection (see the module docstring)."""

    def __init__(self, state: SimState, job: Job) -> None:
        self.state, self.job = state, job
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, job = self.state, self.job
        task = asyncio.current_task()
        assert task is not None
        flight = InFlight(task)
        state.in_flight.add(flight)
        watcher = asyncio.create_task(_watch(receive, flight))
        phase = "hang" if job.fault is not None and job.fault.kind == "hang" else "queued"
        try:
            if phase == "hang":
                state.faults["hang"] += 1
                await asyncio.Event().wait()
            if job.stream:
                flight.started = True
                await send({"type": "http.response.start", "status": 200,
                            "headers": _SSE_HEADERS})
            await state.slots.acquire()
            try:
                state.max_running = max(state.max_running, state.slots.running)
                state.prompt_tokens += job.prompt_tokens
                phase = "generating"
                if job.stream:
                    await self._stream(send, flight)
                else:
                    await self._whole(send, flight)
            finally:
                state.slots.release()
            for gen in job.gens:
                state.finished[gen.finish_reason] += 1
                state.generation_tokens += gen.completion_tokens
        except asyncio.CancelledError:
            # ours (disconnect, down, cut) or uvicorn's at shutdown: end as a dying engine would
            task.uncancel()
            if flight.reason == "disconnect":
                state.cancelled[phase] += 1
            elif flight.started:
                raise StreamCut from None
            else:
                await _send_error(send, 503, "The engine is down.")
        finally:
            watcher.cancel()
            state.in_flight.discard(flight)

    async def _stream(self, send: Send, flight: InFlight) -> None:
        job = self.job
        frames = wire.frames(job.encoders, job.gens, job.prompt_tokens,
                             tokens_per_chunk=job.tokens_per_chunk,
                             include_usage=job.include_usage, top=job.top)
        cut_at = _cut_point(job.fault, job.longest)
        loop = asyncio.get_running_loop()
        scale = self._jitter()
        deadline = loop.time() + job.ttft * scale()
        generated = 1
        pending: list[bytes] = []
        for due, data in frames:
            if cut_at is not None and due > cut_at:
                await send({"type": "http.response.body", "body": b"".join(pending),
                            "more_body": True})
                self.state.faults["cut"] += 1
                raise StreamCut
            while generated < due:
                deadline += job.tpot * scale()
                generated += 1
            delay = deadline - loop.time()
            if delay > 0:
                if pending:
                    await send({"type": "http.response.body", "body": b"".join(pending),
                                "more_body": True})
                    pending.clear()
                await asyncio.sleep(delay)
            pending.append(data)
        flight.done = True
        await send({"type": "http.response.body", "body": b"".join(pending)})

    async def _whole(self, send: Send, flight: InFlight) -> None:
        job = self.job
        loop = asyncio.get_running_loop()
        later = job.longest - 1
        if job.jitter:
            scale = self._jitter()
            wait = job.ttft * scale() + sum(job.tpot * scale() for _ in range(later))
        else:
            wait = job.ttft + job.tpot * later
        deadline = loop.time() + wait
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        body = job.encoders[0].body(job.prompt_tokens, [gen.run() for gen in job.gens],
                                    job.top)
        cut = job.fault is not None and job.fault.kind == "cut"
        flight.started = True
        flight.done = not cut
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", _JSON), (b"content-length", str(len(body)).encode())]})
        if cut:
            await send({"type": "http.response.body", "body": body[: len(body) // 2],
                        "more_body": True})
            self.state.faults["cut"] += 1
            raise StreamCut
        await send({"type": "http.response.body", "body": body})

    def _jitter(self) -> Callable[[], float]:
        jitter, rng = self.job.jitter, self.state.rng
        if not jitter:
            return lambda: 1.0
        return lambda: 1.0 + jitter * (2.0 * rng.random() - 1.0)


def _cut_point(fault: Fault | None, tokens: int) -> int | None:
    if fault is None or fault.kind != "cut":
        return None
    return fault.cut_after if fault.cut_after is not None else max(1, tokens // 2)


async def _watch(receive: Receive, flight: InFlight) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    flight.abort("disconnect")


async def _send_error(send: Send, status: int, message: str) -> None:
    body = wire.error_body(status, message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", _JSON), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
