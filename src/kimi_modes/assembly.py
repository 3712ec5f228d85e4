"""The composition root: settings in; engines, pools, tools, the run store and the modes out.

The gateway (:mod:`kimi_modes.server.app`), the terminal commands (:mod:`kimi_modes.terminal`)
and the scripts in benchmarks/ build the app here and nowhere else::

    from kimi_modes.assembly import assemble
    from kimi_modes.config import load_settings

    async with await assemble(load_settings()) as app:
        engine, request = app.router.route(resolved, request, options)
        ...

What a caller may rely on:

- Each configured upstream becomes one engine (:func:`build_engine` is the only mapping from
  an :class:`~kimi_modes.config.UpstreamSettings` to an engine class; engines/ never reads
  the settings). Remote engines open their connections on first use. The embedded engine is
  imported only when an upstream asks for it, and every :class:`Startable` engine is started
  (the embedded one loads its model) before :func:`assemble` returns.
- With ``runs=True`` the run store is opened and Agent and Swarm modes are built on it: the
  built-in tools (sandboxed python and shell, files, web), the MCP servers of
  ``agent.mcp_config`` (one that fails to start is logged and left out), and two engine pools
  for the swarm (``orchestrator`` and ``workers``). With ``runs=False`` only Instant and
  Thinking exist, and nothing is written to disk.
- :meth:`Assembly.aclose` releases everything, once (later calls do nothing): first the run
  store (live runs end as ``interrupted``, watchers end), then Swarm mode and its pools, Agent
  mode and its MCP servers, the engines last. If :func:`assemble` fails half-way, what it had
  built is released the same way before the exception propagates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kimi_modes.config import Settings, UpstreamSettings
from kimi_modes.endpoint import metrics_url
from kimi_modes.engines.base import Engine, Startable
from kimi_modes.modes.agent.loop import Budgets, ContextPolicy
from kimi_modes.modes.agent.service import AgentService
from kimi_modes.modes.catalog import Mode
from kimi_modes.modes.chat import ModeDefaults
from kimi_modes.modes.router import Router
from kimi_modes.modes.swarm import SwarmService, SwarmWorkers, WorkerSettings
from kimi_modes.runs import RunStore
from kimi_modes.tools.base import Tool

if TYPE_CHECKING:
    from types import TracebackType

    from kimi_modes.engines.pool import EnginePool
    from kimi_modes.tools.mcp import McpManager

log = logging.getLogger("kimi_modes.assembly")


@dataclass(eq=False)
class Assembly:
    """What :func:`assemble` built. ``engines``: one per upstream, by name. ``router``: the
    modes over them (``router.agent`` and ``router.swarm`` are ``None`` without a run store).
    ``store``: the open run store, or ``None``. ``pools``: the swarm's engine pools by name
    (``orchestrator``, ``workers``). ``tools``: the built-in agent tools (MCP tools come from
    ``mcp``, whose servers may come and go). Close it with :meth:`aclose` (or ``async with``)."""

    settings: Settings
    engines: dict[str, Engine]
    router: Router
    store: RunStore | None = None
    pools: dict[str, EnginePool] = field(default_factory=dict)
    tools: list[Tool] = field(default_factory=list)
    mcp: McpManager | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def agent(self) -> AgentService | None:
        """Agent mode, when built."""
        agent: AgentService | None = self.router.agent
        return agent

    @property
    def swarm(self) -> SwarmService | None:
        """Swarm mode, when built."""
        swarm: SwarmService | None = self.router.swarm
        return swarm

    async def aclose(self) -> None:
        """Release everything built (see the module docstring for the order). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await _release(self.store, self.swarm, self.pools, self.agent, self.mcp, self.engines)

    async def __aenter__(self) -> Assembly:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


async def assemble(settings: Settings, *, runs: bool = True,
                   engines: Mapping[str, Engine] | None = None) -> Assembly:
    """Build the app from ``settings``: see the module docstring. ``runs``: open the run store
    and build Agent and Swarm modes. ``engines`` replaces the configured upstreams' engines
    (keyed by upstream name; the assembly owns and closes them)."""
    built = dict(engines) if engines is not None else build_engines(settings)
    store: RunStore | None = None
    mcp: McpManager | None = None
    pools: dict[str, EnginePool] = {}
    tools: list[Tool] = []
    agent: AgentService | None = None
    swarm: SwarmService | None = None
    try:
        for engine in built.values():
            if isinstance(engine, Startable):
                await engine.start()
        if runs:
            store = RunStore(settings.store.url or settings.agent.runs_db,
                             lease_seconds=settings.store.lease_seconds)
            await store.open()
            tools, notes, mcp = await _agent_tools(settings)
            agent = _agent(settings, built, store, tools, notes, mcp)
            pools = _pools(settings, built)
            swarm = _swarm(settings, store, agent, pools)
        router = Router(built, mode_defaults(settings), agent=agent, swarm=swarm)
    except BaseException:
        await _release(store, swarm, pools, agent, mcp, built)
        raise
    return Assembly(settings, built, router, store, pools, tools, mcp)


