"""Agent mode: Kimi in a loop of reasoning → tool calls → observations until it answers.

:class:`AgentLoop` streams the model, starts each server-side tool call as soon as its
arguments are complete (when the model moves on to the next call, or the step's stream ends),
runs the calls of one step concurrently and feeds the results back in call order, until the
model answers without calling a tool, calls a tool the *client* declared (then the run pauses
and the calls go back to the client as ordinary ``tool_calls``), or a budget runs out. Every
step, call, result and piece of text is reported through the ``emit`` callback, so the run can
be persisted and watched; the returned :class:`AgentResult` says why the loop stopped.

An engine failure in the middle of a step (the upstream died while streaming) can be retried:
with ``step_retries`` > 0 the step's tool calls are cancelled, a ``step_retry`` event says the
step's text so far is void, and the step runs again (an
:class:`~kimi_modes.engines.pool.EnginePool` sends it to another upstream). With
``checkpoints`` on, a ``checkpoint`` event after every finished step carries the messages the
step added, so a failed run can be resumed exactly where it stopped
(:func:`conversation_from_events`).

Failures of the model's making (unknown tool, arguments that do not parse or validate, a tool
that errors or times out) go back to the model as an observation it can correct. Cancelling
the task that runs :meth:`AgentLoop.run` stops the model stream and the running tools; the
caller closes the :class:`~kimi_modes.tools.base.RunContext` to kill sandboxed processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kimi_modes.engines.base import (
    ChatRequest,
    Engine,
    EngineError,
    Event,
    UpstreamRejected,
    Usage,
)
from kimi_modes.engines.message import collect
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta
from kimi_modes.protocol.output import ParsedOutput, ToolCall
from kimi_modes.tools.base import RunContext, ToolResult
from kimi_modes.tools.toolset import Toolset

#: ``emit(type, data)``: called for every event of the run, in order.
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

AGENT_SYSTEM_NOTE = (
    "You are running as an agent: use the tools to act, observe their results, and keep going "
    "until the task is done; then answer the user directly."
)


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits of one run: steps (model calls), completion tokens over the run, wall seconds."""

    max_steps: int = 50
    max_tokens: int | None = None
    max_time: float | None = 900.0

    def merged(self, overrides: dict[str, Any]) -> Budgets:
        """These budgets with per-request ``overrides`` (None values ignored). A request may
        only tighten a server-wide limit, never loosen it."""
        values: dict[str, Any] = {}
        for key in ("max_steps", "max_tokens", "max_time"):
            server = getattr(self, key)
            wanted = overrides.get(key)
            if wanted is None:
                values[key] = server
            elif server is None:
                values[key] = wanted
            else:
                values[key] = min(server, wanted)
        return Budgets(**values)


@dataclass(frozen=True, slots=True)
class ContextPolicy:
    """When and how older tool results are compacted so a request fits the model's window.

    The conversation's size is estimated at ``chars_per_token`` characters a token (low, so
    the estimate errs on the large side); when it plus the step's output budget passes
    ``threshold`` × ``window``, tool results older than the latest ``keep_latest`` are replaced
    by a one-line note.
    """

    window: int = 262_144
    threshold: float = 0.85
    keep_latest: int = 3
    chars_per_token: float = 3.0
    step_output_tokens: int = 16_384


@dataclass
class AgentResult:
    """How a run ended. ``stop_reason``: ``answer``, ``client_tools``, ``max_steps``,
    ``max_tokens``, ``max_time``, ``context`` (could not fit the window)."""

    stop_reason: str
    messages: list[dict[str, Any]]
    final: dict[str, Any]
    steps: int
    tool_calls: int
    usage: Usage
    finish_reason: str = "stop"
    #: Index in ``messages`` of the first message the run itself added.
    first_new: int = 0


@dataclass
class _Call:
    """A complete tool call of a step and, for a server tool, the task running it."""

    id: str
    name: str
    arguments: str
    task: asyncio.Task[ToolResult] | None = None
    started: float = 0.0


