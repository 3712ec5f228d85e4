"""Server-side tools for Agent mode: sandboxed python and shell, workspace files, web fetch
and search, and MCP servers' tools. See :mod:`kimi_modes.tools.base` for the seam."""

from kimi_modes.tools.base import Repairable, RunContext, Tool, ToolResult, truncate
from kimi_modes.tools.toolset import Toolset

__all__ = ["Repairable", "RunContext", "Tool", "ToolResult", "Toolset", "truncate"]
