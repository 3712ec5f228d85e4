"""One llama.cpp generation, token by token, in the calling (worker) thread.

:func:`generate` drives ``Llama.generate`` itself rather than ``create_completion`` so that it
can count tokens exactly, stop at the very next token when asked to, show special tokens when
the caller needs them (Kimi's tool-call markers), and hand every piece of text to a callback
as soon as it is safe to (never a prefix of a stop string, never half a UTF-8 character).
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kimi_modes.engines.base import TokenLogprob
from kimi_modes.engines.choices import token_logprob

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

StopReason = Literal["stop", "length", "cancelled", "aborted"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling settings of one generation (llama.cpp's names). ``temperature`` 0 is greedy."""

    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Generated:
    """What one generation produced.

    ``text`` is everything handed to the callback (stop strings excluded); ``n_tokens`` counts
    the sampled tokens that were kept (the end-of-generation token is not counted, a token
    that completed a stop string is). ``reason`` is ``stop`` (end token or stop string),
    ``length`` (``max_tokens`` reached), ``cancelled`` (the cancel event was set) or
    ``aborted`` (the callback returned ``False``). ``stop_string``: the stop string that
    ended it, if one did.
    """

    text: str
    n_tokens: int
    reason: StopReason
    stop_string: str | None = None


def generate(
    llama: Llama,
    prompt_tokens: Sequence[int],
    *,
    sampling: Sampling,
    max_tokens: int,
    stop: Sequence[str] = (),
    grammar: LlamaGrammar | None = None,
    special: bool = False,
    cancel: threading.Event,
    on_text: Callable[[str], bool] | None = None,
    top_logprobs: int | None = None,
    on_logprobs: Callable[[TokenLogprob], None] | None = None,
) -> Generated:
    """Generate up to ``max_tokens`` tokens after ``prompt_tokens`` (blocking).

    ``on_text`` receives the text as it becomes final and returns ``False`` to stop early.
    ``on_logprobs``, when given, receives each kept token's log probability (of the model's
    own distribution, before sampling settings and grammar) with its ``top_logprobs`` most
    likely alternatives, before the token's text goes to ``on_text``.
    ``cancel`` is checked before each token is decoded, so a cancelled generation costs at
    most one more decode step. The KV cache keeps whatever prefix the next call shares.
    """
    import llama_cpp

    vocab = llama._model.vocab
    seed = sampling.seed
    if seed is not None:
        llama.set_seed(seed & 0xFFFFFFFF)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    stops = [s for s in stop if s]
    pending = ""  # decoded text not yet handed out: it may begin a stop string
    parts: list[str] = []
    n_tokens = 0
    reason: StopReason = "stop"
    stop_string: str | None = None

    def hand_out(text: str) -> bool:
        if not text:
            return True
        parts.append(text)
        return on_text(text) if on_text is not None else True

    if max_tokens <= 0 or cancel.is_set():
        return Generated("", 0, "length" if not cancel.is_set() else "cancelled")

    tokens = llama.generate(
        list(prompt_tokens),
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        temp=sampling.temperature,
        repeat_penalty=sampling.repeat_penalty,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        grammar=grammar,
    )
    try:
        for token in tokens:
            if cancel.is_set():
                reason = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            n_tokens += 1
            if on_logprobs is not None:
                on_logprobs(_logprob(llama, token, top_logprobs or 0))
            pending += decoder.decode(llama.detokenize([token], special=special))
            cut, stop_string = _first_stop(pending, stops)
            if cut is not None:
                hand_out(pending[:cut])
                pending = ""
                reason = "stop"
                break
            keep = _held_back(pending, stops)
            ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            if not hand_out(ready):
                reason = "aborted"
                break
            if n_tokens >= max_tokens:
                reason = "length"
                break
    finally:
        tokens.close()
    if reason in ("stop", "length", "cancelled"):
        hand_out(pending + decoder.decode(b"", final=True))
    return Generated("".join(parts), n_tokens, reason, stop_string)


def _logprob(llama: Llama, token: int, top: int) -> TokenLogprob:
    """``token``'s entry, from the logits it was sampled from (the context's last output:
    ``Llama.generate`` evaluates a token only after handing it out)."""
    import numpy as np
    from llama_cpp import Llama

    n_vocab = llama.n_vocab()
    logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,))
    logprobs = Llama.logits_to_logprobs(logits)
    best: list[int] = []
    if top > 0:
        picked = np.argpartition(-logprobs, top - 1)[:top]
        best = sorted((int(i) for i in picked), key=lambda i: -float(logprobs[i]))
    pieces = [llama.detokenize([i], special=True) for i in best]
    raw = llama.detokenize([token], special=True)
    return token_logprob(
        raw.decode("utf-8", "replace"), float(logprobs[token]),
        [(piece.decode("utf-8", "replace"), float(logprobs[i]))
         for piece, i in zip(pieces, best, strict=True)],
        raw=raw, top_raw=pieces)


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int | None, str | None]:
    """Where the first stop string in ``text`` begins, and which one it is."""
    found = [(i, s) for s, i in ((s, text.find(s)) for s in stops) if i >= 0]
    return min(found) if found else (None, None)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could begin one of ``stops``."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest
