"""Saving a serving benchmark's result as vLLM does: its file name and its JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kimi_modes.bench.serve.run import ServeConfig

#: The per-request lists vLLM leaves out of the saved JSON unless ``--save-detailed``.
DETAILED_FIELDS = ("input_lens", "output_lens", "start_times", "ttfts", "itls",
                   "generated_texts", "errors")


def result_filename(result: dict[str, Any], config: ServeConfig, *, label: str | None,
                    result_dir: Path | None, result_filename: str | None) -> Path:
    """vLLM's file name: ``{label or backend}-{rate}qps[-concurrency{N}]-{model}-{date}.json``
    (``result_filename`` replaces it), inside ``result_dir`` when given."""
    if result_filename:
        name = result_filename
    else:
        concurrency = (f"-concurrency{config.max_concurrency}"
                       if config.max_concurrency is not None else "")
        model = str(result["model_id"]).split("/")[-1]
        name = (f"{label or config.backend}-{float(config.request_rate)}qps{concurrency}-"
                f"{model}-{result['date']}.json")
    return (result_dir / name) if result_dir else Path(name)


def save_result(result: dict[str, Any], path: Path, *, detailed: bool) -> None:
    """Write the result as vLLM does: without the per-request lists unless ``detailed``."""
    data = result if detailed else {k: v for k, v in result.items() if k not in DETAILED_FIELDS}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        json.dump(data, out)
