"""Build the modes from the settings: engines per upstream, Instant/Thinking defaults, Agent
mode (run store, tools, MCP servers) and Swarm mode (engine pools for the orchestrator and the
sub-agents). Used by the gateway and the terminal commands."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kimi_modes.config import Settings
from kimi_modes.engines.base import Engine
from kimi_modes.modes.agent.loop import Budgets, ContextPolicy
from kimi_modes.modes.agent.service import AgentService
from kimi_modes.modes.catalog import Mode
from kimi_modes.modes.chat import ChatModes, ModeDefaults
from kimi_modes.modes.swarm import SwarmService, SwarmWorkers, WorkerSettings
from kimi_modes.runs import RunStore
from kimi_modes.tools.base import Tool

log = logging.getLogger("kimi_modes.setup")


def _expand(path: str) -> str:
    """``~`` expanded (a settings path; no I/O beyond reading $HOME)."""
    return os.path.expanduser(path)


def mode_defaults(settings: Settings) -> dict[Mode, ModeDefaults]:
    """Sampling defaults and upstream of each chat mode, from ``[modes.*]``."""
    m = settings.modes
    return {
        Mode.THINKING: ModeDefaults(m.thinking.temperature, m.thinking.top_p,
                                    m.thinking.upstream, m.thinking.max_tokens),
        Mode.INSTANT: ModeDefaults(m.instant.temperature, m.instant.top_p,
                                   m.instant.upstream, m.instant.max_tokens),
    }


def build_engines(settings: Settings) -> dict[str, Engine]:
    from kimi_modes.engines.factory import build_engine

    return {u.name: build_engine(u) for u in settings.effective_upstreams()}


async def build_agent(settings: Settings, engines: dict[str, Engine],
                      store: RunStore) -> AgentService:
    """Agent mode on the configured upstream, with the built-in tools and MCP servers.

    The store must be open. MCP servers that fail to start are logged and left out."""
    from kimi_modes.protocol import family_info
    from kimi_modes.tools.code import code_tools
    from kimi_modes.tools.files import file_tools
    from kimi_modes.tools.sandbox import Sandbox, SandboxLimits
    from kimi_modes.tools.web import web_prompt_note, web_tools

    a = settings.agent
    upstreams = {u.name: u for u in settings.effective_upstreams()}
    name = a.upstream or next(iter(engines))
    family = upstreams[name].family if name in upstreams else "k2.5"
    sandbox = Sandbox(SandboxLimits(output_limit=a.tool_output_limit),
                      allow_unsandboxed=a.allow_unsandboxed)
    refusal = await sandbox.check()
    if refusal is not None:
        log.warning("python and shell tools are disabled: %s", refusal)
    tools: list[Tool] = [
        *code_tools(sandbox=sandbox),
        *file_tools(),
        *web_tools(allow_private=a.web_allow_private, searxng_url=a.searxng_url),
    ]
    notes = [n for n in (web_prompt_note(tools),) if n]
    mcp = None
    if a.mcp_config:
        from kimi_modes.tools.mcp import McpManager

        mcp = McpManager.from_file(_expand(a.mcp_config),
                                   call_timeout=a.tool_timeout,
                                   output_limit=a.tool_output_limit)
        await mcp.start()
        for server, problem in mcp.problems().items():
            log.warning("MCP server %r left out: %s", server, problem)

    def tools_factory() -> list[Tool]:
        return [*tools, *(mcp.tools() if mcp is not None else ())]

    window = a.context_window or family_info(family).context_window
    return AgentService(
        engines[name],
        store,
        workspaces=Path(_expand(a.workspaces)),
        tools_factory=tools_factory,
        budgets=Budgets(a.max_steps, a.max_tokens, a.max_time),
        context=ContextPolicy(window=window, keep_latest=a.keep_tool_results,
                              step_output_tokens=min(16_384, window // 8)),
        tool_timeout=a.tool_timeout,
        tool_output_limit=a.tool_output_limit,
        system_notes=notes,
        on_close=mcp.aclose if mcp is not None else None,
    )


def build_pool(settings: Settings, engines: dict[str, Engine], names: list[str],
               name: str) -> Engine:
    """An :class:`~kimi_modes.engines.pool.EnginePool` over the upstreams ``names`` (their
    caps and metrics endpoints from the settings)."""
    from kimi_modes.engines.pool import EnginePool, PoolMember, metrics_url_for

    upstreams = {u.name: u for u in settings.effective_upstreams()}
    members = []
    for upstream_name in names:
        u = upstreams[upstream_name]
        metrics_url = u.metrics_url
        if metrics_url is None and u.kind != "embedded" and u.url:
            metrics_url = metrics_url_for(u.url)
        members.append(PoolMember(engines[upstream_name], max_concurrency=u.max_concurrency,
                                  metrics_url=metrics_url or None))
    s = settings.swarm
    return EnginePool(name, members, max_attempts=s.max_attempts,
                      failure_threshold=s.failure_threshold, cooldown=s.cooldown,
                      metrics_interval=s.metrics_interval)


def build_swarm(settings: Settings, engines: dict[str, Engine], store: RunStore,
                agent: AgentService) -> SwarmService:
    """Swarm mode: the orchestrator on a pool of ``swarm.orchestrator_upstreams`` (default:
    the agent's upstream), sub-agents on a pool of ``swarm.worker_upstreams`` (default: all),
    with the agent's tools."""
    s = settings.swarm
    first = settings.agent.upstream or next(iter(engines))
    orchestrator = build_pool(settings, engines, s.orchestrator_upstreams or [first],
                              "orchestrator")
    workers_engine = build_pool(settings, engines, s.worker_upstreams or list(engines),
                                "workers")
    mode = Mode.INSTANT if s.subagent_mode == "instant" else Mode.THINKING
    defaults = mode_defaults(settings)[mode]
    sampling = {k: v for k, v in (("temperature", defaults.temperature),
                                  ("top_p", defaults.top_p)) if v is not None}
    workers = SwarmWorkers(
        workers_engine, store, workspaces=agent.workspaces, tools_factory=agent.tools_factory,
        settings=WorkerSettings(
            budgets=Budgets(s.subagent_max_steps, None, s.subagent_timeout),
            context=agent.context, thinking=s.subagent_mode == "thinking", sampling=sampling,
            step_retries=s.step_retries, tool_timeout=agent.tool_timeout,
            tool_output_limit=agent.tool_output_limit,
            max_concurrent=s.max_concurrent_subagents),
        system_notes=agent.system_notes,
    )

    async def close_pools() -> None:
        await orchestrator.aclose()
        await workers_engine.aclose()

    return SwarmService(
        orchestrator, store, workers, workspaces=agent.workspaces,
        budgets=Budgets(s.orchestrator_max_steps, None, s.orchestrator_max_time),
        context=agent.context, max_per_fanout=s.max_subagents_per_fanout,
        max_per_run=s.max_subagents_per_run, step_retries=s.step_retries,
        on_close=close_pools,
    )


async def build_modes(settings: Settings, engines: dict[str, Engine] | None = None,
                      store: RunStore | None = None) -> ChatModes:
    """All modes. Agent and Swarm mode are included when ``store`` (open) is given."""
    engines = engines if engines is not None else build_engines(settings)
    for engine in engines.values():
        start = getattr(engine, "start", None)
        if start is not None:
            await start()
    agent = await build_agent(settings, engines, store) if store is not None else None
    swarm = build_swarm(settings, engines, store, agent) if store and agent else None
    return ChatModes(engines, mode_defaults(settings), agent=agent, swarm=swarm)
