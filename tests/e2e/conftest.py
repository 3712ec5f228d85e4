"""Fixtures of the end-to-end tests (the process starters are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def sim(start_simulator: Callable[..., Any]) -> Any:
    """A simulated engine with small latencies (10 ms to the first token, 1 ms a token)."""
    return start_simulator("--ttft", "0.01", "--tpot", "0.001")
