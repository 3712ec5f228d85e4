"""Several choices and token log probabilities, the same for every engine.

:func:`fan_out` gives a request's ``n`` choices from an engine that makes one per upstream
call (the embedded engine, an upstream without ``n``): the one place that generates several
times. :func:`token_logprob` builds the one shape of a token's log probabilities
(:class:`~kimi_modes.engines.base.TokenLogprob`, OpenAI's chat shape) and
:func:`from_completion` converts the shape of OpenAI's ``/v1/completions`` into it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from kimi_modes.engines.base import (
    ChatRequest,
    Choice,
    Event,
    TokenLogprob,
    TopLogprob,
    Usage,
)

#: The most ``top_logprobs`` OpenAI takes (and what ``ChatRequest.logprobs`` may be).
MAX_TOP_LOGPROBS = 20


def fan_out(
    one: Callable[[ChatRequest], AsyncGenerator[Event, None]], request: ChatRequest
) -> AsyncGenerator[Event, None]:
    """The events of ``request`` (see :mod:`kimi_modes.engines.base` for several choices),
    made by calling ``one`` once per choice with ``n=1``; a request for one choice is
    ``one(request)`` itself.

    The choices are generated one after another, choice ``i`` with ``seed + i`` when the
    request has a seed (so they differ and are reproducible). The :class:`Usage` each call
    reports is summed into one, given after the last choice: the prompt counted once, the
    completion (and reasoning) tokens summed; none when a call reported none. Closing the
    stream closes the call under way."""
    if request.n == 1:
        return one(request)
    return _fanned(one, request)


async def _fanned(
    one: Callable[[ChatRequest], AsyncGenerator[Event, None]], request: ChatRequest
) -> AsyncGenerator[Event, None]:
    usages: list[Usage | None] = []
    for index in range(request.n):
        seed = request.seed + index if request.seed is not None else None
        events = one(replace(request, n=1, seed=seed))
        usage: Usage | None = None
        async with contextlib.aclosing(events):
            # The choice's first event before its Choice: a request the engine refuses, or an
            # upstream that is down, fails before the first event (the server can still answer
            # with a real status).
            first = await anext(events, None)
            yield Choice(index)
            if first is None:
                usages.append(None)
                continue
            if isinstance(first, Usage):
                usage = first
            else:
                yield first
            async for event in events:
                if isinstance(event, Usage):
                    usage = event
                else:
                    yield event
        usages.append(usage)
    total = summed(usages)
    if total is not None:
        yield total


def summed(usages: Sequence[Usage | None]) -> Usage | None:
    """The usage of several choices of one prompt (``None`` if any is unknown): the prompt
    once, the completion tokens summed, as OpenAI counts ``n``; reasoning tokens summed when
    all are known."""
    if not usages or any(u is None for u in usages):
        return None
    known = [u for u in usages if u is not None]
    reasoning = [u.reasoning_tokens for u in known]
    return Usage(
        prompt_tokens=known[0].prompt_tokens,
        completion_tokens=sum(u.completion_tokens for u in known),
        reasoning_tokens=(None if any(r is None for r in reasoning)
                          else sum(r for r in reasoning if r is not None)),
    )


def token_logprob(token: str, logprob: float, top: Sequence[tuple[str, float]] = (), *,
                  raw: bytes | None = None,
                  top_raw: Sequence[bytes] | None = None) -> TokenLogprob:
    """One token's entry: ``token`` (its text), its ``logprob`` and the ``top`` alternatives
    as ``(text, logprob)``, most likely first. ``bytes`` are the UTF-8 bytes of the text,
    or ``raw`` (``top_raw`` for the alternatives) where the caller has the token's own
    bytes (a piece of a multi-byte character)."""
    tops: list[TopLogprob] = []
    for i, (text, value) in enumerate(top):
        piece = top_raw[i] if top_raw is not None else text.encode("utf-8")
        tops.append({"token": text, "logprob": value, "bytes": list(piece)})
    own = raw if raw is not None else token.encode("utf-8")
    return {"token": token, "logprob": logprob, "bytes": list(own), "top_logprobs": tops}


def from_completion(logprobs: Any, top: int) -> list[TokenLogprob]:
    """The tokens of a ``/v1/completions`` choice's ``logprobs`` (``tokens``,
    ``token_logprobs``, ``top_logprobs`` as ``{token: logprob}``) as chat entries, with at
    most ``top`` alternatives each, most likely first. Anything unreadable gives no entry."""
    if not isinstance(logprobs, Mapping):
        return []
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out: list[TokenLogprob] = []
    for i, token in enumerate(tokens):
        value = values[i] if i < len(values) else None
        if not isinstance(token, str) or not isinstance(value, int | float):
            continue
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], Mapping) else {}
        ranked = sorted(((str(t), float(v)) for t, v in alternatives.items()
                         if isinstance(v, int | float)), key=lambda tv: -tv[1])
        out.append(token_logprob(token, float(value), ranked[:top]))
    return out
