"""A small deterministic tokenizer standing in for Kimi's tiktoken BPE.

Every control token of kimi-protocol.md §2 (K2.x) and §9 (K3's XTML) is one token. Other
text is cut into pieces of at most four word characters (the first piece of a word keeps its
leading whitespace), single punctuation characters (also with their leading whitespace) and
trailing whitespace. The pieces of :func:`tokenize` always join back to the input, so a
streamed answer reassembles exactly; :func:`count_tokens` gives the same count without
building the list.
"""

from __future__ import annotations

import re

from kimi_modes.protocol import tokens as T

_SPECIALS = {*T.CONTROL_TOKENS, *T.XTML_CONTROL_TOKENS, T.XTML_IMAGE_PLACEHOLDER}
_SPECIAL_RE = re.compile(
    "(" + "|".join(re.escape(t) for t in sorted(_SPECIALS, key=len, reverse=True)) + ")"
)
_PIECE_RE = re.compile(r"\s*\w{1,4}|\s*[^\w\s]|\s+")

#: The tokens that ``skip_special_tokens`` hides (kimi-protocol.md §2, §9); the output's
#: structure (tool-call markers, the think tags, K3's element markers) is not among them.
HIDDEN_TOKENS: frozenset[str] = frozenset(
    {
        T.BOS,
        T.EOS,
        T.IM_END,
        T.IM_USER,
        T.IM_ASSISTANT,
        T.IM_SYSTEM,
        T.IM_MIDDLE,
        T.MEDIA_BEGIN,
        T.MEDIA_START_LEGACY,
        T.MEDIA_CONTENT,
        T.MEDIA_END,
        T.MEDIA_PAD,
        T.XTML_END_OF_MSG,
        T.XTML_IMAGE_PLACEHOLDER,
    }
)


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``, in order; ``"".join(tokenize(text)) == text``."""
    out: list[str] = []
    for i, part in enumerate(_SPECIAL_RE.split(text)):
        if i % 2:
            out.append(part)
        elif part:
            out.extend(_PIECE_RE.findall(part))
    return out


def count_tokens(text: str) -> int:
    """``len(tokenize(text))``, computed without keeping the pieces."""
    total = 0
    for i, part in enumerate(_SPECIAL_RE.split(text)):
        if i % 2:
            total += 1
        elif part:
            total += len(_PIECE_RE.findall(part))
    return total
