"""Split streamed text into plain-text runs and marker strings, incrementally.

The one place where the parser looks at characters for markers. Each chunk is scanned once;
only a suffix that could still become a marker (a proper prefix of one, so shorter than the
longest marker) is held back for the next chunk. So the cost per character is flat, and the
events do not depend on how the text was chunked: concatenating the text runs between two
markers gives the same string whatever the chunking, and the markers are the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kimi_modes.protocol.neutralize import ZERO_WIDTH_SPACE


class MarkerSet:
    """An immutable set of markers with the tables the scanner needs; build it once.

    No marker may be a prefix or an infix of another.
    """

    def __init__(self, markers: Iterable[str]) -> None:
        self.markers = frozenset(markers)
        for marker in self.markers:
            if any(marker in other for other in self.markers - {marker}):
                raise ValueError(f"marker {marker!r} is part of another marker")
        self.pattern = re.compile("|".join(re.escape(m) for m in sorted(self.markers)))
        self.prefixes = frozenset(m[:i] for m in self.markers for i in range(1, len(m)))
        self.first_chars = frozenset(m[0] for m in self.markers)
        self.window = max(len(m) for m in self.markers) - 1

    def hold_start(self, text: str, pos: int = 0) -> int:
        """Index of the earliest suffix of ``text[pos:]`` that is a proper prefix of a marker
        (``len(text)`` if there is none). Looks at the last :attr:`window` characters only."""
        first_chars = self.first_chars
        prefixes = self.prefixes
        for i in range(max(pos, len(text) - self.window), len(text)):
            if text[i] in first_chars and text[i:] in prefixes:
                return i
        return len(text)

    def ends_with_partial_marker(self, text: str) -> bool:
        """Whether some suffix of ``text`` is a proper prefix of a marker."""
        return self.hold_start(text) < len(text)


class MarkerScanner:
    """Incremental splitter of text into runs and markers.

    :meth:`feed` and :meth:`flush` return a list of strings; an element is a marker exactly
    when it is in ``marker_set.markers`` (a text run never contains, nor equals, a marker).
    """

    def __init__(self, marker_set: MarkerSet) -> None:
        self._set = marker_set
        self._held = ""

    def feed(self, chunk: str) -> list[str]:
        """The runs and markers that ``chunk`` completes (in order)."""
        text = self._held + chunk if self._held else chunk
        events: list[str] = []
        pos = 0
        marker_set = self._set
        if any(c in text for c in marker_set.first_chars):
            for match in marker_set.pattern.finditer(text):
                if match.start() > pos:
                    events.append(text[pos : match.start()])
                events.append(match.group())
                pos = match.end()
        cut = marker_set.hold_start(text, pos)
        if cut > pos:
            events.append(text[pos:cut])
        self._held = text[cut:]
        return events

    def flush(self) -> list[str]:
        """What was held back, as text (the stream has ended)."""
        held, self._held = self._held, ""
        return [held] if held else []


class TextField:
    """One text field of a parsed answer, built from the text runs between markers.

    A parser drops the markers that are stray where they occur; :meth:`append` makes sure
    the runs on either side of a dropped marker never join into a marker string.
    """

    __slots__ = ("_set", "mark", "parts", "tail")

    def __init__(self, marker_set: MarkerSet) -> None:
        self._set = marker_set
        self.parts: list[str] = []
        self.tail = ""  # the last characters appended (up to the marker set's window)
        self.mark = 0  # the parser's marker count at the last append

    def text(self) -> str:
        """Everything appended so far."""
        return "".join(self.parts)

    def append(self, text: str, markers_seen: int) -> str:
        """Add ``text``; ``markers_seen`` counts the markers the parser has met so far.

        Returns what was added: ``text``, with a ZERO WIDTH SPACE in front where a marker
        came since the last append and the field's tail could begin a marker string.
        """
        if self.mark != markers_seen:
            if self.tail and self._set.ends_with_partial_marker(self.tail):
                text = ZERO_WIDTH_SPACE + text
            self.mark = markers_seen
        self.parts.append(text)
        window = self._set.window
        self.tail = text[-window:] if len(text) >= window else (self.tail + text)[-window:]
        return text
