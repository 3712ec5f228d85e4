"""Live connections to MCP servers, and their tools as :class:`~kimi_modes.tools.base.Tool`\\ s.

:class:`McpManager` is made once per gateway (MCP servers are shared by every run, one process
or HTTP session per server) and promises:

- :meth:`McpManager.start` connects to every server concurrently and returns once each is
  ready or has failed, after at most about its start timeout. It never raises for a server:
  one that cannot be spawned, exits, hangs, refuses the connection or answers nonsense is
  logged, listed by :meth:`~McpManager.status` / :meth:`~McpManager.problems` with a message
  a person can act on (with the tail of a stdio server's stderr), and left out.
- :meth:`McpManager.tools` lists the tools of the servers that are ready now, named
  ``server__tool`` (``^[A-Za-z0-9_-]{1,64}$``), description and input schema passed through.
- A call (:meth:`McpManager.call_tool`, or a tool's ``run``) never raises for anything the
  server does: a tool error (``isError``), an MCP error, a server that dies mid-call, a call
  that outlives its timeout, a server that is down all come back as
  ``ToolResult(is_error=True)``. Text content is joined; images, audio and binary resources
  are described, not inlined; the output is cut to ``output_limit`` characters. Cancelling
  the caller cancels the call (the SDK tells the server).
- A server that dies after it was ready is restarted in the background (see *Restart policy*);
  while it is down its tools are not listed and calls to it wait for it (within their timeout).
- :meth:`McpManager.aclose` stops everything: stdio servers get their stdin closed, then
  SIGTERM, then SIGKILL to their whole process group (the SDK's shutdown sequence), so no
  server process outlives the manager; HTTP sessions are ended with a ``DELETE``.
- A stdio server gets stdin, stdout and stderr and no other descriptor of ours: every
  descriptor is made non-inheritable before it starts (``tools/descriptors.py``; uvloop
  ignores ``close_fds``).

Each server is one :class:`~kimi_modes.tools.mcp.connection.McpConnection` in its own task;
its docstring has the task model and the restart policy. Requires an asyncio event loop
(uvloop included).

Example::

    manager = McpManager.from_file("mcp.json", call_timeout=60)
    await manager.start()
    print(manager.problems())           # {"broken": "cannot run 'nope': not found"}
    toolset = Toolset([*builtin_tools, *manager.tools()])
    ...
    await manager.aclose()
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from mcp_types import Tool as McpToolInfo

from kimi_modes.tools.base import RunContext, ToolResult
from kimi_modes.tools.mcp.config import McpServerConfig, load_mcp_config
from kimi_modes.tools.mcp.connection import TIMEOUT_GRACE, McpConnection, McpServerStatus
from kimi_modes.tools.mcp.results import error_result

__all__ = ["McpManager", "McpTool"]

log = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT = 30.0
DEFAULT_CALL_TIMEOUT = 120.0
DEFAULT_OUTPUT_LIMIT = 16_000
DEFAULT_MAX_RESTARTS = 3

_CLOSE_TIMEOUT = 10.0


class McpTool:
    """One tool of one MCP server, as the agent loop sees it.

    ``name`` is ``server__tool``; ``description`` and ``parameters`` (the tool's
    ``inputSchema``) are the server's. ``timeout`` is the call timeout plus a little, so
    that the call's own timeout (which gives the better message) fires first.
    ``run`` ignores the run context: MCP servers are shared by all runs."""

    def __init__(self, manager: McpManager, server: str, info: McpToolInfo, name: str,
                 call_timeout: float) -> None:
        self.name = name
        self.server = server
        self.remote_name = info.name
        self.description = info.description or info.title or f"{info.name} (MCP server {server})"
        schema = dict(info.input_schema) if isinstance(info.input_schema, dict) else {}
        schema.setdefault("type", "object")
        self.parameters: dict[str, Any] = schema
        self.timeout: float | None = call_timeout + TIMEOUT_GRACE
        self._manager = manager

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return await self._manager.call_tool(self.server, self.remote_name, arguments)

    def __repr__(self) -> str:
        return f"McpTool({self.name!r})"


class McpManager:
    """The MCP servers of one gateway: start, list tools, call, status, close.

    ``start_timeout`` bounds each server's start (spawn or connect, handshake, tool listing);
    ``call_timeout`` bounds each call; ``output_limit`` is the most characters a result keeps
    (head and tail, with a marker); ``restart`` / ``max_restarts``: see the module docstring.
    A server's ``startTimeout`` / ``callTimeout`` in the config override the first two.
    The guarantees are in the module docstring. Also an async context manager
    (``start`` on entry, ``aclose`` on exit).
    """

    def __init__(
        self,
        servers: Iterable[McpServerConfig],
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        restart: bool = True,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
    ) -> None:
        self.output_limit = output_limit
        self._servers: dict[str, McpConnection] = {}
        for config in servers:
            if config.name in self._servers:
                raise ValueError(f"two MCP servers are named {config.name!r}")
            self._servers[config.name] = McpConnection(
                config,
                start_timeout=config.start_timeout or start_timeout,
                call_timeout=config.call_timeout or call_timeout,
                restart=restart,
                max_restarts=max_restarts,
            )
        self._started = False
        self._closed = False

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> McpManager:
        """A manager for the servers in an ``{"mcpServers": ...}`` file; ``options`` go to the
        constructor. Raises :class:`~kimi_modes.tools.mcp.config.McpConfigError` for a file
        that is missing or malformed."""
        return cls(load_mcp_config(path), **options)

    @property
    def names(self) -> list[str]:
        """The configured servers' names, in config order."""
        return list(self._servers)

    async def start(self) -> None:
        """Connect to every server concurrently; return when each is ready or has failed.

        Never raises for a server's failure (see :meth:`problems`). Calling it again waits
        for the first start; after :meth:`aclose` it does nothing."""
        if self._closed:
            return
        if not self._started:
            self._started = True
            for server in self._servers.values():
                server.launch()
        await asyncio.gather(*(server.wait_first_start() for server in self._servers.values()))

    def tools(self) -> list[McpTool]:
        """The tools of the servers that are ready now, in config order."""
        out: list[McpTool] = []
        for server in self._servers.values():
            if server.state == "ready":
                out.extend(self._wrap(server))
        return out

    def _wrap(self, server: McpConnection) -> list[McpTool]:
        return [McpTool(self, server.name, info, name, server.call_timeout)
                for name, info in server.tools.items()]

    def status(self) -> list[McpServerStatus]:
        """Every configured server's state, in config order."""
        return [server.snapshot() for server in self._servers.values()]

    def problems(self) -> dict[str, str]:
        """Servers that are not ready, by name, with what went wrong in words."""
        return {s.name: s.message or s.state for s in self.status() if s.state != "ready"}

    async def call_tool(self, server: str, tool: str, arguments: dict[str, Any], *,
                        call_timeout: float | None = None) -> ToolResult:
        """Call ``tool`` (its name on the server, not namespaced) on ``server``.

        Never raises except for the caller's own cancellation; see the module docstring.
        ``call_timeout`` (seconds) defaults to the server's call timeout and includes any wait for a
        server that is restarting."""
        found = self._servers.get(server)
        if found is None:
            return error_result(f"Error: there is no MCP server named {server!r}.",
                                "unknown_server")
        if self._closed:
            return error_result("Error: the MCP bridge has been shut down.", "unavailable")
        return await found.call(tool, arguments, call_timeout or found.call_timeout,
                                self.output_limit)

    async def aclose(self) -> None:
        """Stop every server and wait for them (bounded); never raises. Idempotent."""
        self._closed = True
        servers = list(self._servers.values())
        for server in servers:
            server.stop()
        tasks = [s.task for s in servers if s.task is not None and not s.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT)
        for task in pending:  # only a wedged transport gets here; the SDK shields its shutdown
            log.warning("MCP server task %s did not stop in %g s; cancelling it",
                        task.get_name(), _CLOSE_TIMEOUT)
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)

    async def __aenter__(self) -> McpManager:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
