"""kimi_modes.endpoint: the one spelling of an endpoint's URLs and of its first listed model."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from kimi_modes import endpoint
from kimi_modes.endpoint import api_base, listed_model, metrics_url, server_root


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(endpoint)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("url", "plain", "with_v1"), [
    ("http://h:8000", "http://h:8000", "http://h:8000/v1"),
    ("http://h:8000/", "http://h:8000", "http://h:8000/v1"),
    ("http://h:8000//", "http://h:8000", "http://h:8000/v1"),
    ("http://h:8000/v1/", "http://h:8000/v1", "http://h:8000/v1"),
    ("https://api.moonshot.ai/v1", "https://api.moonshot.ai/v1", "https://api.moonshot.ai/v1"),
    ("http://h/openai", "http://h/openai", "http://h/openai"),
])
def test_api_base_trims_and_adds_v1_only_to_a_bare_host(url: str, plain: str,
                                                          with_v1: str) -> None:
    assert api_base(url) == plain
    assert api_base(url, default_v1=True) == with_v1


@pytest.mark.parametrize(("url", "root"), [
    ("http://h:8000/v1", "http://h:8000"),
    ("http://h:8000/v1/", "http://h:8000"),
    ("http://h:8000", "http://h:8000"),
    ("https://h/vllm/v1", "https://h/vllm"),
    ("http://h/v1x", "http://h/v1x"),
])
def test_server_root_and_metrics_drop_a_trailing_v1_only(url: str, root: str) -> None:
    assert server_root(url) == root
    assert metrics_url(url) == root + "/metrics"


@pytest.mark.parametrize(("listing", "wanted", "expected"), [
    ({"data": [{"id": "a"}, {"id": "b"}]}, None, "a"),
    ({"data": [{"id": "a"}, {"id": "b"}]}, "b", "b"),
    ({"data": [{"id": "a"}, {"id": "b"}]}, "c", "a"),
    ({"data": [{"object": "model"}, 3, {"id": 7}, {"id": "real"}]}, None, "real"),
    ({"data": []}, None, None),
    ({"data": {"id": "a"}}, None, None),
    ({"object": "list"}, None, None),
    ([{"id": "a"}], None, None),
    (None, None, None),
])
def test_listed_model_is_the_wanted_else_the_first_usable_entry(
        listing: Any, wanted: str | None, expected: str | None) -> None:
    entry = listed_model(listing, wanted)
    assert (entry["id"] if entry is not None else None) == expected
