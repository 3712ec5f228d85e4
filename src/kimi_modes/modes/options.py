"""Per-request options of the Agent and Swarm modes, accepted on every API.

Both wire formats read the same two body fields, ``agent`` and ``swarm``, with these models,
so a request carries the same options whichever API it came through. Budgets given here may
only tighten the server's own (see :meth:`kimi_modes.modes.agent.loop.Budgets.merged`).
Instant and Thinking ignore them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AgentOptions(BaseModel):
    """``agent``: budgets of an Agent or Swarm run (its orchestrator, for Swarm)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_steps: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_time: float | None = Field(None, gt=0)

    def budgets(self) -> dict[str, Any]:
        """The budgets given, by name (what ``Budgets.merged`` takes)."""
        return self.model_dump(exclude_none=True)


class SwarmOptions(BaseModel):
    """``swarm``: ``fan_out: "required"`` makes the orchestrator's first step fan out;
    sub-agent budgets."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fan_out: Literal["auto", "required"] | None = None
    subagent_max_steps: int | None = Field(None, ge=1)
    subagent_max_time: float | None = Field(None, gt=0)


class ModeOptions(BaseModel):
    """What travels beside the request for the Agent and Swarm modes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    agent: AgentOptions = AgentOptions()
    swarm: SwarmOptions = SwarmOptions()

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ModeOptions:
        """The options in a request body's ``agent`` and ``swarm`` fields (absent or null:
        none). Raises pydantic's ``ValidationError`` naming the field."""
        given = {k: body[k] for k in ("agent", "swarm") if body.get(k) is not None}
        return cls.model_validate(given)


NO_OPTIONS = ModeOptions()
