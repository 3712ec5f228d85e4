"""The run-event vocabulary: typed in one module, documented in docs/runs.md, checked on emit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kimi_modes.runs.events import EVENT_TYPES, FINISHED, check_emitted

DOCS = Path(__file__).resolve().parents[2] / "docs" / "runs.md"


def test_docs_list_exactly_the_typed_vocabulary() -> None:
    text = DOCS.read_text()
    tables = text[text.index("Every event has"):text.index("### Why streamed text")]
    documented = set(re.findall(r"^\| `(\w+)` \|", tables, re.MULTILINE))
    assert documented == EVENT_TYPES


def test_only_the_vocabulary_can_be_emitted() -> None:
    for event_type in EVENT_TYPES - {FINISHED}:
        check_emitted(event_type)
    with pytest.raises(ValueError, match="not an event a run emits"):
        check_emitted(FINISHED)
    with pytest.raises(ValueError, match="not an event a run emits"):
        check_emitted("subagent_exploded")