def build_engine(upstream: UpstreamSettings) -> Engine:
    """An engine for ``upstream`` (not yet connected: connections open on first use).

    The embedded engine is imported only when asked for, so a gateway in front of vLLM does
    not need llama-cpp-python installed."""
    api_key = upstream.api_key.get_secret_value() if upstream.api_key else None
    if upstream.kind == "openai_chat":
        from kimi_modes.engines.openai_chat import OpenAIChatEngine

        assert upstream.url is not None  # checked by UpstreamSettings
        return OpenAIChatEngine(
            upstream.name, upstream.url, family=upstream.family, dialect=upstream.dialect,
            model=upstream.model, api_key=api_key, reasoning_parser=upstream.reasoning_parser,
            connect_timeout=upstream.connect_timeout, read_timeout=upstream.read_timeout,
            router=upstream.router, session_header=upstream.session_header,
        )
    if upstream.kind == "kimi_raw":
        from kimi_modes.engines.kimi_raw import KimiRawEngine

        assert upstream.url is not None
        return KimiRawEngine(
            upstream.name, upstream.url, family=upstream.family, model=upstream.model,
            api_key=api_key, connect_timeout=upstream.connect_timeout,
            read_timeout=upstream.read_timeout,
        )
    from kimi_modes.engines.embedded import EmbeddedEngine

    # The family is detected from the GGUF's metadata unless the config names one.
    family = upstream.family if "family" in upstream.model_fields_set else None
    return EmbeddedEngine(upstream.model_path, name=upstream.name, n_ctx=upstream.n_ctx,
                          n_threads=upstream.n_threads, family=family,
                          adapter=upstream.adapter)


def build_engines(settings: Settings) -> dict[str, Engine]:
    """One engine per effective upstream (the embedded default when none is configured)."""
    return {u.name: build_engine(u) for u in settings.effective_upstreams()}


def mode_defaults(settings: Settings) -> dict[Mode, ModeDefaults]:
    """Sampling defaults and upstream of each chat mode, from ``[modes.*]``, and every
    mode's objective (Agent: ``[agent]``, Swarm's orchestrator: ``[swarm]``)."""
    m = settings.modes
    return {
        Mode.THINKING: ModeDefaults(m.thinking.temperature, m.thinking.top_p,
                                    m.thinking.upstream, m.thinking.max_tokens,
                                    m.thinking.objective),
        Mode.INSTANT: ModeDefaults(m.instant.temperature, m.instant.top_p,
                                   m.instant.upstream, m.instant.max_tokens,
                                   m.instant.objective),
        Mode.AGENT: ModeDefaults(None, None, objective=settings.agent.objective),
        Mode.SWARM: ModeDefaults(None, None, objective=settings.swarm.objective),
    }


# -- the pieces ----------------------------------------------------------------------------


def _expand(path: str) -> str:
    """``~`` expanded (a settings path; no I/O beyond reading $HOME)."""
    return os.path.expanduser(path)


def _agent_upstream(settings: Settings, engines: Mapping[str, Engine]) -> str:
    """The upstream of the agent's (and by default the orchestrator's) model calls."""
    return settings.agent.upstream or next(iter(engines))


async def _agent_tools(settings: Settings) -> tuple[list[Tool], list[str], McpManager | None]:
    """The built-in tools, the system-prompt notes they need, and the started MCP servers."""
    from kimi_modes.tools.code import code_tools
    from kimi_modes.tools.files import file_tools
    from kimi_modes.tools.sandbox import Sandbox, SandboxLimits
    from kimi_modes.tools.web import web_prompt_note, web_tools

    a = settings.agent
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
    if not a.mcp_config:
        return tools, notes, None
    from kimi_modes.tools.mcp import McpManager

    mcp = McpManager.from_file(_expand(a.mcp_config), call_timeout=a.tool_timeout,
                               output_limit=a.tool_output_limit)
    try:
        await mcp.start()
    except BaseException:
        await mcp.aclose()
        raise
    for server, problem in mcp.problems().items():
        log.warning("MCP server %r left out: %s", server, problem)
    return tools, notes, mcp


