"""An MCP server whose one tool reports the server's open descriptors (``/proc/self/fd``)."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("descriptors", log_level="WARNING")


@server.tool(description="The server's open descriptors: number -> what it points to.")
def descriptors() -> dict[str, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            found[name] = "gone"  # the listing's own
    return found


if __name__ == "__main__":
    server.run()
