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
  the settings). Remote engines open their connections on first use; only a remote upstream
  that names no family (neither ``family`` nor a ``model`` naming one) is asked for its
  ``/v1/models`` before, to learn the family it serves (:func:`with_families`).
- The served model ids are a :class:`~kimi_modes.modes.catalog.Catalog` built from the
  upstreams' families (:func:`build_catalog`); the router gets it, and ``/v1/models`` lists
  it. Agent and Swarm mode exist per served family.
- The embedded engine is imported only when an upstream asks for it, and every
  :class:`Startable` engine is started (the embedded one loads its model) before
  :func:`assemble` returns.
- With ``runs=True`` the run store is opened and Agent and Swarm modes are built on it: the
  built-in tools (sandboxed python and shell, files, web), the MCP servers of
  ``agent.mcp_config`` (one that fails to start is logged and left out), and the swarm's
  engine pools (``orchestrator`` and ``workers`` for the default model,
  ``orchestrator:<family>`` / ``workers:<family>`` for the others). The memories between
  requests (the reasoning Instant and Thinking restore, the hidden steps of paused Agent
  runs: :mod:`kimi_modes.modes.memory`) are kept in the run store, bounded by
  ``[store] reasoning_entries`` and ``transcript_entries``, so every process on that store
  shares them. With ``runs=False`` only Instant and Thinking exist, the reasoning memory
  lives in this process, and nothing is written to disk.
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

from kimi_modes.config import ConfigError, Settings, UpstreamSettings, family_from_model_name
from kimi_modes.endpoint import metrics_url
from kimi_modes.engines.base import Engine, EngineError, Startable
from kimi_modes.modes.agent.loop import Budgets, ContextPolicy
from kimi_modes.modes.agent.service import AgentService
from kimi_modes.modes.catalog import Catalog, Mode, model_id
from kimi_modes.modes.chat import ModeDefaults
from kimi_modes.modes.memory import ReasoningMemory, TranscriptMemory
from kimi_modes.modes.router import Router
from kimi_modes.modes.swarm import LaunchRamp, SwarmService, SwarmWorkers, WorkerSettings
from kimi_modes.protocol.families import Family, family_info
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
        await _release(self.store, self.router.swarms, self.pools, self.router.agents, self.mcp,
                       self.engines)

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
    if engines is None:
        settings = await with_families(settings)
    built = dict(engines) if engines is not None else build_engines(settings)
    store: RunStore | None = None
    mcp: McpManager | None = None
    pools: dict[str, EnginePool] = {}
    tools: list[Tool] = []
    agents: dict[Family, AgentService] = {}
    swarms: dict[Family, SwarmService] = {}
    try:
        catalog = build_catalog(settings, built)
        for engine in built.values():
            if isinstance(engine, Startable):
                await engine.start()
        if runs:
            store = RunStore(settings.store.url or settings.agent.runs_db,
                             lease_seconds=settings.store.lease_seconds)
            await store.open()
            tools, notes, mcp = await _agent_tools(settings)
            transcripts = TranscriptMemory(store.memories,
                                           limit=settings.store.transcript_entries)
            agents = {f: _agent(settings, catalog, f, built, store, tools, notes, mcp,
                                transcripts) for f in catalog.upstreams}
            swarms = _swarms(settings, catalog, built, store, agents, pools)
        memory = ReasoningMemory(store.memories if store is not None else None,
                                 limit=settings.store.reasoning_entries)
        router = Router(catalog, built, mode_defaults(settings), memory=memory, agents=agents,
                        swarms=swarms)
    except BaseException:
        await _release(store, swarms, pools, agents, mcp, built)
        raise
    return Assembly(settings, built, router, store, pools, tools, mcp)


def build_catalog(settings: Settings, engines: Mapping[str, Engine]) -> Catalog:
    """The served model ids: each upstream with an engine, under the family it serves (an
    engine given for an upstream the settings do not name serves ``k2.5``)."""
    families = {u.name: u.served_family for u in settings.effective_upstreams()}
    return Catalog([(name, families.get(name, Family.K2_5)) for name in engines],
                   default=settings.default_model)


async def with_families(settings: Settings) -> Settings:
    """``settings`` with the family of every remote upstream that names none (neither
    ``family`` nor a ``model`` naming one) read from the id its ``/v1/models`` lists. An
    upstream that cannot be asked keeps ``k2.5``, with a warning."""
    from kimi_modes.engines._http import UpstreamClient

    upstreams = []
    for u in settings.upstreams:
        if u.family is not None or u.kind == "embedded" or u.url is None:
            upstreams.append(u)
            continue
        client = UpstreamClient(u.name, u.url, model=u.model, api_key=(
            u.api_key.get_secret_value() if u.api_key else None), connect_timeout=u.connect_timeout,
            read_timeout=u.connect_timeout)
        try:
            name = await client.model_name()
        except EngineError as exc:
            log.warning("upstream %r: cannot read its model from /v1/models (%s); assuming "
                        "k2.5 (set family to say)", u.name, exc)
            name = ""
        finally:
            await client.aclose()
        family = family_from_model_name(name)
        if family is None and name:
            log.warning("upstream %r serves %r, which names no Kimi family; assuming k2.5 "
                        "(set family to say)", u.name, name)
        upstreams.append(u.model_copy(update={"family": family or Family.K2_5}))
    return settings.model_copy(update={"upstreams": upstreams})


