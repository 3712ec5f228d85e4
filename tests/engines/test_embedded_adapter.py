"""The embedded upstream's ``adapter`` setting: accepted only on ``kind = "embedded"``, passed
to the engine, and a missing adapter file stops the load with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kimi_modes.config import UpstreamSettings


def test_adapter_needs_an_embedded_upstream() -> None:
    with pytest.raises(ValidationError, match="adapter needs kind embedded"):
        UpstreamSettings(name="x", kind="openai_chat", url="http://h/v1", adapter="a.gguf")


@pytest.mark.embedded
def test_a_missing_adapter_is_named(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from kimi_modes.engines.embedded import default_model_path
    from kimi_modes.engines.embedded.model import load_llama

    missing = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError, match="LoRA adapter not found"):
        load_llama(default_model_path(), n_ctx=64, n_threads=1, seed=None, lora_path=missing)


@pytest.mark.embedded
def test_build_engine_passes_the_adapter(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from kimi_modes.assembly import build_engine
    from kimi_modes.engines.embedded import EmbeddedEngine

    engine = build_engine(
        UpstreamSettings(name="e", kind="embedded", adapter=str(tmp_path / "a.gguf"))
    )
    assert isinstance(engine, EmbeddedEngine)
    assert engine._adapter == tmp_path / "a.gguf"
