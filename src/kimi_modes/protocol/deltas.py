"""The typed delta vocabulary shared by the parsers, the engines, the modes and the server.

A streamed answer is a sequence of these deltas. Concatenating the ``text`` of every
:class:`ReasoningDelta` gives the reasoning, of every :class:`ContentDelta` the content, and
for each tool-call ``index`` the ``arguments`` of its :class:`ToolCallDelta` s the call's
arguments. ``id`` and ``name`` of a call are set on the first delta of that call that knows
them and are ``None`` afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning (what Kimi writes inside ``<think>``)."""

    text: str


@dataclass(slots=True, frozen=True)
class ContentDelta:
    """A piece of the visible answer."""

    text: str


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A piece of tool call number ``index`` (0-based, in the order the model wrote them)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


Delta = ReasoningDelta | ContentDelta | ToolCallDelta


def coalesce(deltas: list[Delta]) -> list[Delta]:
    """Merge runs of deltas of the same kind (and the same tool call) into one delta each.

    Folding the result gives what folding ``deltas`` gives; a tool call's ``id`` stays on
    its first delta.
    """
    merged: list[Delta] = []
    run: list[Delta] = []
    for delta in deltas:
        if run and not _mergeable(run[-1], delta):
            merged.append(_merge(run))
            run = []
        run.append(delta)
    if run:
        merged.append(_merge(run))
    return merged


def _mergeable(a: Delta, b: Delta) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, ToolCallDelta) and isinstance(b, ToolCallDelta):
        return a.index == b.index and b.id is None and (a.name is None or b.name is None)
    return True


def _merge(run: list[Delta]) -> Delta:
    first = run[0]
    if len(run) == 1:
        return first
    if isinstance(first, ReasoningDelta):
        return ReasoningDelta("".join(d.text for d in run if isinstance(d, ReasoningDelta)))
    if isinstance(first, ContentDelta):
        return ContentDelta("".join(d.text for d in run if isinstance(d, ContentDelta)))
    calls = [d for d in run if isinstance(d, ToolCallDelta)]
    return ToolCallDelta(
        index=first.index,
        id=first.id,
        name=next((d.name for d in calls if d.name is not None), None),
        arguments="".join(d.arguments for d in calls),
    )
