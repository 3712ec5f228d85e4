"""Measuring a deployment: the serving benchmark (``kimi-modes bench serve``), the tool-call
verifier (``kimi-modes verify tools``), the accuracy eval (``kimi-modes eval``) and the agent
and swarm benchmark (``kimi-modes bench agents``).

Each command works against any OpenAI-compatible endpoint: the gateway's four modes, a bare
vLLM or SGLang, Moonshot's API. Each lives in a module of its own (the measuring code) plus a
thin ``*_cmd`` module holding its typer command, registered by :mod:`kimi_modes.cli`.
"""
