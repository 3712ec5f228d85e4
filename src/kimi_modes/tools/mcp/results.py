"""What the model and the operator see of an MCP server: a call's result as a
:class:`ToolResult`, and what went wrong with a connection in words.

Pure functions over the SDK's result and error types: no I/O, no connection state.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from kimi_modes.tools.base import ToolResult, truncate
from kimi_modes.tools.mcp.config import McpServerConfig

__all__ = ["closed_message", "convert_result", "describe_failure", "error_result"]


def convert_result(result: CallToolResult, limit: int,
                   meta: dict[str, Any] | None = None) -> ToolResult:
    """A ``CallToolResult`` as the model sees it: text blocks joined by newlines, other blocks
    described in brackets, ``structuredContent`` as JSON when there is no text, cut to
    ``limit`` characters; ``isError`` carried over."""
    parts: list[str] = []
    media: list[dict[str, Any]] = []
    has_text = False
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
            has_text = True
        elif isinstance(block, ImageContent | AudioContent):
            kind = "image" if isinstance(block, ImageContent) else "audio"
            size = _b64_size(block.data)
            media.append({"type": kind, "mime_type": block.mime_type, "bytes": size})
            parts.append(f"[{kind} {block.mime_type}, {size} bytes: not shown]")
        elif isinstance(block, EmbeddedResource):
            res = block.resource
            if isinstance(res, TextResourceContents):
                parts.append(f"[resource {res.uri}]\n{res.text}")
                has_text = True
            elif isinstance(res, BlobResourceContents):
                size = _b64_size(res.blob)
                mime = res.mime_type or "application/octet-stream"
                parts.append(f"[resource {res.uri}: {mime}, {size} bytes: not shown]")
        elif isinstance(block, ResourceLink):
            label = f" ({block.description})" if block.description else ""
            parts.append(f"[resource link {block.name}: {block.uri}{label}]")
        else:  # a content type newer than this code
            parts.append(f"[{getattr(block, 'type', type(block).__name__)} content: not shown]")
    if not has_text and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    text = "\n".join(parts) if parts else "(no output)"
    output, cut = truncate(text, limit)
    info = dict(meta or {})
    if cut:
        info["truncated"] = True
        info["output_chars"] = len(text)
    if media:
        info["media"] = media
    if result.is_error:
        info["error"] = "tool_error"
    return ToolResult(output, result.is_error, info)


def _b64_size(data: str) -> int:
    return len(data) * 3 // 4 - data[-2:].count("=")


def error_result(text: str, kind: str, meta: dict[str, Any] | None = None) -> ToolResult:
    """An error result whose ``meta`` says ``error: kind`` (beside ``meta``)."""
    return ToolResult(text, True, {**(meta or {}), "error": kind})


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def closed_message(config: McpServerConfig) -> str:
    """How a connection that ended by itself is described."""
    if config.transport == "stdio":
        return "the server process exited (or closed its stdout)"
    return "the server closed the connection"


def describe_failure(exc: BaseException, config: McpServerConfig) -> str:
    """An exception from connecting, in words (exception groups flattened)."""
    said: list[str] = []
    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            text = closed_message(config)
        elif isinstance(leaf, MCPError):
            text = f"MCP error {leaf.code}: {leaf.message}"
        elif isinstance(leaf, FileNotFoundError) and config.transport == "stdio":
            text = f"cannot run {config.command!r}: command not found"
            if config.cwd and not os.path.isdir(config.cwd):
                text = f"cannot run {config.command!r}: cwd {config.cwd!r} does not exist"
        elif isinstance(leaf, PermissionError) and config.transport == "stdio":
            text = f"cannot run {config.command!r}: permission denied"
        elif isinstance(leaf, httpx2.ConnectError):
            text = f"cannot connect to {config.url}: {leaf}"
        elif isinstance(leaf, httpx2.TimeoutException):
            text = f"{config.url} timed out ({type(leaf).__name__})"
        else:
            text = f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__
        if text not in said:
            said.append(text)
    return "; ".join(said) or type(exc).__name__
