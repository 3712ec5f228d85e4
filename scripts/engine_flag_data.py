"""Where and how ``scripts/engine_flags.py`` writes the engines' data files.

Each engine's accepted flags go to ``src/kimi_modes/deploy/flags/data/<engine>.json``
(``kimi_modes.deploy.flags.accepted`` reads them), one JSON object per file, indented by
one space, ``generated_by`` last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "src" / "kimi_modes" / "deploy" / "flags" / "data"
GENERATED_BY = "scripts/engine_flags.py"


def write(
    name: str,
    package: str,
    version: str,
    command: str,
    also: tuple[str, ...],
    notes: str,
    body: dict[str, Any],
    source: list[dict[str, str]] | None = None,
) -> None:
    """Write one engine's data file (``source``: the files it was read from, by repository,
    path and commit, where it was not read from a released package)."""
    record = {
        "engine": name,
        "package": package,
        "version": version,
        "command": command,
        "also_run_as": list(also),
        "how_read": notes,
        **({"source": source} if source else {}),
        **body,
        "generated_by": GENERATED_BY,
    }
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{name} {version}: {len(body['flags'])} flags -> {path.relative_to(ROOT)}")


def patch_parser_names(name: str, names: dict[str, Any]) -> None:
    """Replace the ``parser_names`` of ``name``'s existing data file."""
    path = DATA_DIR / f"{name}.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record.pop("generated_by", None)
    record["parser_names"] = names
    record["generated_by"] = GENERATED_BY
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{name}: parser names of {', '.join(names)} -> {path.relative_to(ROOT)}")

