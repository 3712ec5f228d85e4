"""What a client is told about a failed upstream: its name and what went wrong, never its URL
(that stays in the exception's text, for the operator's log)."""

from __future__ import annotations

import pytest

from kimi_modes.engines.base import (
    EngineError,
    UpstreamFailed,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from kimi_modes.server.errors import APIError, openai_error_body

URL = "http://10.0.0.7:8000/v1"


@pytest.mark.parametrize(("exc", "told"), [
    (UpstreamUnavailable("gpu", f"cannot reach {URL}: refused"),
     "upstream 'gpu' cannot be reached"),
    (UpstreamTimeout("gpu", f"no answer from {URL} in time"),
     "upstream 'gpu' did not answer in time"),
    (UpstreamFailed("gpu", f"HTTP 401 from POST {URL}/chat/completions: no; check api_key"),
     "upstream 'gpu' failed; the gateway's log has the details"),
    (EngineError("gpu", f"odd failure at {URL}"),
     "upstream 'gpu' failed; the gateway's log has the details"),
])
def test_failures_name_the_upstream_only(exc: EngineError, told: str) -> None:
    err = APIError.from_exception(exc)
    assert err.message == told
    assert URL not in str(openai_error_body(err))
    assert err.detail is not None and URL in err.detail  # for the log
    assert (err.status, err.code) == (exc.status, exc.kind)


def test_refusals_and_busy_pass_the_upstreams_words_on() -> None:
    rejected = APIError.from_exception(
        UpstreamRejected("gpu", "HTTP 400: max_tokens too large", status=400))
    assert (rejected.status, rejected.message) == (
        400, "upstream 'gpu': HTTP 400: max_tokens too large")
    busy = APIError.from_exception(UpstreamOverloaded("gpu", "HTTP 429: busy", retry_after=3))
    assert (busy.status, busy.message, busy.retry_after) == (
        503, "upstream 'gpu': HTTP 429: busy", 3)


def test_request_timeout_is_an_invalid_request_in_openais_shape() -> None:
    body = openai_error_body(APIError(408, "slow", code="request_timeout"))
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "request_timeout"
