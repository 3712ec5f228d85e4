"""The simulated engine's token log probabilities: made up, deterministic, in vLLM's shapes.

A token's logprob depends only on its text and its place in the answer (a CRC of both,
between -2 and 0), so two runs of one request agree. The token is its own most likely
alternative; the others are `` alt1``, `` alt2``, ... each less likely than the one before.
:func:`chat_entries` gives the chat API's ``logprobs.content`` entries,
:func:`completion_logprobs` the completions API's ``logprobs`` object.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any


def logprob_of(token: str, position: int) -> float:
    """The made-up logprob of ``token`` generated at ``position`` (0-based)."""
    return -(zlib.crc32(f"{position}:{token}".encode()) % 2000) / 1000


def ranked(token: str, position: int, top: int) -> list[tuple[str, float]]:
    """The ``top`` most likely tokens at ``position``, most likely first: ``token`` itself,
    then made-up alternatives."""
    value = logprob_of(token, position)
    alternatives = [(token, value)]
    alternatives += [(f" alt{j}", round(value - 0.25 - 0.5 * j, 3)) for j in range(1, top)]
    return alternatives[:top]


def chat_entries(tokens: Sequence[str], start: int, top: int) -> list[dict[str, Any]]:
    """The chat entries (``token``, ``logprob``, ``bytes``, ``top_logprobs``) of ``tokens``,
    the first generated at ``start``."""
    out = []
    for i, token in enumerate(tokens, start):
        out.append({
            "token": token, "logprob": logprob_of(token, i), "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                             for t, v in ranked(token, i, top)],
        })
    return out


def completion_logprobs(tokens: Sequence[str], start: int, top: int,
                        offset: int) -> dict[str, Any]:
    """The completions API's ``logprobs`` of ``tokens`` (the first generated at ``start``,
    ``offset`` characters into the answer's text)."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "text_offset": offsets,
        "token_logprobs": [logprob_of(t, i) for i, t in enumerate(tokens, start)],
        "tokens": list(tokens),
        "top_logprobs": [dict(ranked(t, i, max(top, 1))) for i, t in enumerate(tokens, start)],
    }
