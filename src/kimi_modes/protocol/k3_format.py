"""Write an answer the way Kimi K3 writes it (XTML): the inverse of the K3 parser.

Reached through :func:`~kimi_modes.protocol.format_output` with a K3 family. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from kimi_modes.protocol import xtml
from kimi_modes.protocol.ids import function_name_from_id


def format_xtml_output(
    *,
    reasoning: str | None,
    content: str | None,
    tool_calls: Sequence[tuple[str, str]],
    thinking: bool,
) -> str:
    """The text K3 writes after a prompt that opened the think channel (``thinking``) or the
    response channel: ``REASONING<|close|>think<|sep|><|open|>response<|sep|>`` (thinking
    only), then ``CONTENT<|close|>response<|sep|>``, the ``tools`` channel when there are
    calls, and ``<|close|>message<|sep|>``; the stop token is left out.

    ``tool_calls`` are ``(id, arguments)`` pairs as for K2; the tool's name is taken from
    the id (``functions.NAME:IDX``) and the calls are numbered from 1. Texts are written
    as given (they must not contain control tokens).
    """
    parts: list[str] = []
    if thinking:
        parts += [reasoning or "", xtml.close_tag("think"), xtml.open_tag("response")]
    parts += [content or "", xtml.close_tag("response")]
    if tool_calls:
        parts.append(xtml.open_tag("tools"))
        for index, (call_id, arguments) in enumerate(tool_calls, start=1):
            parts.append(xtml.call_element(function_name_from_id(call_id), index, arguments))
        parts.append(xtml.close_tag("tools"))
    parts.append(xtml.close_tag("message"))
    return "".join(parts)