def _agent(settings: Settings, engines: Mapping[str, Engine], store: RunStore,
           tools: list[Tool], notes: list[str], mcp: McpManager | None) -> AgentService:
    """Agent mode on the configured upstream, with ``tools`` and the MCP servers' tools."""
    from kimi_modes.protocol import family_info

    a = settings.agent
    upstreams = {u.name: u for u in settings.effective_upstreams()}
    name = _agent_upstream(settings, engines)
    family = upstreams[name].family if name in upstreams else "k2.5"

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
    )


def _pools(settings: Settings, engines: Mapping[str, Engine]) -> dict[str, EnginePool]:
    """The swarm's two pools: the orchestrator's over ``swarm.orchestrator_upstreams``
    (default: the agent's upstream), the workers' over ``swarm.worker_upstreams`` (default:
    all), each member with its upstream's cap and metrics endpoint; a router upstream is a
    router member (no metrics endpoint: it balances its replicas itself)."""
    s = settings.swarm
    return {
        "orchestrator": _pool(settings, engines, "orchestrator", s.orchestrator_upstreams
                              or [_agent_upstream(settings, engines)]),
        "workers": _pool(settings, engines, "workers", s.worker_upstreams or list(engines)),
    }


def _pool(settings: Settings, engines: Mapping[str, Engine], name: str,
          names: list[str]) -> EnginePool:
    from kimi_modes.engines.pool import EnginePool, PoolMember

    upstreams = {u.name: u for u in settings.effective_upstreams()}
    members = []
    for upstream_name in names:
        u = upstreams[upstream_name]
        metrics = u.metrics_url
        if metrics is None and u.kind != "embedded" and u.url and not u.router:
            metrics = metrics_url(u.url)
        members.append(PoolMember(engines[upstream_name], max_concurrency=u.max_concurrency,
                                  metrics_url=metrics or None, router=u.router))
    s = settings.swarm
    return EnginePool(name, members, max_attempts=s.max_attempts,
                      failure_threshold=s.failure_threshold, cooldown=s.cooldown,
                      metrics_interval=s.metrics_interval)


def _swarm(settings: Settings, store: RunStore, agent: AgentService,
           pools: Mapping[str, EnginePool]) -> SwarmService:
    """Swarm mode: the orchestrator on the ``orchestrator`` pool, sub-agents on ``workers``,
    with the agent's tools."""
    s = settings.swarm
    mode = Mode.INSTANT if s.subagent_mode == "instant" else Mode.THINKING
    defaults = mode_defaults(settings)[mode]
    sampling = {k: v for k, v in (("temperature", defaults.temperature),
                                  ("top_p", defaults.top_p)) if v is not None}
    workers = SwarmWorkers(
        pools["workers"], store, workspaces=agent.workspaces, tools_factory=agent.tools_factory,
        settings=WorkerSettings(
            budgets=Budgets(s.subagent_max_steps, None, s.subagent_timeout),
            context=agent.context, thinking=s.subagent_mode == "thinking", sampling=sampling,
            step_retries=s.step_retries, tool_timeout=agent.tool_timeout,
            tool_output_limit=agent.tool_output_limit,
            max_concurrent=s.max_concurrent_subagents, objective=s.subagent_objective),
        system_notes=agent.system_notes,
    )
    return SwarmService(
        pools["orchestrator"], store, workers, workspaces=agent.workspaces,
        budgets=Budgets(s.orchestrator_max_steps, None, s.orchestrator_max_time),
        context=agent.context, max_per_fanout=s.max_subagents_per_fanout,
        max_per_run=s.max_subagents_per_run, step_retries=s.step_retries,
    )


async def _release(store: RunStore | None, swarm: SwarmService | None,
                   pools: Mapping[str, EnginePool], agent: AgentService | None,
                   mcp: McpManager | None, engines: Mapping[str, Engine]) -> None:
    """Close what was built, in the one order: the store first (live runs end as
    ``interrupted`` rather than being cut by their engine, watchers end), the swarm (its
    background resumptions) and its pools, the agent and its MCP servers, the engines last."""
    if store is not None:
        await store.close()
    if swarm is not None:
        await swarm.aclose()
    for pool in pools.values():
        await pool.aclose()
    if agent is not None:
        await agent.aclose()
    if mcp is not None:
        await mcp.aclose()
    for engine in engines.values():
        await engine.aclose()
