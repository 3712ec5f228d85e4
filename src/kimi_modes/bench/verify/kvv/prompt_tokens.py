"""KVV ``tests/prompt_tokens``: each case (``{"id", "request", "expected_prompt_tokens"}``)
is sent streamed with ``stream_options.include_usage``; ``usage.prompt_tokens`` (top-level or
in a choice, Kimi-style) must lie in ``[expected, expected + 3]``. KVV's constants come from
Kimi's tokenizer. Image cases (``vision_cases.jsonl``) name ``fixture://`` images that are
materialized first (:mod:`.images`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kimi_modes.bench.verify.kvv.images import materialize
from kimi_modes.bench.verify.kvv.probe import Check, Prober

#: KVV's tolerance on ``usage.prompt_tokens``: the expected count up to three above it.
MAX_PROMPT_TOKEN_OVERCOUNT = 3
CASE_FILES = ("cases.jsonl", "vision_cases.jsonl")


def case_files(data: Path | None) -> list[Path]:
    """The case files of ``data``: the file itself, or KVV's ``cases.jsonl`` and
    ``vision_cases.jsonl`` in a folder (or its ``prompt_token_cases``); none without it."""
    if data is None:
        return []
    if data.is_file():
        return [data]
    nested = data / "prompt_token_cases"
    folder = nested if nested.is_dir() else data
    return [folder / name for name in CASE_FILES if (folder / name).is_file()]


def load_cases(data: Path | None) -> list[dict[str, Any]]:
    """Every case of :func:`case_files`, each with ``_images``: the folder its fixtures are
    in (``images/`` beside the file). Ids must be unique; a Git LFS pointer is an error."""
    cases: list[dict[str, Any]] = []
    for path in case_files(data):
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].startswith("version https://git-lfs"):
            raise ValueError(f"{path} is a Git LFS pointer: run `git lfs pull` in the checkout")
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    case = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
                cases.append({**case, "_images": path.parent / "images"})
    ids = [str(c.get("id")) for c in cases]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"duplicate prompt-token case id(s): {', '.join(twice)}")
    return cases


async def prompt_tokens_suite(p: Prober, cases: Sequence[Mapping[str, Any]]) -> list[Check]:
    """Streamed ``usage.prompt_tokens`` within the tolerance, per case."""
    checks: list[Check] = []
    for case in cases:
        try:
            request = materialize(dict(case["request"]), Path(case["_images"]))
        except ValueError as exc:
            checks.append(Check("prompt-tokens", str(case["id"]), False, str(exc)))
            continue
        request = {k: v for k, v in request.items() if k not in ("stream", "model")}
        expected = int(case["expected_prompt_tokens"])
        answer = await p.post(request, stream=True)
        usage = (answer.body or {}).get("usage") if answer.status == 200 else None
        actual = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(actual, int) or isinstance(actual, bool):
            checks.append(Check("prompt-tokens", str(case["id"]), False,
                                f"{answer.describe()}, no usage.prompt_tokens in the stream"))
            continue
        ok = expected <= actual <= expected + MAX_PROMPT_TOKEN_OVERCOUNT
        checks.append(Check("prompt-tokens", str(case["id"]), ok,
                            f"got {actual}, expected [{expected}, "
                            f"{expected + MAX_PROMPT_TOKEN_OVERCOUNT}]"))
    return checks