def build_engine(upstream: UpstreamSettings) -> Engine:
    """An engine for ``upstream`` (not yet connected: connections open on first use).

    The embedded engine is imported only when asked for, so a gateway in front of vLLM does
    not need llama-cpp-python installed."""
    api_key = upstream.api_key.get_secret_value() if upstream.api_key else None
    if upstream.kind == "openai_chat":
        from kimi_modes.engines.openai_chat import OpenAIChatEngine

        assert upstream.url is not None  # checked by UpstreamSettings
        return OpenAIChatEngine(
            upstream.name, upstream.url, family=upstream.served_family, dialect=upstream.dialect,
            model=upstream.model, api_key=api_key, reasoning_parser=upstream.reasoning_parser,
            connect_timeout=upstream.connect_timeout, read_timeout=upstream.read_timeout,
            router=upstream.router, session_header=upstream.session_header,
        )
    if upstream.kind == "kimi_raw":
        from kimi_modes.engines.kimi_raw import KimiRawEngine

        assert upstream.url is not None
        return KimiRawEngine(
            upstream.name, upstream.url, family=upstream.served_family, model=upstream.model,
            api_key=api_key, connect_timeout=upstream.connect_timeout,
            read_timeout=upstream.read_timeout,
        )
    from kimi_modes.engines.embedded import EmbeddedEngine

    # The family is detected from the GGUF's metadata unless the config names one.
    family = upstream.family
    return EmbeddedEngine(upstream.model_path, name=upstream.name, n_ctx=upstream.n_ctx,
                          n_threads=upstream.n_threads, family=family,
                          adapter=upstream.adapter)


def build_engines(settings: Settings) -> dict[str, Engine]:
    """One engine per effective upstream (the embedded default when none is configured)."""
    return {u.name: build_engine(u) for u in settings.effective_upstreams()}


def mode_defaults(settings: Settings) -> dict[Mode, ModeDefaults]:
    """Sampling defaults and upstream of each chat mode, from ``[modes.*]`` (``None``: the
    served family's recommended values, filled in by the router), and every mode's
    objective (Agent: ``[agent]``, Swarm's orchestrator: ``[swarm]``)."""
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


def _agent_upstream(settings: Settings, catalog: Catalog, family: Family) -> str:
    """The upstream of ``family``'s agent (and by default its orchestrator's) model calls:
    ``agent.upstream`` when it serves that family, else the family's first upstream."""
    serving = catalog.upstreams[family]
    wanted = settings.agent.upstream
    return wanted if wanted in serving else serving[0]


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


