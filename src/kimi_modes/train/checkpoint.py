"""Loading the base model of a run or a merge: a transformers checkpoint, or a GGUF file
de-quantised into a plain dense model.

transformers 5.23 marks a model loaded with ``gguf_file=`` as quantised (``GGUF``, not
trainable, not serialisable) even where its legacy loader has already unpacked every weight
into float32 Linears (Llama-shaped GGUFs such as the bundled SmolLM2): ``Trainer`` then
refuses to train it and ``save_pretrained`` to save it. Loading with
``GgufConfig(dequantize=True)`` drops that mark, so the result is an ordinary model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_model(
    model: str | Path, *, gguf_file: str | None = None, trust_remote_code: bool = False
) -> Any:
    """``AutoModelForCausalLM`` from ``model`` (a directory or Hub id); with ``gguf_file``
    (a GGUF inside that directory) its weights de-quantised to float32, unmarked as quantised."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    if gguf_file is None:
        return AutoModelForCausalLM.from_pretrained(model, trust_remote_code=trust_remote_code)
    return AutoModelForCausalLM.from_pretrained(
        model,
        gguf_file=gguf_file,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
        trust_remote_code=trust_remote_code,
    )


def load_tokenizer(
    model: str | Path, *, gguf_file: str | None = None, trust_remote_code: bool = False
) -> Any:
    """``AutoTokenizer`` from ``model`` (from ``gguf_file``'s vocabulary when given)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        model, gguf_file=gguf_file, trust_remote_code=trust_remote_code
    )


def quantisation(model: Any) -> str | None:
    """The quantisation method a loaded model (or its config) is marked with, else ``None``."""
    config = getattr(model, "config", model)
    quantizer = getattr(model, "hf_quantizer", None)
    spec = getattr(config, "quantization_config", None)
    if quantizer is None and spec is None and not getattr(model, "is_quantized", False):
        return None
    spec = spec if spec is not None else getattr(quantizer, "quantization_config", None)
    method = spec.get("quant_method") if isinstance(spec, dict) else getattr(
        spec, "quant_method", None
    )
    return str(getattr(method, "value", method) or "unknown")
