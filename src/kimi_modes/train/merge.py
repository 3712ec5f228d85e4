"""A trained LoRA merged into its base model: one ordinary transformers checkpoint.

:func:`merge_lora` loads the adapter onto the base (:func:`~kimi_modes.train.targets.load_lora`,
which checks that what PEFT wraps is what the adapter saved) and folds it into the weights with
PEFT's ``merge_and_unload`` (``W ← W + (α / r)·B·A``; ``safe_merge``: a merge that would put a
NaN or inf into a weight is refused). :func:`merge_checkpoint` does it from paths and saves the
result with ``save_pretrained`` (safetensors) and the base's tokenizer beside it, so
``AutoModelForCausalLM.from_pretrained(output)`` needs neither PEFT nor the adapter.

A quantised base is refused: the adapter's delta cannot be added to packed INT4/FP8 blocks
without re-quantising them (Kimi K2.5 and later ship INT4 routed experts: merge into
de-quantised weights, then quantise the result). A GGUF base (``gguf_file``) is de-quantised to
float32 at load (:func:`~kimi_modes.train.checkpoint.load_model`), so it merges; the result can
go back to a GGUF with :func:`kimi_modes.train.export.export_merged_gguf`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kimi_modes.train.checkpoint import load_model, load_tokenizer, quantisation
from kimi_modes.train.targets import load_lora


class MergeError(ValueError):
    """The adapter cannot be merged (quantised base, adapter for another model, bad output)."""


def _refuse_quantised(method: str | None) -> None:
    if method is not None:
        raise MergeError(
            f"the base model is quantised ({method}): a LoRA cannot be merged into packed "
            "weights without re-quantising them; merge into de-quantised (e.g. bf16) weights, "
            "then quantise the merged model"
        )


def merge_lora(model: Any, adapter: Path) -> Any:
    """``model`` with the LoRA in ``adapter`` merged into its weights (a plain model again).

    Raises :class:`MergeError` when ``model`` is quantised or the adapter does not fit it.
    """
    _refuse_quantised(quantisation(model))
    try:
        wrapped = load_lora(model, adapter)
        return wrapped.merge_and_unload(safe_merge=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise MergeError(f"{adapter} cannot be merged into this model: {exc}") from None


def merge_checkpoint(
    model: str | Path,
    adapter: Path,
    output: Path,
    *,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Merge ``adapter`` into the model at ``model`` (a checkpoint directory or Hub id; with
    ``gguf_file`` a GGUF inside that directory) and save it, with its tokenizer, to ``output``.

    The base's config is read first, so a quantised checkpoint is refused before its weights
    load. ``output`` must not exist or be empty, and must not be the adapter's directory.
    Returns ``output``.
    """
    from transformers import AutoConfig

    if not (adapter / "adapter_config.json").is_file():
        raise MergeError(f"{adapter} is not a LoRA adapter (no adapter_config.json)")
    if output.resolve() == adapter.resolve():
        raise MergeError("the merged model cannot be written into the adapter's directory")
    if output.exists() and any(output.iterdir()):
        raise MergeError(f"{output} is not empty: choose a new directory")
    config = AutoConfig.from_pretrained(
        model, gguf_file=gguf_file, trust_remote_code=trust_remote_code
    )
    _refuse_quantised(quantisation(config))
    merged = merge_lora(
        load_model(model, gguf_file=gguf_file, trust_remote_code=trust_remote_code), adapter
    )
    merged.save_pretrained(str(output))
    load_tokenizer(model, gguf_file=gguf_file, trust_remote_code=trust_remote_code)\
        .save_pretrained(str(output))
    return output
