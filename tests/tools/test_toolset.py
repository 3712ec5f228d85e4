"""The toolset's dispatch: validation, and the repair round only a :class:`Repairable` tool
gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kimi_modes.tools import Repairable, RunContext, Tool, ToolResult, Toolset

_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}},
                           "required": ["n"], "additionalProperties": False}


class Echo:
    """Returns its ``n``; ``repairable`` as given."""

    description = "echo n"
    timeout: float | None = None

    def __init__(self, name: str, *, repairable: bool | None) -> None:
        self.name = name
        self.parameters = _SCHEMA
        if repairable is not None:
            self.repairable = repairable

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return ToolResult(str(arguments["n"]))


async def test_only_a_repairable_tool_gets_the_repair_round(tmp_path: Path) -> None:
    asked: list[str] = []

    async def repairer(tool: Tool, arguments: str, problem: str) -> str | None:
        asked.append(tool.name)
        return json.dumps({"n": int(json.loads(arguments)["n"])})

    fixable = Echo("fixable", repairable=True)
    declined = Echo("declined", repairable=False)
    plain = Echo("plain", repairable=None)
    assert isinstance(fixable, Repairable) and isinstance(declined, Repairable)
    assert not isinstance(plain, Repairable)
    toolset = Toolset([fixable, declined, plain], repairer=repairer)
    ctx = RunContext("r", tmp_path)
    bad = json.dumps({"n": "7"})
    result = await toolset.call("fixable", bad, ctx)
    assert not result.is_error and result.output == "7" and result.meta["repaired"]
    for name in ("declined", "plain"):
        result = await toolset.call(name, bad, ctx)
        assert result.is_error and "invalid arguments" in result.output
    assert asked == ["fixable"]
