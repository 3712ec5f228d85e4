"""A run's set of server-side tools: their declarations for the model, and safe dispatch.

:meth:`Toolset.call` never raises for anything the model did: an unknown tool, arguments that
are not JSON or do not match the schema, a tool that fails, hangs past its timeout or raises,
all come back as an error :class:`ToolResult` the model can correct. Cancellation (the run was
cancelled) propagates.

Repair: a tool that is :class:`~kimi_modes.tools.base.Repairable` (``repairable = True``; the
swarm's fan-out tool) gets one repair round when its arguments fail validation: the
``repairer`` given to the toolset (a model call, with constrained decoding where the engine has
it) is asked for corrected arguments, which must then validate; the result's ``meta`` says
``repaired: true``. Without a repairer, or when the repair fails too, the call is an error
result as for any tool.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kimi_modes.protocol import validate_tool_call
from kimi_modes.tools.base import Repairable, RunContext, Tool, ToolResult, truncate

DEFAULT_TIMEOUT = 120.0
DEFAULT_OUTPUT_LIMIT = 16_000

#: ``repairer(tool, arguments, problem)``: corrected arguments (a JSON text), or ``None``.
Repairer = Callable[[Tool, str, str], Awaitable[str | None]]


class Toolset:
    """Tools by name, in declaration order."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        repairer: Repairer | None = None,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool
        self.default_timeout = default_timeout
        self.output_limit = output_limit
        self.repairer = repairer

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        """The tools in OpenAI's ``tools`` shape, for the model."""
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in self._tools.values()
        ]

    async def call(self, name: str | None, arguments: str, ctx: RunContext) -> ToolResult:
        """Validate and run one call; see the module docstring for the guarantees."""
        started = time.monotonic()
        tool = self._tools.get(name or "")
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return ToolResult(f"Error: there is no tool named {name!r}. Tools: {known}.", True,
                              {"error": "unknown_tool"})
        problem = validate_tool_call(name, arguments, self.declarations())
        repaired = False
        if (problem is not None and self.repairer is not None
                and isinstance(tool, Repairable) and tool.repairable):
            fixed = await self.repairer(tool, arguments, problem)
            if fixed is not None and validate_tool_call(name, fixed,
                                                        self.declarations()) is None:
                arguments, problem, repaired = fixed, None, True
            else:
                problem += " (one repair round did not produce valid arguments either)"
        if problem is not None:
            return ToolResult(f"Error: invalid arguments for {name}: {problem}", True,
                              {"error": "invalid_arguments"})
        args = json.loads(arguments)
        timeout = tool.timeout if tool.timeout is not None else self.default_timeout
        try:
            result = await asyncio.wait_for(tool.run(args, ctx), timeout)
        except TimeoutError:
            return ToolResult(f"Error: {name} did not finish within {timeout:g} s.", True,
                              {"error": "timeout", "duration": time.monotonic() - started})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool bug must not end the run
            return ToolResult(f"Error: {name} failed: {type(exc).__name__}: {exc}", True,
                              {"error": "exception"})
        output, cut = truncate(result.output, self.output_limit)
        meta = {**result.meta, "duration": time.monotonic() - started}
        if repaired:
            meta["repaired"] = True
            meta["arguments"] = arguments
        if cut:
            meta["truncated"] = True
        return ToolResult(output, result.is_error, meta)
