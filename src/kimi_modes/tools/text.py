"""Looking at file contents as text: binary sniffing, bounded line reading, cutting long lines.

Shared by the workspace file tools and ``web_fetch``; pure functions over bytes and strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["SNIFF_BYTES", "binary_kind", "bounded_lines", "cut_line", "looks_binary"]

#: How many leading bytes :func:`looks_binary` is meant to be given.
SNIFF_BYTES = 8192

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive (or docx/xlsx/jar)"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x7fELF", "ELF executable"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"RIFF", "RIFF media (WAV/AVI/WebP)"),
    (b"BZh", "bzip2 data"),
    (b"\xfd7zXZ\x00", "xz data"),
    (b"PAR1", "Parquet file"),
    (b"\x93NUMPY", "NumPy array"),
)


def looks_binary(head: bytes) -> bool:
    """Whether the first bytes of a file look binary: a NUL byte, or text that is mostly
    not UTF-8."""
    if b"\x00" in head:
        return True
    if not head:
        return False
    text = head.decode("utf-8", errors="replace")
    return text.count("\ufffd") > max(8, len(text) // 10)


def binary_kind(head: bytes) -> str:
    """What binary data starting with ``head`` is, in words (``PNG image``, ...)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "binary data"


def cut_line(line: str, limit: int, extra_bytes: int = 0) -> str:
    """``line`` cut to ``limit`` characters with a marker saying how much was left out
    (``extra_bytes``: bytes of the line that were never read)."""
    if len(line) <= limit and not extra_bytes:
        return line
    left = []
    if len(line) > limit:
        left.append(f"{len(line) - limit} characters")
    if extra_bytes:
        left.append(f"{extra_bytes} bytes")
    return f"{line[:limit]} [... {' and '.join(left)} more on this line]"


def bounded_lines(f: BinaryIO, cap: int) -> Iterator[tuple[bytes, int]]:
    """The lines of ``f``, each as at most ``cap`` bytes and the count of bytes of it that
    were skipped, so one enormous line never sits in memory."""
    while True:
        head = f.readline(cap)
        if not head:
            return
        skipped = 0
        if not head.endswith(b"\n"):
            while True:
                rest = f.readline(65536)
                if not rest:
                    break
                skipped += len(rest)
                if rest.endswith(b"\n"):
                    skipped -= 1
                    break
        yield head, skipped
