"""Reading what an endpoint said when it refused a request, for the measuring commands."""

from __future__ import annotations

import json


def error_body_message(raw: bytes | str) -> str:
    """The message inside an error body — OpenAI's and vLLM's ``{"error": {"message"}}``,
    ``{"error": "..."}``, FastAPI's ``{"detail": "..."}``, a bare ``{"message"}`` — or the
    body's own text; on one line (whitespace collapsed), ``""`` for an empty body."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    message = text
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]
        elif isinstance(err, str):
            message = err
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
        elif isinstance(body.get("message"), str):
            message = body["message"]
    return " ".join(message.split())
