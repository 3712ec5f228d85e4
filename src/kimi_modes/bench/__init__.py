"""Measuring a deployment, over HTTP only: the serving benchmark (:mod:`.serve`, ``kimi-modes
bench serve``), the tool-call verifier (:mod:`.verify`, ``kimi-modes verify tools``), the
accuracy eval (:mod:`.eval`, ``kimi-modes eval``) and the agent and swarm benchmark
(:mod:`.agents`, ``kimi-modes bench agents``).

Each command works against any OpenAI-compatible endpoint: the gateway's four modes, a bare
vLLM or SGLang, Moonshot's API. Each subpackage holds its measuring code plus a thin ``cmd``
module with its typer command, registered by :mod:`kimi_modes.cli`. What they share sits
here: the command-line helpers (:mod:`._cli`), the HTTP helpers (:mod:`._http`) and the JSONL
reader (:mod:`._jsonl`). Nothing here imports the gateway's modes or server.
"""
