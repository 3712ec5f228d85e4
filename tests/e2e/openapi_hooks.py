"""Schemathesis hooks for tests/e2e/test_openapi_conformance.py (loaded by the schemathesis
command it runs, through the config's ``hooks``): the check that 4xx bodies are in the route's
API error shape, and real run ids among the generated ones (``OPENAPI_RUN_IDS``)."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


def api_of(path: str) -> str:
    """Which API's error shape a route answers errors in."""
    return "anthropic" if path.startswith("/v1/messages") else "openai"


@schemathesis.check
def errors_in_the_api_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                            case: schemathesis.Case) -> bool | None:
    """Every 4xx body is exactly the error body of the route's API."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if api_of(case.operation.path) == "anthropic":
        assert isinstance(body, dict) and set(body) == {"type", "error"}, body
        assert body["type"] == "error" and isinstance(error, dict), body
        assert set(error) == {"type", "message"}, body
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert isinstance(error, dict) and set(error) == OPENAI_ERROR_KEYS, body
        assert isinstance(error["type"], str), body
    assert isinstance(error["message"], str) and error["message"], body
    return True


@schemathesis.hook
def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> Any:
    """Half the run ids are runs that exist (so the runs API answers more than 404)."""
    runs = [r for r in os.environ.get("OPENAPI_RUN_IDS", "").split(",") if r]
    if not parameters or "run_id" not in parameters or not runs:
        return st.just(parameters)
    return st.one_of(st.just(parameters),
                     st.sampled_from(runs).map(lambda run: {**parameters, "run_id": run}))
