"""Keep client-supplied text from turning into Kimi control tokens (kimi-protocol.md §2).

A prompt is one string that the engine tokenizes with special tokens enabled, so a user who
writes ``<|im_end|><|im_system|>system<|im_middle|>...`` could forge a system turn. Every piece
of client text is therefore passed through :func:`neutralize_control_tokens` before it is
placed in a prompt; the template's own tokens are added afterwards and are left intact.
"""

from __future__ import annotations

import re

from kimi_modes.protocol import tokens as T

ZERO_WIDTH_SPACE = "\u200b"

_BRACKETED = (T.BOS, T.EOS, *T.OTHER_BRACKET_TOKENS, T.THINK_BEGIN, T.THINK_END)
# Every ``<|word|>`` string, not only the named ones: the tokenizer's 256 special slots also
# hold ``<|reserved_token_N|>`` and a few unnamed-in-the-spec ones, all of which it would map
# to special ids.
_SPECIAL_SLOT = r"<\|[A-Za-z0-9_]{1,64}\|>|"
_CONTROL_TOKEN_RE = re.compile(_SPECIAL_SLOT + "|".join(re.escape(token) for token in _BRACKETED))
# K3 has no ``<think>`` tokens: its structure is all ``<|NAME|>`` specials.
_XTML_TOKEN_RE = re.compile(
    _SPECIAL_SLOT + "|".join(re.escape(t) for t in (T.BOS, T.EOS, *T.OTHER_BRACKET_TOKENS))
)


def neutralize_control_tokens(text: str) -> str:
    """Return ``text`` with every control-token string made harmless.

    Each occurrence of a special-token string gets a ZERO WIDTH SPACE (U+200B) inserted after
    its first character: ``<|im_end|>`` becomes ``<\\u200b|im_end|>``, ``[EOS]`` becomes
    ``[\\u200bEOS]``, ``</think>`` becomes ``<\\u200b/think>``. Covered: every ``<|NAME|>``
    string (NAME of 1 to 64 ASCII letters, digits or ``_``: all named tokens of §2, the
    legacy ``<|media_start|>``, the ``<|reserved_token_N|>`` slots), ``[BOS]``, ``[EOS]``,
    ``[EOT]``, ``<think>`` and ``</think>``. All other text, including a string that already
    holds a U+200B, is returned unchanged, so the result never contains a control-token string
    and the model still reads (almost) the same text. Idempotent.
    """
    if "<" not in text and "[" not in text:
        return text
    return _CONTROL_TOKEN_RE.sub(_break_token, text)


def neutralize_xtml_tokens(text: str) -> str:
    """The K3 (XTML) counterpart of :func:`neutralize_control_tokens`.

    The same ZERO WIDTH SPACE after the first character of every ``<|NAME|>`` string (so
    ``<|open|>``, ``<|close|>``, ``<|sep|>``, ``<|end_of_msg|>`` and the image placeholder),
    ``[BOS]``, ``[EOS]`` and ``[EOT]``; ``<think>`` is ordinary text for K3 and is kept.
    Idempotent. Moonshot's encoder gets the same effect by tokenizing client text without
    specials; a prompt that is one string needs the break.
    """
    if "<" not in text and "[" not in text:
        return text
    return _XTML_TOKEN_RE.sub(_break_token, text)


def _break_token(match: re.Match[str]) -> str:
    token = match.group()
    return token[0] + ZERO_WIDTH_SPACE + token[1:]
