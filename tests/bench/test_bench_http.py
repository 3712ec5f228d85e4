"""The measuring commands' shared HTTP helpers: URLs, error bodies, and the model list read
from a real server (the simulated engine) and from a port nothing listens on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from kimi_modes.bench._http import (
    EndpointError,
    api_base,
    bearer,
    check_http_url,
    client_session,
    error_body_message,
    exception_text,
    first_model,
    http_error,
    list_models,
    server_root,
)


@pytest.mark.parametrize(("url", "base", "root"), [
    ("http://h:8000", "http://h:8000/v1", "http://h:8000"),
    ("http://h:8000/", "http://h:8000/v1", "http://h:8000"),
    ("http://h:8000/v1/", "http://h:8000/v1", "http://h:8000"),
    ("https://api.moonshot.ai/v1", "https://api.moonshot.ai/v1", "https://api.moonshot.ai"),
    ("http://h/proxy/openai", "http://h/proxy/openai", "http://h/proxy/openai"),
])
def test_api_base_and_server_root(url: str, base: str, root: str) -> None:
    assert api_base(url) == base
    assert server_root(url) == root


def test_check_http_url() -> None:
    check_http_url("https://h")
    for bad in ("h:8000", "localhost:8000", "ftp://h", "http://"):
        with pytest.raises(ValueError, match=r"--endpoint must be an http\(s\) URL, not"):
            check_http_url(bad, "--endpoint")


def test_bearer() -> None:
    assert bearer("k") == {"Authorization": "Bearer k"}
    assert bearer(None) == bearer("") == {}


@pytest.mark.parametrize(("body", "message"), [
    ('{"error": {"message": "model  not\\nfound", "type": "x"}}', "model not found"),
    ('{"error": "rate limited"}', "rate limited"),
    ('{"detail": "Not Found"}', "Not Found"),
    ('{"message": "bad key"}', "bad key"),
    ("<html>\n  Bad Gateway\n</html>", "<html> Bad Gateway </html>"),
    ("", ""),
])
def test_error_body_message(body: str, message: str) -> None:
    assert error_body_message(body) == message
    assert error_body_message(body.encode()) == message


def test_http_error_and_exception_text() -> None:
    assert http_error(404, b'{"detail": "Not Found"}', "Not Found") == \
        "HTTP 404 Not Found: Not Found"
    assert http_error(500, b"") == "HTTP 500"
    assert exception_text(ConnectionError("refused\n  by host")) == \
        "ConnectionError: refused by host"
    assert exception_text(TimeoutError()) == "TimeoutError"


async def test_the_model_list_of_a_real_server(start_simulator: Callable[..., Any],
                                               unused_port: int) -> None:
    sim = start_simulator()
    async with client_session() as session:
        models = await list_models(session, sim.v1, bearer("k"))
        assert models and all(isinstance(m, str) for m in models)
        assert await first_model(session, api_base(sim.url), {}) == models[0]

        with pytest.raises(EndpointError, match=r"cannot list the models at .*/nope/models: "
                           r"HTTP 404") as refused:
            await list_models(session, sim.url + "/nope", {})
        assert refused.value.status == 404

        down = f"http://127.0.0.1:{unused_port}/v1"
        with pytest.raises(EndpointError, match=f"cannot reach {down}/models: "
                           "ClientConnectorError") as unreachable:
            await first_model(session, down, {}, limit_s=10)
        assert unreachable.value.status is None
    assert isinstance(session, aiohttp.ClientSession) and session.closed
