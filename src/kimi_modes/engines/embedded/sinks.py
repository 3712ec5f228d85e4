"""Text sinks the embedded engine streams generated text through (each returns ``False`` to
stop the generation)."""

from __future__ import annotations

from collections.abc import Callable

from kimi_modes.engines.embedded.tools import looks_like_calls


class LeadingSpaceStripper:
    """Forwards text, dropping the whitespace a model writes before its first word."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._started = False

    def __call__(self, text: str) -> bool:
        if not self._started:
            text = text.lstrip()
            if not text:
                return True
            self._started = True
        self._sink(text)
        return True


class AutoDecision:
    """``tool_choice="auto"``: text until the first visible character, then decide.

    A ``[`` or ``{`` means the model is writing calls: stop (the caller regenerates them
    under the calls grammar). Anything else is an answer: stream it.
    """

    def __init__(self, content: LeadingSpaceStripper) -> None:
        self._content = content
        self._seen = ""
        self._decided = False

    def __call__(self, text: str) -> bool:
        if self._decided:
            return self._content(text)
        self._seen += text
        verdict = looks_like_calls(self._seen)
        if verdict is None:
            return True
        if verdict:
            return False
        self._decided = True
        return self._content(self._seen)
