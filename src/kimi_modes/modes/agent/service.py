"""Agent mode as an engine: each request becomes a persisted, cancellable agent run.

:class:`AgentService` owns what runs share (the run store, the MCP servers, the workspaces
root, the settings). :meth:`AgentService.stream` has the engine signature, so the server
serves Agent mode on ``/v1/chat/completions`` and ``/v1/messages`` with the same code as the
other modes: the run's reasoning streams as reasoning, its progress (each tool call and a
short result) as reasoning lines too, its text as content; calls of tools the *client*
declared come back as ordinary tool calls (finish reason ``tool_calls``). Closing the stream
(the client disconnected) cancels the run; so does ``DELETE /v1/runs/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

from kimi_modes.engines.base import ChatRequest, Engine, Event, Finish
from kimi_modes.modes.agent.loop import AgentLoop, AgentResult, Budgets, ContextPolicy
from kimi_modes.modes.agent.progress import ChatView, run_line
from kimi_modes.modes.agent.run import AgentRun, RunCancelled
from kimi_modes.modes.memory import TranscriptMemory
from kimi_modes.modes.options import NO_OPTIONS, ModeOptions
from kimi_modes.modes.session import SessionEngine
from kimi_modes.protocol.deltas import ToolCallDelta
from kimi_modes.runs import RunStore
from kimi_modes.tools.base import Tool
from kimi_modes.tools.toolset import Toolset

log = logging.getLogger("kimi_modes.agent")

class AgentService:
    """Runs agent requests on ``engine`` with the tools ``tools_factory`` makes per run."""

    name = "agent"
    #: The run's ``mode`` in the store.
    mode = "agent"

    def __init__(
        self,
        engine: Engine,
        store: RunStore,
        *,
        workspaces: Path,
        tools_factory: Callable[[], Sequence[Tool]],
        budgets: Budgets,
        context: ContextPolicy,
        tool_timeout: float = 120.0,
        tool_output_limit: int = 16_000,
        system_notes: Sequence[str] = (),
        model_id: str = "kimi-k2.5-agent",
        transcripts: TranscriptMemory | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.workspaces = workspaces
        self.tools_factory = tools_factory
        self.budgets = budgets
        self.context = context
        self.tool_timeout = tool_timeout
        self.tool_output_limit = tool_output_limit
        self.system_notes = list(system_notes)
        self.model_id = model_id
        #: The hidden steps of runs paused on client tool calls (default: in ``store``).
        self.transcripts = (transcripts if transcripts is not None
                            else TranscriptMemory(store.memories))
        #: Runs being ended after their stream closed (kept referenced until done).
        self._ending: set[asyncio.Future[None]] = set()

    async def stream(self, request: ChatRequest, options: ModeOptions = NO_OPTIONS
                     ) -> AsyncGenerator[Event, None]:
        """Run the agent on ``request`` with ``options`` and stream it in the engine
        vocabulary."""
        budgets = self.budgets.merged(options.agent.budgets())
        messages = await self.transcripts.restore(request.owner, request.messages)
        record = await self.store.create_run(
            mode=self.mode, model=self.model_id, messages=messages, run_id=request.run_id,
            owner=request.owner,
            params={"thinking": request.thinking, "budgets": _budgets_dict(budgets),
                    "client_tools": [t.get("function", {}).get("name")
                                     for t in request.tools or ()]},
        )
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        async def show(kind: str, data: dict[str, Any]) -> None:
            queue.put_nowait((kind, data))

        run = AgentRun(self.store, record, self.workspaces, observer=show)
        sampling = {k: v for k, v in (("temperature", request.temperature),
                                      ("top_p", request.top_p),
                                      ("max_tokens", request.max_tokens)) if v is not None}
        sampling.update(request.extra)
        loop = AgentLoop(
            SessionEngine(self.engine, session_id=request.session_id,
                          objective=request.objective),
            self._toolset(run, request, options),
            ctx=run.ctx, emit=run.emit, budgets=budgets, context=self.context,
            client_tools=request.tools or (), thinking=request.thinking, sampling=sampling,
            system_notes=self.system_notes, **self._loop_options(options),
        )
        task: asyncio.Task[AgentResult] | None = None
        try:
            await run.start()
            task = asyncio.create_task(run.execute(loop))
            self.store.register_cancel(run.id, task.cancel)
            yield run_line(self.mode, run.id)
            view = ChatView()
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait((getter, task), return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    for event in view.translate(*getter.result()):
                        yield event
                    continue
                getter.cancel()
                while not queue.empty():
                    for event in view.translate(*queue.get_nowait()):
                        yield event
                break
            try:
                result = task.result()  # raises what the loop raised
            except asyncio.CancelledError:
                # Not this stream (that would have been raised by the wait above): the run
                # itself was cancelled, by DELETE /v1/runs/{id}.
                raise RunCancelled(run.id) from None
            if result.stop_reason == "client_tools":
                client = [c for c in result.final.get("tool_calls", [])
                          if c["function"]["name"] in _names(request.tools)]
                await self.transcripts.remember(request.owner, request.messages, client,
                                                result.messages[result.first_new:])
                for index, call in enumerate(client):
                    yield ToolCallDelta(index, call["id"], call["function"]["name"],
                                        call["function"]["arguments"])
            yield result.usage
            yield Finish(result.finish_reason)
        except BaseException as exc:
            if task is None:  # it failed before the loop began
                run.ended_by(exc)
            raise
        finally:
            # The end of the run is its own task, awaited through a shield: a consumer
            # cancelled the way anyio cancels (again at every await, as Starlette does when
            # a streaming client leaves) must not leave the run unfinished.
            ending = asyncio.ensure_future(self._end(run, task))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
            await asyncio.shield(ending)

    async def _end(self, run: AgentRun, task: asyncio.Task[AgentResult] | None) -> None:
        """Stop the loop if it still runs (the stream was closed: the client went away),
        then record how the run ended, with the mode's metrics."""
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
        metrics = None
        try:
            metrics = await self._finished(run)
        except Exception:  # metrics must never keep a run from being recorded
            log.exception("run %s: computing its metrics failed", run.id)
        await run.finish(metrics)

    # -- what a mode built on this service changes ------------------------------------------

    def _toolset(self, run: AgentRun, request: ChatRequest, options: ModeOptions) -> Toolset:
        """The server-side tools of ``run``, which ``request`` with ``options`` started."""
        return Toolset(self.tools_factory(), default_timeout=self.tool_timeout,
                       output_limit=self.tool_output_limit)

    def _loop_options(self, options: ModeOptions) -> dict[str, Any]:
        """Further :class:`AgentLoop` keyword arguments for a request with ``options``."""
        return {}

    async def _finished(self, run: AgentRun) -> dict[str, Any] | None:
        """Called once the loop has ended (``run.result`` is ``None`` if it failed or was
        cancelled), before the run is finished; returns metrics to store with it."""
        return None

    async def aclose(self) -> None:
        """Nothing of its own to release: the engine, the tools and the MCP servers belong to
        the assembly that built them."""


def _names(tools: Sequence[dict[str, Any]] | None) -> set[str]:
    return {t.get("function", {}).get("name") for t in tools or () if isinstance(t, dict)}


def _budgets_dict(budgets: Budgets) -> dict[str, Any]:
    return {"max_steps": budgets.max_steps, "max_tokens": budgets.max_tokens,
            "max_time": budgets.max_time}
