"""MCP servers' tools for Agent mode, through the official ``mcp`` SDK (2.x).

Servers come from the standard ``{"mcpServers": {...}}`` JSON file (stdio and streamable
HTTP; see :mod:`kimi_modes.tools.mcp.config`); :class:`McpManager` keeps one connection per
server for the whole gateway and offers their tools as ``server__tool``
(see :mod:`kimi_modes.tools.mcp.manager` for the guarantees,
:mod:`~kimi_modes.tools.mcp.connection` for one server's lifecycle and
:mod:`~kimi_modes.tools.mcp.results` for how results are shown). docs/mcp.md has the details.

Example::

    from kimi_modes.tools import Toolset
    from kimi_modes.tools.mcp import McpManager

    async with McpManager.from_file("mcp.json") as mcp:
        for name, problem in mcp.problems().items():
            print(f"MCP server {name} left out: {problem}")
        toolset = Toolset(mcp.tools())
"""

from kimi_modes.tools.mcp.config import (
    McpConfigError,
    McpServerConfig,
    load_mcp_config,
    mcp_tool_name,
    parse_mcp_config,
)
from kimi_modes.tools.mcp.connection import McpServerStatus, ServerState
from kimi_modes.tools.mcp.manager import McpManager, McpTool
from kimi_modes.tools.mcp.results import convert_result

__all__ = [
    "McpConfigError",
    "McpManager",
    "McpServerConfig",
    "McpServerStatus",
    "McpTool",
    "ServerState",
    "convert_result",
    "load_mcp_config",
    "mcp_tool_name",
    "parse_mcp_config",
]
