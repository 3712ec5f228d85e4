"""An MCP stdio server gets only the descriptors meant for it (its stdin, stdout and stderr),
on asyncio and on uvloop (what ``kimi-modes serve`` runs; uvloop ignores ``close_fds``), while
the process starting it holds an inheritable descriptor of a directory, as a gateway started
by ``flock DIR kimi-modes serve`` does."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop

from kimi_modes.tools import RunContext
from kimi_modes.tools.mcp import McpManager, McpServerConfig

SERVER = Path(__file__).resolve().parent / "mcp_servers" / "descriptors.py"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_stdio_server_gets_no_inherited_descriptor(loop: str, tmp_path: Path) -> None:
    secret_dir = tmp_path / "config"
    secret_dir.mkdir()
    fd = os.open(secret_dir, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)

    async def main() -> str:
        manager = McpManager([McpServerConfig.stdio("fds", sys.executable, [str(SERVER)])],
                             start_timeout=30)
        await manager.start()
        try:
            assert manager.problems() == {}
            tool = next(tool for tool in manager.tools() if tool.name == "fds__descriptors")
            result = await tool.run({}, RunContext("run-mcp-fds", tmp_path / "ws"))
            assert not result.is_error, result.output
            return result.output
        finally:
            await manager.aclose()

    try:
        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            output = runner.run(main())
        os.fstat(fd)  # still open here
    finally:
        os.close(fd)
    found = json.loads(output[output.index("{"):output.rindex("}") + 1])
    assert str(secret_dir) not in output
    extra = {n: target for n, target in found.items() if int(n) > 2}
    # the listing's own descriptor and what the Python runtime opens for itself (an epoll,
    # the self-pipe of its event loop): nothing that leads outside the process
    assert all(target.startswith(("anon_inode:", "pipe:", "socket:", "gone"))
               for target in extra.values()), extra
