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
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from kimi_modes.engines.base import ChatRequest, Engine, Event, Finish, Usage
from kimi_modes.modes.agent import AgentLoop, AgentResult, Budgets, ContextPolicy, Emit
from kimi_modes.modes.memory import TranscriptMemory
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta
from kimi_modes.runs import RunStore
from kimi_modes.tools.base import RunContext, Tool
from kimi_modes.tools.toolset import Toolset

log = logging.getLogger("kimi_modes.agent")

_PROGRESS_RESULT_CHARS = 300


class AgentService:
    """Runs agent requests on ``engine`` with the tools ``tools_factory`` makes per run."""

    name = "agent"
    #: The run's ``mode`` in the store.
    mode = "agent"
    #: Event types stored without waiting for their commit (progress reports).
    progress_events: frozenset[str] = frozenset()

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
        on_close: Callable[[], Awaitable[None]] | None = None,
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
        self.transcripts = TranscriptMemory()
        self._on_close = on_close

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Run the agent on ``request`` and stream it in the engine vocabulary."""
        overrides = request.extra.get("agent") if isinstance(request.extra.get("agent"),
                                                               dict) else {}
        budgets = self.budgets.merged(overrides or {})
        messages = self.transcripts.restore(request.messages)
        run = await self.store.create_run(
            mode=self.mode, model=self.model_id, messages=messages, run_id=request.run_id,
            owner=request.owner,
            params={"thinking": request.thinking, "budgets": _budgets_dict(budgets),
                    "client_tools": [t.get("function", {}).get("name")
                                     for t in request.tools or ()]},
        )
        workspace = self.workspaces / run.id
        workspace.mkdir(parents=True, exist_ok=True)
        ctx = RunContext(run.id, workspace)
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        async def emit(kind: str, data: dict[str, Any]) -> None:
            await self.store.emit(run.id, kind, data, wait=kind not in self.progress_events)
            queue.put_nowait((kind, data))

        sampling = {k: v for k, v in (("temperature", request.temperature),
                                      ("top_p", request.top_p),
                                      ("max_tokens", request.max_tokens)) if v is not None}
        sampling.update({k: v for k, v in request.extra.items() if k not in ("agent", "swarm")})
        loop = AgentLoop(
            self.engine,
            self._toolset(run.id, ctx, emit, request),
            ctx=ctx, emit=emit, budgets=budgets, context=self.context,
            client_tools=request.tools or (), thinking=request.thinking, sampling=sampling,
            system_notes=self.system_notes, **self._loop_options(request),
        )
        task: asyncio.Task[AgentResult] = asyncio.create_task(loop.run(messages))
        self.store.register_cancel(run.id, task.cancel)
        await self.store.emit(run.id, "run_started", {"workspace": str(workspace)})
        status, stop_reason, final, usage = "failed", "error", None, None
        error: str | None = None
        result: AgentResult | None = None
        try:
            yield ReasoningDelta(f"[{self.mode} run {run.id}: GET /v1/runs/{run.id}/events "
                                 f"to watch, /ui/runs/{run.id} in a browser]\n")
            view = _ChatView()
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
            result = task.result()  # raises what the loop raised
            if result.stop_reason == "client_tools":
                client = [c for c in result.final.get("tool_calls", [])
                          if c["function"]["name"] in _names(request.tools)]
                self.transcripts.remember(client, result.messages[result.first_new:])
                for index, call in enumerate(client):
                    yield ToolCallDelta(index, call["id"], call["function"]["name"],
                                        call["function"]["arguments"])
            status = "completed"  # stop_reason says whether it answered or hit a budget
            stop_reason, final, usage = result.stop_reason, result.final, result.usage
            yield result.usage
            yield Finish(result.finish_reason)
        except asyncio.CancelledError:
            status, stop_reason = "cancelled", "cancelled"
            raise
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            if not task.done():
                task.cancel()
                status, stop_reason = "cancelled", "cancelled"
            with contextlib.suppress(BaseException):
                await task
            await ctx.aclose()
            metrics = None
            try:
                metrics = await self._finished(run.id, result, emit)
            except Exception:  # metrics must never keep a run from being recorded
                log.exception("run %s: computing its metrics failed", run.id)
            await self.store.finish(run.id, status, stop_reason, final, _usage_dict(usage),
                                    error=error, metrics=metrics)

    # -- what a mode built on this service changes ------------------------------------------

    def _toolset(self, run_id: str, ctx: RunContext, emit: Emit,
                 request: ChatRequest) -> Toolset:
        """The server-side tools of the run ``request`` started."""
        return Toolset(self.tools_factory(), default_timeout=self.tool_timeout,
                       output_limit=self.tool_output_limit)

    def _loop_options(self, request: ChatRequest) -> dict[str, Any]:
        """Further :class:`AgentLoop` keyword arguments for ``request``."""
        return {}

    async def _finished(self, run_id: str, result: AgentResult | None,
                        emit: Emit) -> dict[str, Any] | None:
        """Called once the loop has ended (``result`` is ``None`` if it failed or was
        cancelled), before the run is finished; returns metrics to store with it."""
        return None

    async def aclose(self) -> None:
        """Release what the service owns (MCP servers); the engine belongs to the caller."""
        if self._on_close is not None:
            await self._on_close()


class _ChatView:
    """Run events as the chat APIs show them: reasoning and progress (tool calls, short
    results) as reasoning, the text of every step as content, steps separated by a blank
    line. The run record keeps each step's text apart; its final answer is the last step's."""

    def __init__(self) -> None:
        self._content_step: int | None = None

    def translate(self, kind: str, data: dict[str, Any]) -> list[Event]:
        if kind == "message_delta" and data["kind"] == "content":
            text = data["text"]
            if self._content_step is not None and self._content_step != data["step"]:
                text = "\n\n" + text
            self._content_step = data["step"]
            return [ContentDelta(text)]
        return _progress(kind, data)


def _progress(kind: str, data: dict[str, Any]) -> list[Event]:
    if kind == "message_delta":
        return [ReasoningDelta(data["text"])]
    if kind == "tool_call" and not data.get("client"):
        return [ReasoningDelta(f"\n[tool] {data['name']}({data['arguments']})\n")]
    if kind == "tool_result":
        output = str(data["output"])
        if len(output) > _PROGRESS_RESULT_CHARS:
            output = output[:_PROGRESS_RESULT_CHARS] + " …"
        mark = "error" if data.get("is_error") else "result"
        return [ReasoningDelta(f"[{mark}] {output}\n")]
    if kind == "compaction":
        return [ReasoningDelta(f"[compacted {data['compacted']} older tool results]\n")]
    if kind == "step_retry":
        return [ReasoningDelta(f"\n[step {data['step']} failed and is retried: "
                               f"{data['error']}]\n")]
    if kind == "fanout":
        return [ReasoningDelta(f"[swarm] {len(data['subagents'])} sub-agents started\n")]
    if kind == "subagent_finished":
        state = data["status"] if data["status"] != "completed" else "done"
        detail = data.get("error") or (data.get("answer") or "")
        if len(detail) > _PROGRESS_RESULT_CHARS:
            detail = detail[:_PROGRESS_RESULT_CHARS] + " …"
        return [ReasoningDelta(f"[sub-agent {data['index'] + 1} {state}, {data['steps']} "
                               f"steps, {data['duration']:.1f} s] {detail}\n")]
    return []


def _names(tools: Sequence[dict[str, Any]] | None) -> set[str]:
    return {t.get("function", {}).get("name") for t in tools or () if isinstance(t, dict)}


def _budgets_dict(budgets: Budgets) -> dict[str, Any]:
    return {"max_steps": budgets.max_steps, "max_tokens": budgets.max_tokens,
            "max_time": budgets.max_time}


def _usage_dict(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens}