def _agent(settings: Settings, catalog: Catalog, family: Family,
           engines: Mapping[str, Engine], store: RunStore, tools: list[Tool],
           notes: list[str], mcp: McpManager | None,
           transcripts: TranscriptMemory) -> AgentService:
    """Agent mode of ``family`` on its agent upstream, with ``tools`` and the MCP servers'
    tools, its paused runs' hidden steps in ``transcripts``."""
    a = settings.agent

    def tools_factory() -> list[Tool]:
        return [*tools, *(mcp.tools() if mcp is not None else ())]

    window = a.context_window or family_info(family).context_window
    return AgentService(
        engines[_agent_upstream(settings, catalog, family)],
        store,
        workspaces=Path(_expand(a.workspaces)),
        tools_factory=tools_factory,
        budgets=Budgets(a.max_steps, a.max_tokens, a.max_time),
        context=ContextPolicy(window=window, keep_latest=a.keep_tool_results,
                              step_output_tokens=min(16_384, window // 8)),
        tool_timeout=a.tool_timeout,
        tool_output_limit=a.tool_output_limit,
        system_notes=notes,
        model_id=model_id(family, Mode.AGENT),
        transcripts=transcripts,
    )


def _swarms(settings: Settings, catalog: Catalog, engines: Mapping[str, Engine],
            store: RunStore, agents: Mapping[Family, AgentService],
            pools: dict[str, EnginePool]) -> dict[Family, SwarmService]:
    """Swarm mode of every served model: its orchestrator on that model's upstreams, its
    sub-agents on ``swarm.worker_model``'s (default: the same model). Swarms whose
    sub-agents run on the same model share one :class:`SwarmWorkers`. Fills ``pools`` (a
    router upstream is a router member: it balances its replicas itself): the
    default model's are ``orchestrator`` and ``workers``, the others' carry the family
    (``orchestrator:k3``, ``workers:k2.6``)."""
    s = settings.swarm
    if s.worker_model is not None and s.worker_model not in catalog.upstreams:
        raise ConfigError(f"swarm.worker_model is {s.worker_model.value!r}, which no upstream "
                          f"serves (served: {', '.join(f.value for f in catalog.upstreams)})")
    workers: dict[Family, SwarmWorkers] = {}
    swarms: dict[Family, SwarmService] = {}
    for family in catalog.upstreams:
        worker_family = s.worker_model or family
        if worker_family not in workers:
            name = _pool_name("workers", catalog, worker_family)
            pools[name] = _pool(settings, engines, name, _serving(
                catalog, worker_family, s.worker_upstreams)
                or list(catalog.upstreams[worker_family]))
            workers[worker_family] = _workers(settings, pools[name], store, agents[family],
                                              worker_family)
        name = _pool_name("orchestrator", catalog, family)
        pools[name] = _pool(settings, engines, name, _serving(
            catalog, family, s.orchestrator_upstreams)
            or [_agent_upstream(settings, catalog, family)])
        swarms[family] = _swarm(settings, family, pools[name], store, agents[family],
                                workers[worker_family])
    return swarms


def _pool_name(role: str, catalog: Catalog, family: Family) -> str:
    return role if family == catalog.default else f"{role}:{family.value}"


def _serving(catalog: Catalog, family: Family, names: list[str]) -> list[str]:
    """The upstreams of ``names`` that serve ``family`` (all that serve it when ``names`` is
    empty)."""
    serving = catalog.upstreams[family]
    return [n for n in names if n in serving] if names else list(serving)


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


def _workers(settings: Settings, pool: EnginePool, store: RunStore, agent: AgentService,
             family: Family) -> SwarmWorkers:
    """Sub-agents on ``pool`` (serving ``family``) in ``swarm.subagent_mode`` (thinking
    when the family always reasons, instant when it cannot), with the agent's tools."""
    s = settings.swarm
    thinking = family_info(family).thinks(s.subagent_mode == "thinking")
    defaults = mode_defaults(settings)[Mode.THINKING if thinking else Mode.INSTANT]
    recommended = family_info(family).default_sampling(thinking)
    sampling = {k: v for k, v in (
        ("temperature", recommended.temperature if defaults.temperature is None
         else defaults.temperature),
        ("top_p", recommended.top_p if defaults.top_p is None else defaults.top_p),
    ) if v is not None}
    return SwarmWorkers(
        pool, store, workspaces=agent.workspaces, tools_factory=agent.tools_factory,
        settings=WorkerSettings(
            budgets=Budgets(s.subagent_max_steps, None, s.subagent_timeout),
            context=agent.context, thinking=thinking, sampling=sampling,
            step_retries=s.step_retries, tool_timeout=agent.tool_timeout,
            tool_output_limit=agent.tool_output_limit,
            max_concurrent=s.max_concurrent_subagents, objective=s.subagent_objective,
            model_id=model_id(family, Mode.THINKING if thinking else Mode.INSTANT),
            ramp=LaunchRamp(s.launch_burst, s.launch_interval) if s.launch_ramp else None),
        system_notes=agent.system_notes,
    )


def _swarm(settings: Settings, family: Family, pool: EnginePool, store: RunStore,
           agent: AgentService, workers: SwarmWorkers) -> SwarmService:
    """Swarm mode of ``family``: the orchestrator on ``pool``, sub-agents on ``workers``."""
    s = settings.swarm
    return SwarmService(
        pool, store, workers, workspaces=agent.workspaces,
        budgets=Budgets(s.orchestrator_max_steps, None, s.orchestrator_max_time),
        context=agent.context, max_per_fanout=s.max_subagents_per_fanout,
        max_per_run=s.max_subagents_per_run, step_retries=s.step_retries,
        model_id=model_id(family, Mode.SWARM),
    )


async def _release(store: RunStore | None, swarms: Mapping[Family, SwarmService],
                   pools: Mapping[str, EnginePool], agents: Mapping[Family, AgentService],
                   mcp: McpManager | None, engines: Mapping[str, Engine]) -> None:
    """Close what was built, in the one order: the store first (live runs end as
    ``interrupted`` rather than being cut by their engine, watchers end), the swarms (their
    background resumptions) and their pools, the agents and the MCP servers, the engines
    last."""
    if store is not None:
        await store.close()
    for swarm in swarms.values():
        await swarm.aclose()
    for pool in pools.values():
        await pool.aclose()
    for agent in agents.values():
        await agent.aclose()
    if mcp is not None:
        await mcp.aclose()
    for engine in engines.values():
        await engine.aclose()
