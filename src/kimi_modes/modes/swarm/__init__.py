"""Agent Swarm: an orchestrator (Thinking) that fans a task out to parallel sub-agents
(Instant by default), each a full agent run with its own context and tools, and answers from
their results (kimi-protocol.md §7; docs/swarm.md).

- :mod:`.fanout`: the orchestrator's tools and the per-run state (limits, outcomes);
- :mod:`.workers`: running sub-agents under the global cap, on the worker engine pool;
  continuing them (follow-ups, unfinished work);
- :mod:`.metrics`: critical steps, parallelism, tokens per agent;
- :mod:`.service`: the orchestrator run as an engine, served like Agent mode.
"""

from kimi_modes.modes.swarm.fanout import SwarmRun, spawn_parameters
from kimi_modes.modes.swarm.metrics import SubagentOutcome, swarm_metrics
from kimi_modes.modes.swarm.service import SwarmService
from kimi_modes.modes.swarm.workers import LaunchRamp, ResumeError, SwarmWorkers, WorkerSettings

__all__ = [
    "LaunchRamp",
    "ResumeError",
    "SubagentOutcome",
    "SwarmRun",
    "SwarmService",
    "SwarmWorkers",
    "WorkerSettings",
    "spawn_parameters",
    "swarm_metrics",
]
