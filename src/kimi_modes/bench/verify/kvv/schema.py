"""KVV ``tests/tool_call_json_schema``: each schema (one per line: a KVV checkout's
``walle_validator_cases/validator_cases/*/valid.jsonl`` under ``--data``, else our bundled
sample) is a tool's ``parameters``; the call is forced, sent non-streamed and streamed (the
deltas reassembled), and the arguments are validated with ``jsonschema``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from kimi_modes.bench.verify.kvv.probe import Check, Prober, user, validate_arguments

TOOL_NAME = "submit_arguments"


def load_schemas(data: Path | None) -> list[tuple[str, Any]]:
    """(case id, schema) of every ``valid.jsonl`` line under ``data`` (a KVV ``testdata``
    folder, its ``walle_validator_cases`` or ``validator_cases``), else of the bundled
    sample."""
    if data is None:
        text = resources.files("kimi_modes.bench").joinpath("data", "kvv_schemas.jsonl")
        return [(f"sample:{n}", json.loads(line))
                for n, line in enumerate(text.read_text().splitlines(), 1) if line.strip()]
    nested = data / "walle_validator_cases"
    root = nested if nested.is_dir() else data
    cases: list[tuple[str, Any]] = []
    for path in sorted(root.rglob("valid.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                cases.append((f"{path.parent.name}:{n}", json.loads(line)))
    return cases


async def schema_suite(p: Prober, schemas: Sequence[tuple[str, Any]],
                       max_tokens: int) -> list[Check]:
    """A forced call per schema, non-streamed and streamed, its arguments validated."""
    checks: list[Check] = []
    for case_id, schema in schemas:
        body = {
            "messages": user(f"Call the {TOOL_NAME} tool exactly once with minimal arguments "
                             "that satisfy its parameter schema. Do not answer with text."),
            "tools": [{"type": "function", "function": {
                "name": TOOL_NAME, "description": "Submit minimal JSON arguments that "
                "validate against this JSON Schema.", "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
            "max_tokens": max_tokens,
        }
        for stream in (False, True):
            mode = "stream" if stream else "non-stream"
            answer = await p.post(body, stream=stream)
            if not answer.accepted:
                checks.append(Check("schema", f"{case_id} [{mode}]", False,
                                    "schema refused: " + answer.describe()))
                continue
            calls = answer.message.get("tool_calls") or [{}]
            fn = calls[0].get("function") or {}
            problem = validate_arguments(schema, fn.get("arguments"))
            if problem is None and fn.get("name") != TOOL_NAME:
                problem = f"called {fn.get('name')!r}, not {TOOL_NAME!r}"
            checks.append(Check("schema", f"{case_id} [{mode}]", problem is None,
                                problem or "arguments valid"))
    return checks
