"""``kimi-modes bench agents``: success, steps, time and tokens of Agent and Swarm tasks."""
