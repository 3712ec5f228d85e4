"""What the measuring commands share on the command line: the one-line error exit and the
JSON-object options (``--extra-body``, ``--metadata``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

#: ``--api-key``, also read from ``KIMI_MODES_API_KEY`` or ``OPENAI_API_KEY``.
ApiKey = Annotated[
    str | None,
    typer.Option(envvar=["KIMI_MODES_API_KEY", "OPENAI_API_KEY"], show_envvar=True,
                 help="Bearer key sent with every request."),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit to raise (2: bad usage, 1: failure)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def json_object(text: str | None, option: str) -> dict[str, Any]:
    """The JSON object given to ``option`` (``{}`` when absent); a usage error otherwise."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{option} is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise fail(f"{option} must be a JSON object")
    return value