class AgentLoop:
    """One agent run over ``engine`` with ``toolset`` (server-side tools) and, optionally,
    ``client_tools`` that are returned to the client instead of being run."""

    def __init__(
        self,
        engine: Engine,
        toolset: Toolset,
        *,
        ctx: RunContext,
        emit: Emit,
        budgets: Budgets = Budgets(),
        context: ContextPolicy = ContextPolicy(),
        client_tools: Sequence[dict[str, Any]] = (),
        thinking: bool = True,
        sampling: dict[str, Any] | None = None,
        system_notes: Sequence[str] = (),
        step_retries: int = 0,
        retry_backoff: float = 0.5,
        checkpoints: bool = False,
        first_tool_choice: Any = None,
    ) -> None:
        self.engine = engine
        self.step_retries = step_retries
        self.retry_backoff = retry_backoff
        self.checkpoints = checkpoints
        self.first_tool_choice = first_tool_choice
        #: The conversation so far (system notes included); complete steps only.
        self.conversation: list[dict[str, Any]] = []
        self.toolset = toolset
        self.ctx = ctx
        self.emit = emit
        self.budgets = budgets
        self.context = context
        self.client_tools = list(client_tools)
        self._client_names = {
            t.get("function", {}).get("name") for t in self.client_tools if isinstance(t, dict)
        }
        clash = self._client_names & set(toolset.names)
        if clash:
            raise ValueError(
                f"client tools {sorted(clash)} have the names of server tools; rename them"
            )
        self.thinking = thinking
        self.sampling = dict(sampling or {})
        self.system_notes = [AGENT_SYSTEM_NOTE, *system_notes]
        self._first_new = 0

    async def run(self, messages: Sequence[dict[str, Any]]) -> AgentResult:
        """Run until an answer, client tool calls or a budget; see the module docstring."""
        started = time.monotonic()
        conversation = _with_system_notes(list(messages), self.system_notes)
        self.conversation = conversation
        self._first_new = len(conversation)
        declared = self.toolset.declarations() + self.client_tools
        prompt_tokens = completion_tokens = reasoning_tokens = 0
        calls_total = 0
        step = 0
        last: dict[str, Any] = {"role": "assistant", "content": None}
        while True:
            reason = self._over_budget(step, completion_tokens, started)
            if reason is not None:
                return self._result(reason, conversation, last, step, calls_total,
                                    prompt_tokens, completion_tokens, reasoning_tokens,
                                    "length")
            if not await self._fit_context(conversation, step):
                return self._result("context", conversation, last, step, calls_total,
                                    prompt_tokens, completion_tokens, reasoning_tokens,
                                    "length")
            step += 1
            self.ctx.step = step
            await self.emit("step", {"step": step})
            request = ChatRequest(
                messages=conversation,
                tools=declared or None,
                tool_choice=self.first_tool_choice if step == 1 else None,
                thinking=self.thinking,
                temperature=self.sampling.get("temperature"),
                top_p=self.sampling.get("top_p"),
                max_tokens=self.sampling.get("max_tokens"),
                extra={k: v for k, v in self.sampling.items()
                       if k not in ("temperature", "top_p", "max_tokens")},
            )
            message, calls, usage, finish = await self._step_with_retries(request, step, started)
            if usage is not None:
                prompt_tokens += usage.prompt_tokens
                completion_tokens += usage.completion_tokens
                reasoning_tokens += usage.reasoning_tokens or 0
            if finish == "timeout":
                return self._result("max_time", conversation, last, step, calls_total,
                                    prompt_tokens, completion_tokens, reasoning_tokens,
                                    "length")
            conversation.append(message)
            last = message
            calls_total += len(calls)
            if not calls:
                await self._checkpoint(step, [message])
                reason = "answer" if finish != "length" else "max_tokens"
                return self._result(reason, conversation, message, step, calls_total,
                                    prompt_tokens, completion_tokens, reasoning_tokens,
                                    "stop" if finish != "length" else "length")
            if any(c.name in self._client_names for c in calls):
                # Server calls of this step still run, so their results are part of the
                # run's record; the client gets its own calls back.
                results = await self._finish_calls(calls, step)
                conversation.extend(results)
                await self._checkpoint(step, [message, *results])
                return self._result("client_tools", conversation, message, step, calls_total,
                                    prompt_tokens, completion_tokens, reasoning_tokens,
                                    "tool_calls")
            results = await self._finish_calls(calls, step)
            conversation.extend(results)
            await self._checkpoint(step, [message, *results])

    async def _checkpoint(self, step: int, added: list[dict[str, Any]]) -> None:
        if self.checkpoints:
            await self.emit("checkpoint", {"step": step, "messages": added})

    # -- one model call ------------------------------------------------------------------

    async def _step_with_retries(
        self, request: ChatRequest, step: int, started: float
    ) -> tuple[dict[str, Any], list[_Call], Usage | None, str]:
        attempt = 0
        while True:
            try:
                return await self._step(request, step, started)
            except UpstreamRejected:
                raise
            except EngineError as exc:
                attempt += 1
                left = self._time_left(started)
                if attempt > self.step_retries or (left is not None and left <= 0):
                    raise
                await self.emit("step_retry", {"step": step, "attempt": attempt,
                                               "error": str(exc)})
                await asyncio.sleep(min(self.retry_backoff * 2 ** (attempt - 1), 10.0))

    async def _step(
        self, request: ChatRequest, step: int, started: float
    ) -> tuple[dict[str, Any], list[_Call], Usage | None, str]:
        calls: list[_Call] = []

        async def on_event(event: Event) -> None:
            if isinstance(event, ReasoningDelta | ContentDelta):
                kind = "reasoning" if isinstance(event, ReasoningDelta) else "content"
                await self.emit("message_delta", {"step": step, "kind": kind,
                                                  "text": event.text})

        async def on_tool_call(call: ToolCall) -> None:
            # Started as soon as its arguments are complete, while the model goes on.
            calls.append(await self._start_call(call, len(calls), step))

        try:
            async with asyncio.timeout(self._time_left(started)):
                completion = await collect(self.engine.stream(request), on_event=on_event,
                                           on_tool_call=on_tool_call)
        except TimeoutError:
            _cancel(calls)
            return {"role": "assistant", "content": None}, [], None, "timeout"
        except BaseException:  # engine failure or cancellation: no call of this step survives
            _cancel(calls)
            raise
        answer = completion.message
        message = ParsedOutput(
            answer.reasoning_content, answer.content,
            [ToolCall(c.id, c.name, c.arguments) for c in calls],
        ).to_openai_message()
        return message, calls, completion.usage, completion.finish_reason or "stop"

    async def _start_call(self, call: ToolCall, index: int, step: int) -> _Call:
        name = call.name or ""
        started = _Call(call.id or f"functions.{name or 'unknown'}:{index}", name,
                        call.arguments)
        client = name in self._client_names
        await self.emit("tool_call", {"step": step, "id": started.id, "name": name,
                                      "arguments": started.arguments, "client": client})
        if not client:
            started.started = time.monotonic()
            started.task = asyncio.create_task(
                self.toolset.call(name, started.arguments, self.ctx))
        return started

    async def _finish_calls(self, calls: list[_Call], step: int) -> list[dict[str, Any]]:
        """Await the server-side calls and return their tool messages in call order."""
        server = [c for c in calls if c.task is not None]
        try:
            await asyncio.gather(*(c.task for c in server if c.task is not None))
        except BaseException:
            for c in server:
                if c.task is not None:
                    c.task.cancel()
            raise
        results: list[dict[str, Any]] = []
        for call in server:
            assert call.task is not None
            result = call.task.result()
            duration = time.monotonic() - call.started
            await self.emit("tool_result", {
                "step": step, "id": call.id, "name": call.name, "output": result.output,
                "is_error": result.is_error, "duration": duration, "meta": result.meta,
            })
            results.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                            "content": result.output})
        return results

    # -- budgets and context ----------------------------------------------------------------

    def _time_left(self, started: float) -> float | None:
        if self.budgets.max_time is None:
            return None
        return max(0.0, self.budgets.max_time - (time.monotonic() - started))

    def _over_budget(self, step: int, completion_tokens: int, started: float) -> str | None:
        if step >= self.budgets.max_steps:
            return "max_steps"
        if self.budgets.max_tokens is not None and completion_tokens >= self.budgets.max_tokens:
            return "max_tokens"
        left = self._time_left(started)
        if left is not None and left <= 0:
            return "max_time"
        return None

    async def _fit_context(self, conversation: list[dict[str, Any]], step: int) -> bool:
        """Compact older tool results until the next request fits; False if it cannot."""
        policy = self.context
        limit = policy.window * policy.threshold - policy.step_output_tokens
        size = _estimate_tokens(conversation, policy.chars_per_token)
        if size <= limit:
            return True
        tool_indexes = [i for i, m in enumerate(conversation) if m.get("role") == "tool"]
        candidates = tool_indexes[: max(0, len(tool_indexes) - policy.keep_latest)]
        compacted = 0
        removed_chars = 0
        for i in candidates:
            message = conversation[i]
            text = message.get("content")
            if not isinstance(text, str) or text.startswith("[compacted"):
                continue
            note = f"[compacted: this tool result ({len(text)} characters) was removed to fit " \
                   "the context window]"
            conversation[i] = {**message, "content": note}
            compacted += 1
            removed_chars += len(text) - len(note)
            size = _estimate_tokens(conversation, policy.chars_per_token)
            if size <= limit:
                break
        if compacted:
            await self.emit("compaction", {
                "step": step, "strategy": "drop_old_tool_results", "compacted": compacted,
                "removed_chars": removed_chars, "kept_latest": policy.keep_latest,
                "estimated_tokens": int(size), "window": policy.window,
            })
        return size <= limit

    def _result(self, reason: str, conversation: list[dict[str, Any]],
                final: dict[str, Any], steps: int, calls: int, prompt: int, completion: int,
                reasoning: int, finish: str) -> AgentResult:
        return AgentResult(
            stop_reason=reason,
            messages=conversation,
            final=final,
            steps=steps,
            tool_calls=calls,
            usage=Usage(prompt, completion, reasoning or None),
            first_new=self._first_new,
            finish_reason=finish,
        )


