"""Official SDK clients for a running gateway, and what the simulator last received."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai


def openai_client(server: Any, api_key: str = "none", **kwargs: Any) -> openai.OpenAI:
    """The ``openai`` SDK on ``server`` (a started gateway: its ``/v1``), no retries."""
    return openai.OpenAI(base_url=server.v1, api_key=api_key, max_retries=0, **kwargs)


def anthropic_client(server: Any, api_key: str = "none") -> anthropic.Anthropic:
    """The ``anthropic`` SDK on ``server`` (a started gateway), no retries."""
    return anthropic.Anthropic(base_url=server.url, api_key=api_key, max_retries=0)


def last_upstream_request(sim: Any) -> dict[str, Any]:
    """The body of the last request the simulator ``sim`` received (its ``/sim/stats``)."""
    stats = httpx.get(sim.url + "/sim/stats").json()
    body: dict[str, Any] = stats["last_requests"][-1]["body"]
    return body


def instant_answer(gateway: Any, question: str, *, max_tokens: int = 16) -> str:
    """The greedy Instant answer of ``gateway`` to one user ``question`` (its text, stripped)."""
    answer = httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": "kimi-k2.5-instant", "temperature": 0, "max_tokens": max_tokens,
              "messages": [{"role": "user", "content": question}]},
        timeout=120,
    )
    answer.raise_for_status()
    return str(answer.json()["choices"][0]["message"]["content"]).strip()
