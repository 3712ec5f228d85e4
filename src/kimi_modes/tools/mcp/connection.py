"""One MCP server's connection: its process or HTTP session, from start to stop, and calls.

A :class:`McpConnection` lives in its own asyncio task (:meth:`McpConnection.launch`), which
enters and leaves the SDK's context managers (anyio task groups and cancel scopes) itself.
Callers in any task may start, call and close; nothing of the SDK's is ever exited in a task
other than the one that entered it (the cause of "Attempted to exit cancel scope in a
different task"). A transport that fails cancels only its connection's task, never a
caller's. Requires an asyncio event loop (uvloop included).

- A start never raises: a server that cannot be spawned, exits, hangs, refuses the connection
  or answers nonsense ends in state ``failed`` with a message a person can act on (with the
  tail of a stdio server's stderr).
- :meth:`McpConnection.call` never raises for anything the server does (see
  :mod:`kimi_modes.tools.mcp.results` for how results are shown); cancelling the caller
  cancels the call (the SDK tells the server).
- :meth:`McpConnection.stop`: a stdio server gets its stdin closed, then SIGTERM, then
  SIGKILL to its whole process group (the SDK's shutdown sequence); an HTTP session is ended
  with a ``DELETE``.

Restart policy: a server that fails its *first* start is not retried (fix it and restart the
gateway). One that was ready and then died (process exited, connection lost, a call found it
dead) is reconnected after 1, 2, 4, ... seconds (at most 30); after ``max_restarts`` attempts
in a row that fail or die again within a minute it is given up and marked ``failed``. A
connection that stayed up for a minute resets the count. ``restart=False`` turns this off.
While it is down its tools are not listed and calls to it wait for it (within their timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TextIO

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, Implementation
from mcp_types import Tool as McpToolInfo

from kimi_modes import __version__
from kimi_modes.tools.base import ToolResult
from kimi_modes.tools.descriptors import seal_inherited
from kimi_modes.tools.mcp.config import McpServerConfig, mcp_tool_name
from kimi_modes.tools.mcp.results import (
    closed_message,
    convert_result,
    describe_failure,
    error_result,
)

__all__ = ["HEALTHY_AFTER", "TIMEOUT_GRACE", "McpConnection", "McpServerStatus", "ServerState"]

log = logging.getLogger(__name__)

ServerState = Literal["pending", "starting", "ready", "restarting", "failed", "stopped"]

#: A connection that stayed up this long resets the count of restarts in a row.
HEALTHY_AFTER = 60.0
#: Extra time the outer backstops give a call beyond its own timeout, so the SDK's timeout
#: (which also tells the server to stop) fires first.
TIMEOUT_GRACE = 2.0
_MAX_BACKOFF = 30.0
_LIST_PAGES = 100
_STDERR_KEEP = 8192
_STDERR_SHOW = 600
_CLIENT_INFO = Implementation(name="kimi-modes", version=__version__)
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class McpServerStatus:
    """Where one server stands.

    ``state``: ``pending`` (not started), ``starting``, ``ready``, ``restarting`` (died, being
    reconnected), ``failed`` (left out; ``message`` says why) or ``stopped`` (closed).
    ``message`` is the last problem in words (``None`` if there was none); ``tools`` the
    namespaced names it offers while ready; ``restarts`` how many reconnections were made.
    """

    name: str
    transport: str
    state: ServerState
    message: str | None
    tools: tuple[str, ...]
    restarts: int



class McpConnection:
    """One configured server: a supervising task that (re)connects, and the calls into it.

    Made and driven by :class:`~kimi_modes.tools.mcp.manager.McpManager`: :meth:`launch`
    once, :meth:`wait_first_start`, :meth:`call` from any task, :meth:`stop` then await
    :attr:`task`. The guarantees are in the module docstring."""

    def __init__(self, config: McpServerConfig, *, start_timeout: float, call_timeout: float,
                 restart: bool, max_restarts: int) -> None:
        self.config = config
        self.name = config.name
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.restart = restart
        self.max_restarts = max_restarts
        self.state: ServerState = "pending"
        self.message: str | None = None
        self.restarts = 0
        self.tools: dict[str, McpToolInfo] = {}
        self.task: asyncio.Task[None] | None = None
        self._client: Client | None = None
        self._scope: anyio.CancelScope | None = None
        self._lost: anyio.Event | None = None
        self._lost_reason: str | None = None
        self._closing = False
        self._closed_at: float | None = None  # anyio clock time of stop()
        self._first_settled = asyncio.Event()
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()

    # ----------------------------------------------------------------- state

    def snapshot(self) -> McpServerStatus:
        tools = tuple(self.tools) if self.state == "ready" else ()
        return McpServerStatus(self.name, self.config.transport, self.state, self.message,
                               tools, self.restarts)

    def _set(self, state: ServerState, message: str | None = None) -> None:
        self.state = state
        if message is not None:
            self.message = message
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if state in ("ready", "failed", "stopped"):
            self._first_settled.set()

    # ----------------------------------------------------------------- lifecycle

    def launch(self) -> None:
        if self.task is None and not self._closing:
            self._set("starting")
            self.task = asyncio.create_task(self._supervise(), name=f"mcp-server:{self.name}")

    async def wait_first_start(self) -> None:
        """Wait until the first start has succeeded or failed; at most about the start timeout
        (a server that hangs is reported at once, its clean-up goes on in the background)."""
        try:
            await asyncio.wait_for(self._first_settled.wait(), self.start_timeout + 0.25)
        except TimeoutError:
            if self.state == "starting":
                self._set("failed", self._timeout_message())
                log.warning("MCP server %r left out: %s", self.name, self.message)

    def stop(self) -> None:
        """Ask the supervisor to disconnect and end (it is awaited by the manager)."""
        self._closing = True
        if self._closed_at is None:
            self._closed_at = anyio.current_time()
        if self._scope is not None:
            self._scope.cancel()
        self._wake.set()
        if self.task is None:
            self._set("stopped")

    def _timeout_message(self) -> str:
        return f"did not finish starting within {self.start_timeout:g} s"

    async def _supervise(self) -> None:
        in_a_row = 0
        ever_ready = False
        try:
            while not self._closing:
                problem, up_for = await self._connect_once()
                if up_for is None and not ever_ready:
                    if self._closing and self.state != "failed":
                        break  # closed during its first start
                    if self.state != "failed" or self.message != problem:
                        self._set("failed", problem)
                        log.warning("MCP server %r left out: %s", self.name, problem)
                    return
                if self._closing:
                    break
                ever_ready = True
                if not self.restart:
                    self._set("failed", f"{problem} (restarts are off)")
                    log.warning("MCP server %r is down: %s", self.name, problem)
                    return
                if up_for is not None and up_for >= HEALTHY_AFTER:
                    in_a_row = 0
                in_a_row += 1
                if in_a_row > self.max_restarts:
                    self._set("failed", f"{problem}; gave up after {self.max_restarts} "
                                        "restarts in a row")
                    log.warning("MCP server %r left out: %s", self.name, self.message)
                    return
                delay = min(2.0 ** (in_a_row - 1), _MAX_BACKOFF)
                self._set("restarting", problem)
                log.warning("MCP server %r is down (%s); restarting in %g s", self.name,
                            problem, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if not self._closing:
                    self.restarts += 1
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("MCP server %r: supervisor failed", self.name)
            self._set("failed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if self._closing and self.state != "failed":
                self._set("stopped")
            self._first_settled.set()

    async def _connect_once(self) -> tuple[str, float | None]:
        """One connection, from spawn/connect to its end, all in this task.

        Returns what ended it in words and how long it was ready (``None``: never)."""
        lost = anyio.Event()
        self._lost, self._lost_reason = lost, None
        tail = _StderrTail(self.name) if self.config.transport == "stdio" else None
        ready_at: float | None = None
        problem = "stopped"
        deadline = anyio.current_time() + self.start_timeout
        try:
            if tail is not None:
                await tail.start()
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                if self._closing:
                    scope.cancel()
                try:
                    async with AsyncExitStack() as stack:
                        transport = await self._transport(stack, lost, tail)
                        client = Client(transport, cache=None, client_info=_CLIENT_INFO)
                        await stack.enter_async_context(client)
                        self.tools = _namespaced(self.name, await _list_tools(client))
                        scope.deadline = math.inf
                        ready_at = time.monotonic()
                        self._client = client
                        self._set("ready")
                        log.info("MCP server %r ready with %d tools (%s)", self.name,
                                 len(self.tools), client.protocol_version)
                        await lost.wait()
                        self._client = None
                        problem = self._lost_reason or closed_message(self.config)
                except Exception as exc:
                    problem = describe_failure(exc, self.config)
            if scope.cancelled_caught and ready_at is None and (
                    self._closed_at is None or self._closed_at >= deadline):
                problem = self._timeout_message()
        except Exception as exc:  # e.g. the stderr pipe could not be made
            problem = describe_failure(exc, self.config)
        finally:
            self._scope = None
            self._client = None
            self.tools = {}
            if self.state == "ready":  # until the supervisor says what happens next
                self._set("restarting")
            if tail is not None:
                await tail.finish()
        if tail is not None and (said := tail.text()) and problem != "stopped":
            problem = f"{problem}; stderr: {said}"
        return problem, None if ready_at is None else time.monotonic() - ready_at

    async def _transport(self, stack: AsyncExitStack, lost: anyio.Event,
                         tail: _StderrTail | None) -> _Transport:
        config = self.config
        inner: AbstractAsyncContextManager[Any]
        if config.transport == "stdio":
            assert config.command is not None and tail is not None
            seal_inherited()  # the SDK cannot pass close_fds, which uvloop ignores anyway
            params = StdioServerParameters(command=config.command, args=list(config.args),
                                           env=dict(config.env) or None, cwd=config.cwd)
            inner = stdio_client(params, errlog=tail.file)
        else:
            assert config.url is not None
            http = httpx2.AsyncClient(headers=dict(config.headers),
                                      timeout=httpx2.Timeout(30.0, read=300.0))
            await stack.enter_async_context(http)
            inner = streamable_http_client(config.url, http_client=http)
        return _watched(inner, lost)

    def _mark_lost(self, client: Client, reason: str) -> None:
        """A call found the connection dead: end it so that the supervisor reconnects."""
        if self._client is client and self._lost is not None and not self._lost.is_set():
            self._lost_reason = reason
            self._client = None
            self._lost.set()

    # ----------------------------------------------------------------- calls

    async def _ready_client(self, deadline: float) -> Client | None:
        while True:
            client = self._client
            if self.state == "ready" and client is not None:
                return client
            if self._closing or self.state in ("failed", "stopped", "pending"):
                return None
            changed = self._changed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return None

    async def call(self, tool: str, arguments: dict[str, Any], seconds: float,
                   limit: int) -> ToolResult:
        deadline = time.monotonic() + seconds
        where = f"{tool!r} on MCP server {self.name!r}"
        meta: dict[str, Any] = {"mcp_server": self.name, "mcp_tool": tool}
        client = await self._ready_client(deadline)
        if client is None:
            if self.state in ("starting", "restarting") and not self._closing:
                why = f"it is {self.state} and was not ready within {seconds:g} s"
            else:
                why = self.message or self.state
            return error_result(
                f"Error: cannot call {where}: the server is not available ({why}).",
                "unavailable", meta)
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            async with asyncio.timeout(remaining + TIMEOUT_GRACE):
                result = await client.call_tool(tool, arguments, read_timeout_seconds=remaining)
        except TimeoutError:
            return self._timed_out(where, seconds, meta)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                return self._timed_out(where, seconds, meta)
            if exc.code == CONNECTION_CLOSED or self._client is not client:
                return self._died(client, where, meta)
            return error_result(f"Error: {where} failed: MCP error {exc.code}: {exc.message}",
                                "mcp_error", meta)
        except Exception as exc:
            if self._client is not client:
                return self._died(client, where, meta)
            return error_result(f"Error: {where} failed: {type(exc).__name__}: {exc}",
                                "exception", meta)
        return convert_result(result, limit, meta)

    def _timed_out(self, where: str, timeout: float, meta: dict[str, Any]) -> ToolResult:
        return error_result(
            f"Error: {where} did not finish within {timeout:g} s; it was cancelled.",
            "timeout", meta)

    def _died(self, client: Client, where: str, meta: dict[str, Any]) -> ToolResult:
        if self._closing:
            return error_result(
                f"Error: {where} was interrupted: the MCP bridge is shutting down.",
                "unavailable", meta)
        self._mark_lost(client, f"the connection was lost during a call to {where.split()[0]}")
        then = " It is being restarted; try again shortly." if self.restart else ""
        return error_result(f"Error: MCP server {self.name!r} died or dropped the connection "
                            f"during the call to {where.split()[0]}.{then}", "server_died", meta)



# --------------------------------------------------------------------------- helpers


async def _list_tools(client: Client) -> list[McpToolInfo]:
    tools: list[McpToolInfo] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _namespaced(server: str, tools: list[McpToolInfo]) -> dict[str, McpToolInfo]:
    out: dict[str, McpToolInfo] = {}
    for info in tools:
        name = mcp_tool_name(server, info.name)
        if name in out:  # two remote names that sanitise alike
            digest = hashlib.sha256(info.name.encode()).hexdigest()[:6]
            name = f"{name[:57]}_{digest}"
        if not _NAME_OK.match(name) or name in out:
            log.warning("MCP server %r: tool %r left out (no usable name)", server, info.name)
            continue
        out[name] = info
    return out


# --------------------------------------------------------------------------- transport


_Transport = AbstractAsyncContextManager[Any]


@asynccontextmanager
async def _watched(inner: AbstractAsyncContextManager[Any],
                   lost: anyio.Event) -> AsyncIterator[tuple[Any, Any]]:
    """``inner``'s streams, with the read stream setting ``lost`` at end of stream (a stdio
    server that exited), so an idle connection's death is noticed without a call."""
    async with inner as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, lost), write_stream