def _cancel(calls: list[_Call]) -> None:
    for call in calls:
        if call.task is not None:
            call.task.cancel()


def _with_system_notes(messages: list[dict[str, Any]], notes: Sequence[str]) -> list[
        dict[str, Any]]:
    """The conversation with the agent's notes appended to its system message (or a new
    system message first, which keeps Kimi's default identity line)."""
    text = "\n\n".join(n for n in notes if n)
    if not text:
        return messages
    if messages and messages[0].get("role") == "system" and isinstance(
            messages[0].get("content"), str):
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
        return [first, *messages[1:]]
    system = {"role": "system",
              "content": f"You are Kimi, an AI assistant created by Moonshot AI.\n\n{text}"}
    return [system, *messages]


def _estimate_tokens(messages: list[dict[str, Any]], chars_per_token: float) -> float:
    return len(orjson.dumps(messages)) / chars_per_token


def conversation_from_events(messages: Sequence[dict[str, Any]],
                             events: Sequence[Any]) -> list[dict[str, Any]]:
    """The conversation a run with ``checkpoints`` had reached: its task ``messages`` plus
    the messages of every ``checkpoint`` event (run events, in seq order). Steps that had not
    finished are not included, so resuming repeats them."""
    conversation = [dict(m) for m in messages]
    for event in events:
        if getattr(event, "type", None) == "checkpoint":
            conversation.extend(dict(m) for m in event.data.get("messages", ()))
    return conversation
