"""A trained PEFT LoRA adapter as a llama.cpp LoRA GGUF, for the embedded engine.

:func:`export_lora_gguf` reads a PEFT adapter directory (``adapter_config.json`` and
``adapter_model.safetensors``, as ``kimi-modes train run`` saves it) and the base model's GGUF
(for the architecture, the layer and head counts), and writes a GGUF adapter that
``llama_cpp.Llama(lora_path=...)`` (llama.cpp's ``--lora``) applies to that GGUF:

- tensor names are mapped with the ``gguf`` package's own HF → GGUF name table
  (``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q``), with ``.weight.lora_a`` /
  ``.weight.lora_b`` suffixes; ``adapter.type = "lora"`` and ``adapter.lora.alpha`` are set,
  so llama.cpp scales by ``alpha / r`` as PEFT does;
- llama.cpp's Llama GGUFs store ``q``/``k`` rows permuted for its rotary layout
  (``convert_hf_to_gguf.py``'s ``permute``); the ``lora_b`` of a ``q_proj``/``k_proj``
  adapter is permuted the same way, so the adapted rows line up.

Only the ``llama`` architecture is supported (SmolLM2 and other Llama-shaped GGUFs). Needs
the ``gguf``, ``numpy`` and ``safetensors`` packages (the ``train`` extra and llama-cpp-python
bring them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

#: GGUF architectures this exporter knows the tensor layout of.
SUPPORTED_ARCHITECTURES = ("llama",)

_PEFT_NAME = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


class ExportError(ValueError):
    """The adapter cannot be exported for this GGUF (unknown tensor, unsupported model)."""


def _permute_rows(rows: Any, n_head: int) -> Any:
    """llama.cpp's rotary row order for a ``q``/``k`` projection (its ``permute``)."""
    return (
        rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        raise ExportError(f"the base GGUF has no {key}")
    return field.contents()


def export_lora_gguf(adapter_dir: Path, base_gguf: Path, output: Path) -> Path:
    """Write ``adapter_dir``'s LoRA as a llama.cpp adapter GGUF for ``base_gguf`` at ``output``.

    Tensors are written as float32. Returns ``output``. Raises :class:`ExportError` when the
    base GGUF is not a supported architecture, the adapter uses DoRA, bias or ``modules_to_save``
    weights, or a module has no GGUF name; ``FileNotFoundError`` when a file is missing.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("use_dora"):
        raise ExportError("DoRA adapters cannot be exported to llama.cpp")
    reader = gguf.GGUFReader(base_gguf)
    arch = str(_field(reader, "general.architecture"))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ExportError(f"architecture {arch!r} is not supported ({SUPPORTED_ARCHITECTURES})")
    n_blocks = int(_field(reader, f"{arch}.block_count"))
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    kv_field = reader.get_field(f"{arch}.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    arch_id = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_id, n_blocks)
    base_tensors = {tensor.name for tensor in reader.tensors}

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    writer = gguf.GGUFWriter(output, arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for key in sorted(weights):
        match = _PEFT_NAME.match(key)
        if match is None:
            raise ExportError(f"{key}: only LoRA A/B weights can be exported")
        module, part = match["module"], match["part"]
        gguf_name = names.get_name(module)
        if gguf_name is None or f"{gguf_name}.weight" not in base_tensors:
            raise ExportError(f"{module} has no tensor in {base_gguf.name}")
        data = weights[key].astype(np.float32)
        if part == "B" and module.endswith("q_proj"):
            data = _permute_rows(data, n_head)
        elif part == "B" and module.endswith("k_proj"):
            data = _permute_rows(data, n_head_kv)
        writer.add_tensor(f"{gguf_name}.weight.lora_{part.lower()}", np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return output
