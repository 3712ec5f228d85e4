"""``kimi-modes chat`` and ``kimi-modes run``: one question or task, streamed to the terminal.

Reasoning (and an agent's progress) is shown dimmed while it streams, then the answer in
normal text. With ``--url`` it is a client of a running gateway (through the same engine class
used for upstreams; the gateway applies the mode and runs Agent and Swarm). Otherwise the app
is assembled in-process from the configuration (:func:`kimi_modes.assembly.assemble`; the
embedded default when nothing is configured), with the run store only for Agent and Swarm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kimi_modes.engines.base import ChatRequest, Engine, EngineError, Event, Finish
from kimi_modes.protocol.deltas import ContentDelta, ReasoningDelta, ToolCallDelta


async def run_chat(
    prompt: str,
    *,
    mode: str,
    url: str | None,
    config: Path | None,
    max_tokens: int | None,
    api_key: str | None = None,
    agent_budgets: dict[str, Any] | None = None,
) -> int:
    """Stream one answer to stdout; returns the process exit code (0 ok, 1 engine error,
    130 interrupted). ``mode``: instant, thinking, agent or swarm."""
    from kimi_modes.modes import ModeOptions

    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    model_id = f"kimi-{mode}"  # the mode alias: the default model of what is served
    request = ChatRequest(messages=[{"role": "user", "content": prompt}],
                          max_tokens=max_tokens)
    close: Callable[[], Awaitable[None]]
    if url is not None:
        from kimi_modes.engines.openai_chat import OpenAIChatEngine

        # The gateway applies the mode from the model id (nothing to switch here) and reads
        # the agent budgets from the body.
        engine: Engine = OpenAIChatEngine("gateway", url, model=model_id, dialect="none",
                                          api_key=api_key)
        if agent_budgets:
            request.extra["agent"] = agent_budgets
        events: AsyncIterator[Event] = engine.stream(request)
        close = engine.aclose
    else:
        from kimi_modes.assembly import assemble
        from kimi_modes.config import load_settings

        app = await assemble(load_settings(config), runs=mode in ("agent", "swarm"))
        close = app.aclose
        options = ModeOptions.model_validate({"agent": agent_budgets or {}})
        try:
            resolved = app.router.catalog.resolve(model_id)
            routed, request = app.router.route(resolved, request, options)
        except BaseException:
            await close()
            raise
        events = routed.stream(request)
    section = ""
    try:
        async for event in events:
            if isinstance(event, ReasoningDelta):
                if section != "reasoning":
                    section = "reasoning"
                console.print(event.text, style="dim", end="", soft_wrap=True, markup=False)
            elif isinstance(event, ContentDelta):
                if section == "reasoning":
                    console.print("\n")
                section = "content"
                console.print(event.text, end="", soft_wrap=True, markup=False)
            elif isinstance(event, ToolCallDelta):
                if event.name is not None:
                    console.print(f"\n[tool call] {event.name} ", style="cyan", end="")
                console.print(event.arguments, style="cyan", end="", markup=False)
            elif isinstance(event, Finish) and event.reason == "length":
                console.print("\n[truncated: max tokens reached]", style="yellow", end="")
        console.print()
        return 0
    except EngineError as exc:
        err.print(f"\nerror: {exc}", style="red")
        return 1
    except KeyboardInterrupt:
        err.print("\ncancelled", style="yellow")
        return 130
    finally:
        await close()
