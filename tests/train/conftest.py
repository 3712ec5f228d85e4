"""Fixtures of the training tests: the tiny Kimi-shaped model (:mod:`helpers.tiny_kimi`), on
CPU with one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The README's test command installs the `train` extra: without it these imports fail the
# run loudly rather than leaving the training tests out.
import torch

from helpers.tiny_kimi import make_model, make_tokenizer


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def model_factory() -> Callable[..., Any]:
    """:func:`helpers.tiny_kimi.make_model`, for tests that need a second fresh model."""
    return make_model


@pytest.fixture
def tokenizer() -> Any:
    return make_tokenizer()


@pytest.fixture
def tiny_model() -> Any:
    return make_model()


@pytest.fixture
def lively_model() -> Any:
    """The tiny model with larger initial weights, so that its samples are not uniform and
    a few RL steps move them."""
    return make_model(initializer_range=0.3)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """The tiny model and its tokenizer saved as a transformers checkpoint directory."""
    directory = tmp_path / "tiny-kimi"
    make_model().save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory
