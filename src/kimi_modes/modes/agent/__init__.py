"""Agent mode: Kimi in a tool loop, run as a persisted, watchable, cancellable run.

- :mod:`.loop`: the tool loop itself (:class:`~.loop.AgentLoop`), its budgets and context
  policy;
- :mod:`.run`: the one lifecycle of a persisted run, shared by agents, swarm orchestrators
  and sub-agents;
- :mod:`.progress`: the one rendering of run events into chat deltas;
- :mod:`.service`: Agent mode as an engine (:class:`~.service.AgentService`).
"""
