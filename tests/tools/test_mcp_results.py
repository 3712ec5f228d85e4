"""How MCP results and connection failures are shown (:mod:`kimi_modes.tools.mcp.results`),
on the SDK's own result types. The same conversions run end to end in ``test_mcp.py``."""

from __future__ import annotations

import base64

from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from kimi_modes.tools.mcp import McpServerConfig, convert_result
from kimi_modes.tools.mcp.results import describe_failure, error_result


def test_text_is_joined_and_media_described_not_inlined() -> None:
    png = base64.b64encode(b"\x89PNG" + bytes(96)).decode()
    result = CallToolResult(content=[
        TextContent(text="first"),
        ImageContent(data=png, mimeType="image/png"),
        EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="body")),
        EmbeddedResource(resource=BlobResourceContents(uri="file:///b.bin", blob=png)),
        ResourceLink(name="doc", uri="https://example.com/doc", description="the doc"),
    ])
    out = convert_result(result, 10_000, {"mcp_server": "s"})
    assert not out.is_error
    assert out.output.splitlines() == [
        "first",
        "[image image/png, 100 bytes: not shown]",
        "[resource file:///a.txt]",
        "body",
        "[resource file:///b.bin: application/octet-stream, 100 bytes: not shown]",
        "[resource link doc: https://example.com/doc (the doc)]",
    ]
    assert png not in out.output
    assert out.meta["media"] == [{"type": "image", "mime_type": "image/png", "bytes": 100}]
    assert out.meta["mcp_server"] == "s"


def test_structured_content_without_text_is_json_and_errors_carry_over() -> None:
    out = convert_result(CallToolResult(content=[], structuredContent={"n": 1}), 100)
    assert out.output == '{"n": 1}'
    out = convert_result(CallToolResult(content=[], isError=True), 100)
    assert out.is_error and out.output == "(no output)" and out.meta["error"] == "tool_error"


def test_long_output_is_cut_with_head_and_tail() -> None:
    text = "H" * 500 + "x" * 5000 + "T" * 500
    out = convert_result(CallToolResult(content=[TextContent(text=text)]), 1000)
    assert len(out.output) < 1100 and out.output.startswith("H") and out.output.endswith("T")
    assert out.meta["truncated"] and out.meta["output_chars"] == 6000


def test_failures_in_words() -> None:
    stdio = McpServerConfig.stdio("s", "no-such-command-xyz")
    group = BaseExceptionGroup("g", [FileNotFoundError(2, "nope"),
                                     MCPError(CONNECTION_CLOSED, "closed")])
    assert describe_failure(group, stdio) == (
        "cannot run 'no-such-command-xyz': command not found; "
        "the server process exited (or closed its stdout)")
    assert error_result("Error: x", "timeout", {"a": 1}).meta == {"a": 1, "error": "timeout"}