class _WatchedReadStream:
    """Forwards the SDK's ``ReadStream`` protocol; sets ``lost`` when the stream ends."""

    def __init__(self, inner: Any, lost: anyio.Event) -> None:
        self._inner = inner
        self._lost = lost

    @property
    def last_context(self) -> Any:  # the SDK reads it with getattr on context streams
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._lost.set()
            raise
        return item

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class _StderrTail(asyncio.Protocol):
    """A pipe for a stdio server's stderr: the last bytes are kept for error messages and
    each line is logged at DEBUG under the server's name."""

    def __init__(self, server: str) -> None:
        self._server = server
        self._kept = bytearray()
        self._line = bytearray()
        self._eof = asyncio.Event()
        self._transport: asyncio.BaseTransport | None = None
        read_fd, write_fd = os.pipe()
        self._read_fd: int | None = read_fd
        self.file: TextIO = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._read_fd is not None
        pipe = os.fdopen(self._read_fd, "rb", buffering=0)
        self._read_fd = None
        try:
            await loop.connect_read_pipe(lambda: self, pipe)
        except BaseException:
            pipe.close()
            raise

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._kept += data
        if len(self._kept) > _STDERR_KEEP:
            del self._kept[:-_STDERR_KEEP]
        self._line += data
        *lines, rest = self._line.split(b"\n")
        self._line = bytearray(rest[-_STDERR_KEEP:])
        for line in lines:
            if line.strip():
                log.debug("[%s stderr] %s", self._server,
                          line.decode("utf-8", "replace").rstrip())

    def eof_received(self) -> bool | None:
        self._eof.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof.set()

    async def finish(self) -> None:
        """Close our end of the pipe, read what is left (briefly), release everything."""
        with contextlib.suppress(OSError):
            self.file.close()
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        if self._transport is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof.wait(), 0.5)
            self._transport.close()

    def text(self) -> str:
        """The last few hundred characters the server wrote to stderr, on one line."""
        said = self._kept.decode("utf-8", "replace").strip()
        said = " | ".join(line.strip() for line in said.splitlines() if line.strip())
        return said if len(said) <= _STDERR_SHOW else "..." + said[-_STDERR_SHOW:]
