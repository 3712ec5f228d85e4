"""``kimi-modes deploy check URL``: ask a running engine what it serves and whether the
thinking switch and a tool call round trip work through it.

Four checks, each a :class:`Check` with a verdict and one line saying what was seen:

1. ``models``: ``GET /v1/models`` lists the model (the first one is checked unless one is
   named).
2. ``version``: ``GET /version`` (vLLM, SGLang and the simulated engine have it; others
   answer 404, which is reported, not failed).
3. ``thinking``: the family's switch (:mod:`kimi_modes.protocol.families`) sent as the
   engine's dialect (:mod:`kimi_modes.engines.dialects`): with it on a thinking family
   answers with separated reasoning (``reasoning_content`` or ``reasoning``); with it off a
   switchable family answers without; a family that never thinks must not.
4. ``tool_call``: the first tool-call case of the verifier's bundled sample set, sent and
   judged as ``kimi-modes verify tools`` does (:func:`kimi_modes.bench.verify.metrics.judge`:
   a call to a declared tool with arguments valid against its schema), then the call's
   result sent back, which must be answered with text.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from kimi_modes.bench._http import (
    EndpointError,
    api_base,
    bearer,
    client_session,
    list_models,
    server_root,
)
from kimi_modes.bench.verify.cases import load_cases, prepare_body
from kimi_modes.bench.verify.client import Endpoint, RetryPolicy, post_chat
from kimi_modes.bench.verify.metrics import judge
from kimi_modes.engines.dialects import DIALECTS, merge_into
from kimi_modes.protocol.families import family_info


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``ok`` is ``None`` for a check that does not apply."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class Report:
    """All checks of one engine; ``passed`` when none failed."""

    url: str
    model: str | None
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def lines(self) -> list[str]:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}
        return [f"{mark[c.ok]} {c.name:<10} {c.detail}" for c in self.checks]


def _message(response: dict[str, Any] | None) -> dict[str, Any]:
    choices = (response or {}).get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    return message if isinstance(message, dict) else {}


def _reasoning(message: dict[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


async def _version(session: aiohttp.ClientSession, root: str,
                   headers: dict[str, str]) -> Check:
    try:
        async with session.get(f"{root}/version", headers=headers,
                               timeout=aiohttp.ClientTimeout(total=30)) as resp:
            body = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check("version", None, f"no /version ({type(exc).__name__})")
    if status != 200:
        return Check("version", None, f"/version answered HTTP {status}")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = body.strip()
    shown = parsed.get("version", parsed) if isinstance(parsed, dict) else parsed
    return Check("version", True, str(shown)[:200])


async def _thinking(session: aiohttp.ClientSession, endpoint: Endpoint, family: str,
                    dialect: str, policy: RetryPolicy) -> Check:
    info = family_info(family)
    switch = DIALECTS[dialect]
    seen = []
    wanted = {"none": [False], "always": [True], "switchable": [True, False]}[info.thinking]
    for thinking in wanted:
        body = merge_into({"model": endpoint.model, "max_tokens": 256, "messages": [
            {"role": "user", "content": "What is 17 + 25? Answer with the number."}]},
            switch.body_fragment(thinking, family) if info.thinking == "switchable" else {})
        outcome = await post_chat(session, endpoint, body, policy)
        if outcome.status != "success":
            return Check("thinking", False, f"thinking={thinking}: {outcome.error}")
        has = bool(_reasoning(_message(outcome.response)))
        if has != thinking:
            return Check("thinking", False, f"thinking={thinking} via {dialect} "
                         f"({switch.path}) answered {'with' if has else 'without'} reasoning")
        seen.append(f"{'on' if thinking else 'off'}: {'reasoning' if has else 'none'}")
    return Check("thinking", True, f"{info.thinking} via {dialect}: " + ", ".join(seen))


async def _tool_call(session: aiohttp.ClientSession, endpoint: Endpoint,
                     policy: RetryPolicy) -> Check:
    case = next(c for c in load_cases() if c.label == "tool_calls")
    assert endpoint.model is not None
    body = prepare_body(case.raw, model=endpoint.model)
    outcome = await post_chat(session, endpoint, body, policy)
    verdict = judge(body, outcome.response)
    if outcome.status != "success" or not verdict.triggered or not verdict.valid:
        why = outcome.error or "; ".join(verdict.errors) or (
            f"no tool call (finish_reason {verdict.finish_reason})")
        return Check("tool_call", False, why)
    message = _message(outcome.response)
    calls = message["tool_calls"]
    follow = dict(body)
    follow["messages"] = [*body["messages"], {**message, "content": message.get("content")},
                          *({"role": "tool", "tool_call_id": call.get("id", ""),
                             "content": json.dumps({"result": "ok"})} for call in calls)]
    answer = await post_chat(session, endpoint, follow, policy)
    text = _message(answer.response).get("content")
    if answer.status != "success" or not isinstance(text, str) or not text.strip():
        return Check("tool_call", False, f"the tool result got no answer: "
                     f"{answer.error or 'empty content'}")
    names = ", ".join(call["function"]["name"] for call in calls)
    return Check("tool_call", True, f"called {names} with valid arguments; answered the "
                 "result")


async def check(url: str, *, model: str | None = None, family: str = "k2.5",
                dialect: str = "vllm", api_key: str | None = None,
                request_timeout: float = 300.0) -> Report:
    """Run the four checks against the engine at ``url`` (``http://host:port`` or with
    ``/v1``). ``family`` and ``dialect`` say what the engine serves and how it takes the
    thinking switch; ``request_timeout`` bounds each request. :class:`ValueError` for an
    unknown family or dialect."""
    family_info(family)
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; choose one of {sorted(DIALECTS)}")
    base, headers = api_base(url), bearer(api_key)
    policy = RetryPolicy(timeout=request_timeout, max_retries=1, backoff=1.0)
    async with client_session(trust_env=True) as session:
        try:
            models = await list_models(session, base, headers)
        except EndpointError as exc:
            return Report(url, model, (Check("models", False, str(exc)),))
        if model is None and not models:
            return Report(url, None, (Check("models", False, f"{base}/models lists none"),))
        chosen = model or models[0]
        listed = Check("models", chosen in models,
                       f"serves {', '.join(models)}" if chosen in models
                       else f"{chosen} is not among {', '.join(models) or 'none'}")
        if not listed.ok:
            return Report(url, chosen, (listed,))
        endpoint = Endpoint(base, chosen, api_key)
        checks = (listed, await _version(session, server_root(url), headers),
                  await _thinking(session, endpoint, family, dialect, policy),
                  await _tool_call(session, endpoint, policy))
    return Report(url, chosen, checks)


def run_check(url: str, **options: Any) -> Report:
    """:func:`check` in a fresh event loop."""
    return asyncio.run(check(url, **options))
