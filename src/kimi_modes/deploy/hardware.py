"""Accelerators the planner knows, as data.

Memory is in GiB: the vendor's "GB" figure is close to the GiB ``nvidia-smi``/``rocm-smi``
report (an H200 shows ~140 GiB for its "141 GB"), and the engines' logs speak GiB. Sources
are vllm-project/recipes ``taxonomy.yaml`` unless a comment says otherwise. Apple M-series
machines are named by chip and unified memory (``m3-ultra-512``) or just ``apple-<GiB>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Vendor = Literal["nvidia", "amd", "apple"]


@dataclass(frozen=True)
class Accelerator:
    """One accelerator type: ``memory_gib`` per device, ``gpus_per_node`` in a usual node
    (an HGX board, an NVL tray, one Mac), ``family`` for checkpoints that need one, and
    ``nvlink_gpus``, how many GPUs one NVLink domain joins (more than a node on NVL72 racks;
    0: the node's own)."""

    key: str
    name: str
    vendor: Vendor
    memory_gib: float
    gpus_per_node: int
    family: str
    nvlink_gpus: int = 0


GPUS: dict[str, Accelerator] = {
    a.key: a
    for a in (
        Accelerator("h100", "H100 SXM", "nvidia", 80, 8, "hopper"),
        # H20: Tom's Hardware on the China-market parts (96 GB HBM3).
        Accelerator("h20", "H20", "nvidia", 96, 8, "hopper"),
        Accelerator("h200", "H200", "nvidia", 141, 8, "hopper"),
        # B200: 180 usable of 192 raw (taxonomy node 1440; nvidia-smi shows ~179).
        Accelerator("b200", "B200", "nvidia", 180, 8, "blackwell"),
        # GB200: taxonomy says 192; NVL72's 13.4 TB / 72 ≈ 186 (third-party); plan with 186.
        # One compute tray holds 4 GPUs; NVL72 joins 72 over NVLink.
        Accelerator("gb200", "GB200", "nvidia", 186, 4, "blackwell", nvlink_gpus=72),
        # B300: 268 in taxonomy and the Kimi-K3.yaml comment (the 288 figure is unverified).
        Accelerator("b300", "B300", "nvidia", 268, 8, "blackwell"),
        # GB300: 288, NVL4 tray of 4 GPUs = 1152 GB.
        Accelerator("gb300", "GB300", "nvidia", 288, 4, "blackwell", nvlink_gpus=72),
        Accelerator("mi300x", "MI300X", "amd", 192, 8, "cdna3"),
        Accelerator("mi325x", "MI325X", "amd", 256, 8, "cdna3"),
        Accelerator("mi355x", "MI355X", "amd", 288, 8, "cdna4"),
        # L20: 48 GB GDDR6 (Tom's Hardware, as H20).
        Accelerator("l20", "L20", "nvidia", 48, 8, "ada"),
        # RTX 4090: 24 GB ("48 GB" boards are modified cards).
        Accelerator("rtx4090", "RTX 4090", "nvidia", 24, 8, "ada"),
        Accelerator("rtx-pro-6000", "RTX Pro 6000", "nvidia", 96, 8, "blackwell"),
    )
}

#: Aliases people type for the same part.
_ALIASES = {"mi355": "mi355x", "mi300": "mi300x", "mi325": "mi325x", "4090": "rtx4090",
            "rtx-4090": "rtx4090"}

#: Apple chips and the unified-memory sizes they ship with (Apple's spec pages; the M3 Ultra's
#: 512 GB: https://www.xda-developers.com/apples-mac-studio-m3-ultra/).
APPLE_CHIPS: dict[str, tuple[int, ...]] = {
    "m2-ultra": (64, 128, 192),
    "m3-max": (36, 48, 64, 96, 128),
    "m3-ultra": (96, 256, 512),
    "m4-max": (36, 48, 64, 128),
    "m4-pro": (24, 48, 64),
}

_APPLE = re.compile(r"^(?P<chip>apple|m\d-(?:pro|max|ultra))-(?P<gib>\d+)$")


def apple(memory_gib: float, chip: str = "apple") -> Accelerator:
    """An Apple M-series machine with ``memory_gib`` of unified memory (one per node)."""
    return Accelerator(f"{chip}-{memory_gib:g}", f"{chip.upper()} {memory_gib:g} GB", "apple",
                       memory_gib, 1, "apple")


def accelerator(name: str) -> Accelerator:
    """The accelerator called ``name`` (``h200``, ``MI355X``, ``m3-ultra-512``, ``apple-192``).

    KeyError, naming what is known, for anything else (including an Apple chip with a memory
    size it does not ship with).
    """
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key in GPUS:
        return GPUS[key]
    match = _APPLE.match(key)
    if match:
        chip, gib = match["chip"], int(match["gib"])
        if chip != "apple" and gib not in APPLE_CHIPS.get(chip, ()):
            sizes = ", ".join(map(str, APPLE_CHIPS.get(chip, ()))) or "none known"
            raise KeyError(f"{chip} ships with {sizes} GB, not {gib}")
        return apple(gib, chip)
    known = ", ".join([*GPUS, *(f"{c}-<GB>" for c in APPLE_CHIPS), "apple-<GB>"])
    raise KeyError(f"unknown accelerator {name!r} (known: {known})")
