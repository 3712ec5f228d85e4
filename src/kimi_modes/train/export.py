"""A trained LoRA for the embedded engine: as a llama.cpp LoRA GGUF, or merged into the base GGUF.

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

:func:`export_merged_gguf` writes a whole model GGUF from a merged checkpoint
(:func:`kimi_modes.train.merge.merge_checkpoint` of a GGUF base): the base GGUF's metadata and
tokenizer copied as they are, each tensor the merge left unchanged copied in its own encoding
(e.g. SmolLM2's Q4_1 blocks), and each changed one written in ``outtype`` (F16 by default;
re-quantising to the base's 4-bit type would round a small LoRA delta away), with the same
name table and ``q``/``k`` row permutation.

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


class _BaseGguf:
    """The base GGUF's reader, architecture, head counts and HF → GGUF tensor names."""

    def __init__(self, path: Path) -> None:
        import gguf

        self.reader = gguf.GGUFReader(path)
        self.arch = str(_field(self.reader, "general.architecture"))
        if self.arch not in SUPPORTED_ARCHITECTURES:
            raise ExportError(
                f"architecture {self.arch!r} is not supported ({SUPPORTED_ARCHITECTURES})"
            )
        n_blocks = int(_field(self.reader, f"{self.arch}.block_count"))
        self.n_head = int(_field(self.reader, f"{self.arch}.attention.head_count"))
        kv_field = self.reader.get_field(f"{self.arch}.attention.head_count_kv")
        self.n_head_kv = int(kv_field.contents()) if kv_field is not None else self.n_head
        arch_id = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[self.arch]
        self.names = gguf.get_tensor_name_map(arch_id, n_blocks)
        self.tensors = {tensor.name: tensor for tensor in self.reader.tensors}

    def rows_in_gguf_order(self, module: str, rows: Any) -> Any:
        """``rows`` of ``module``'s weight (or its ``lora_B``) in llama.cpp's rotary order."""
        if module.endswith("q_proj"):
            return _permute_rows(rows, self.n_head)
        if module.endswith("k_proj"):
            return _permute_rows(rows, self.n_head_kv)
        return rows


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
    base = _BaseGguf(base_gguf)
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    writer = gguf.GGUFWriter(output, base.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for key in sorted(weights):
        match = _PEFT_NAME.match(key)
        if match is None:
            raise ExportError(f"{key}: only LoRA A/B weights can be exported")
        module, part = match["module"], match["part"]
        gguf_name = base.names.get_name(module)
        if gguf_name is None or f"{gguf_name}.weight" not in base.tensors:
            raise ExportError(f"{module} has no tensor in {base_gguf.name}")
        data = weights[key].astype(np.float32)
        if part == "B":
            data = base.rows_in_gguf_order(module, data)
        writer.add_tensor(f"{gguf_name}.weight.lora_{part.lower()}", np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return output


#: Encodings :func:`export_merged_gguf` writes changed tensors in.
MERGED_OUTTYPES = ("f32", "f16", "q8_0")


def export_merged_gguf(
    merged_dir: Path, base_gguf: Path, output: Path, *, outtype: str = "f16"
) -> Path:
    """Write the merged checkpoint in ``merged_dir`` as a model GGUF at ``output``, built on
    ``base_gguf`` (the GGUF the merged model was loaded from; see the module docstring).

    Returns ``output``. Raises :class:`ExportError` for an unsupported architecture or
    ``outtype`` (one of :data:`MERGED_OUTTYPES`), a checkpoint tensor with no GGUF name in the
    base (other than a tied ``lm_head``), or a shape that differs from the base's.
    """
    import gguf
    import numpy as np
    from safetensors import safe_open

    if outtype not in MERGED_OUTTYPES:
        raise ExportError(f"outtype {outtype!r} is not one of {MERGED_OUTTYPES}")
    qtype = gguf.GGMLQuantizationType[outtype.upper()]
    base = _BaseGguf(base_gguf)
    merged: dict[str, tuple[str, Any]] = {}  # GGUF name -> (HF module, merged weight)
    handles = [safe_open(str(path), "np") for path in sorted(merged_dir.glob("*.safetensors"))]
    if not handles:
        raise ExportError(f"{merged_dir} holds no .safetensors weights")
    for handle in handles:
        for key in handle.keys():  # type: ignore[no-untyped-call]  # noqa: SIM118
            name = base.names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None or name not in base.tensors:
                if key == "lm_head.weight" and "output.weight" not in base.tensors:
                    continue  # the base ties its head to the embedding
                raise ExportError(f"{key} has no tensor in {base_gguf.name}")
            weight = handle.get_tensor(key)  # type: ignore[no-untyped-call]
            merged[name] = (key.rsplit(".", 1)[0], weight)

    writer = gguf.GGUFWriter(output, base.arch)
    for field in base.reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for tensor in base.reader.tensors:
        raw = (tensor.data, tensor.data.shape, tensor.tensor_type)
        if tensor.name in merged:
            module, weight = merged[tensor.name]
            weight = base.rows_in_gguf_order(module, weight.astype(np.float32))
            old = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            if old.shape != weight.shape:
                raise ExportError(
                    f"{tensor.name}: merged shape {weight.shape} ≠ base {old.shape}"
                )
            if not np.array_equal(old, weight):
                data = np.ascontiguousarray(gguf.quants.quantize(weight, qtype))
                raw = (data, data.shape, qtype)
        writer.add_tensor(tensor.name, raw[0], raw_shape=raw[1], raw_dtype=raw[2])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return output
