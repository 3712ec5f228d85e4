"""Write an answer the way a Kimi model writes it: the inverse of :func:`parse_output`.

Used by the simulated engine (its ``/v1/completions`` text and its raw-marker mode) and by
round-trip tests. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.families import family_info
from kimi_modes.protocol.k3_format import format_xtml_output


def format_output(
    family: str,
    *,
    reasoning: str | None = None,
    content: str | None = None,
    tool_calls: Sequence[tuple[str, str]] = (),
    thinking: bool | None = None,
) -> str:
    """Return the raw text a Kimi model of ``family`` would write for this answer.

    ``tool_calls`` are ``(id, arguments)`` pairs, ids in Kimi's ``functions.NAME:IDX`` form.
    Where the prompt opens the reasoning block (K2.5 and later with thinking on) the text
    begins inside it; ``k2-thinking`` writes ``<think>`` itself. ``k2-instruct`` and thinking
    off have no reasoning block. K3 writes XTML channels (see
    :func:`~kimi_modes.protocol.k3_format.format_xtml_output`). The stop token is not
    included, as engines strip it.
    """
    info = family_info(family)
    if info.wire_format == "xtml":
        return format_xtml_output(
            reasoning=reasoning,
            content=content,
            tool_calls=tool_calls,
            thinking=info.thinks(thinking),
        )
    parts: list[str] = []
    if info.thinks(thinking):
        if not info.think_prefill:
            parts.append(T.THINK_BEGIN)
        parts.append(reasoning or "")
        parts.append(T.THINK_END)
    parts.append(content or "")
    if tool_calls:
        parts.append(T.TOOL_CALLS_SECTION_BEGIN)
        for call_id, arguments in tool_calls:
            parts.append(T.TOOL_CALL_BEGIN)
            parts.append(call_id)
            parts.append(T.TOOL_CALL_ARGUMENT_BEGIN)
            parts.append(arguments)
            parts.append(T.TOOL_CALL_END)
        parts.append(T.TOOL_CALLS_SECTION_END)
    return "".join(parts)
