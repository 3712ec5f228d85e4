"""The requests a serving benchmark sends: synthetic ``random`` ones, or a JSONL file.

``random`` draws input and output lengths exactly as vLLM's ``RandomDataset`` does for the same
seed (``numpy.random.default_rng(seed)``; integers uniform on
``[floor(L·(1−r)), ceil(L·(1+r))]``, the output's low end at least 1), for a tokenizer that adds
no special tokens. The prompt text needs no tokenizer: it is a run of common English words of at
most four letters separated by single spaces. Each such word is one token for the simulated
engine's tokenizer (pieces of at most four word characters) and, being a common word, one token
for BPE tokenizers such as Kimi's too, so a prompt of *n* words is about *n* tokens. The numbers
reported afterwards are the server's own (``usage``), not this estimate.

A JSONL file holds one request a line, see :func:`load_jsonl` and docs/measure/serve.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.bench._jsonl import JsonlError, read_objects

# vLLM's defaults for the random dataset.
DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 128
DEFAULT_NUM_PROMPTS = 1000

# Common English words of two to four letters: one token each (see the module docstring).
_WORD_TEXT = (
    "the and for are but not you all any can had her was one our out day get has him his how "
    "man new now old see two way who boy did its let put say she too use able also back been "
    "best both call came come does done down each even ever face fact feel find five form four "
    "free from full give goes gone good half hand hard have head hear help here high hold home "
    "hope hour idea into just keep kind knew know land last late left less life like line list "
    "live long look lost love made make many mind more most move much must name near need next "
    "nice once only open over page part past plan play read real rest road room rule said same "
    "seen self send show side sign size some soon sort stay step stop such sure take talk tell "
    "than that them then they thin this time told took town tree true turn type unit upon used "
    "very view wait walk wall want warm week well went were what when whom wide will wind wish "
    "with word work year your area bank base bill blue body book card care case cell city club "
    "cold cost crew dark data date deal deep door draw drop easy edge else fall farm fast fear "
    "file fill film fine fire firm fish flat food foot fund game gave girl glad goal gold grow "
    "hair hall heat hill huge item join jump king lack lady lake lead lift loss main mark meet "
    "mile miss moon note pair park pass path pick plus poor pull push race rain rate rich ride "
    "ring rise risk rock role roof safe sale seat sell ship shop shot sick skin slow snow soft "
    "soil song star stem suit tall task team term test text tiny tone tool tour trip vast vote "
    "wave wear west wife wild wood yard zone"
)
_WORDS = _WORD_TEXT.split()

_APPROX_TOKEN_RE = re.compile(r"\s*\w{1,4}|\s*[^\w\s]|\s+")


class DatasetError(ValueError):
    """The dataset options or file cannot give requests; the message says why, in one line."""


@dataclass(slots=True)
class SampleRequest:
    """One request to send.

    ``prompt`` (a text, for either endpoint) or ``messages`` (chat only) is set.
    ``prompt_len`` is the expected prompt length in tokens (replaced by the server's
    ``usage.prompt_tokens`` when it reports one). ``expected_output_len`` becomes
    ``max_completion_tokens`` (chat) or ``max_tokens`` (completions); ``None`` leaves the
    length to the server. ``body`` holds further request fields of this request.
    """

    prompt: str | None
    prompt_len: int
    expected_output_len: int | None
    messages: list[dict[str, Any]] | None = None
    body: dict[str, Any] = field(default_factory=dict)


def length_bounds(length: int, range_ratio: float, *, at_least: int = 0) -> tuple[int, int]:
    """vLLM's sampling interval ``[floor(L·(1−r)), ceil(L·(1+r))]``, both ends at least
    ``at_least``. ``range_ratio`` must lie in [0, 1)."""
    if not 0.0 <= range_ratio < 1.0:
        raise DatasetError(f"--random-range-ratio must be in [0, 1), not {range_ratio}")
    low = math.floor(length * (1 - range_ratio))
    high = math.ceil(length * (1 + range_ratio))
    return max(low, at_least), max(high, at_least)


def sample_lengths(
    num: int, *, input_len: int, output_len: int, range_ratio: float, seed: int
) -> tuple[list[int], list[int]]:
    """Input and output lengths of ``num`` requests, the same draws as vLLM's
    ``RandomDataset.get_sampling_params`` for ``seed`` (no special tokens)."""
    import numpy as np

    if input_len < 0 or output_len < 1:
        raise DatasetError("--random-input-len must be >= 0 and --random-output-len >= 1")
    in_low, in_high = length_bounds(input_len, range_ratio)
    out_low, out_high = length_bounds(output_len, range_ratio, at_least=1)
    rng = np.random.default_rng(seed)
    inputs = rng.integers(in_low, in_high + 1, size=num)
    outputs = rng.integers(out_low, out_high + 1, size=num)
    return [int(n) for n in inputs], [int(n) for n in outputs]


def word_prompt(rng: Any, num_tokens: int) -> str:
    """``num_tokens`` common words drawn with ``rng`` (a ``numpy.random.Generator``), joined by
    single spaces: ``num_tokens`` tokens for the simulated engine, about that for a BPE."""
    picks = rng.integers(0, len(_WORDS), size=num_tokens)
    return " ".join(_WORDS[int(i)] for i in picks)


def random_requests(
    num: int,
    *,
    input_len: int = DEFAULT_INPUT_LEN,
    output_len: int = DEFAULT_OUTPUT_LEN,
    range_ratio: float = 0.0,
    prefix_len: int = 0,
    seed: int = 0,
) -> list[SampleRequest]:
    """vLLM's ``random`` dataset: each prompt is a shared prefix of ``prefix_len`` tokens plus
    its own drawn number of tokens; ``prompt_len`` is their sum."""
    import numpy as np

    if num < 1:
        raise DatasetError("--num-prompts must be at least 1")
    if prefix_len < 0:
        raise DatasetError("--random-prefix-len must be >= 0")
    # vLLM refuses when the shortest possible prompt is empty, whatever the draws.
    if prefix_len + length_bounds(input_len, range_ratio)[0] < 1:
        raise DatasetError(
            "--random-input-len is too small: with this --random-range-ratio a prompt could be "
            "empty; raise --random-input-len or --random-prefix-len"
        )
    inputs, outputs = sample_lengths(
        num, input_len=input_len, output_len=output_len, range_ratio=range_ratio, seed=seed
    )
    # A stream of its own, so the lengths stay those vLLM draws for the same seed.
    text_rng = np.random.default_rng([seed, 1])
    prefix = word_prompt(text_rng, prefix_len)
    requests = []
    for n_in, n_out in zip(inputs, outputs, strict=True):
        own = word_prompt(text_rng, n_in)
        prompt = f"{prefix} {own}" if prefix and own else prefix or own
        requests.append(SampleRequest(prompt, prefix_len + n_in, n_out))
    return requests


def approximate_tokens(text: str) -> int:
    """A tokenizer-free estimate: pieces of at most four word characters, single punctuation
    characters and whitespace runs (the simulated engine's rule)."""
    return len(_APPROX_TOKEN_RE.findall(text))


def _messages_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _positive_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatasetError(f"{where}: {what} must be a positive integer, not {value!r}")
    return value


def parse_jsonl_line(obj: dict[str, Any], where: str) -> SampleRequest:
    """One JSONL line (already decoded) as a request; ``where`` names it in errors."""
    body = dict(obj)
    prompt = body.pop("prompt", None)
    messages = body.pop("messages", None)
    if (prompt is None) == (messages is None):
        raise DatasetError(f"{where}: give exactly one of 'prompt' (a string) or 'messages'")
    if prompt is not None and not isinstance(prompt, str):
        raise DatasetError(f"{where}: 'prompt' must be a string")
    if messages is not None and not (
        isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)
    ):
        raise DatasetError(f"{where}: 'messages' must be a non-empty list of message objects")
    output_len: int | None = None
    for key in ("output_len", "max_completion_tokens", "max_tokens"):
        if key in body:
            value = _positive_int(body.pop(key), key, where)
            output_len = value if output_len is None else output_len
    if "prompt_len" in body:
        prompt_len = _positive_int(body.pop("prompt_len"), "prompt_len", where)
    else:
        text = prompt if prompt is not None else _messages_text(messages or [])
        prompt_len = approximate_tokens(text)
    return SampleRequest(prompt, prompt_len, output_len, messages=messages, body=body)


def load_jsonl(path: Path, num: int | None = None) -> list[SampleRequest]:
    """The requests of a JSONL file, in file order; blank lines are skipped. With ``num``
    larger than the file, the lines are used again from the top until there are ``num``.

    Each line is an object with ``prompt`` (a string) or ``messages`` (a chat), optionally
    ``output_len`` (or ``max_completion_tokens`` / ``max_tokens``), ``prompt_len`` (the prompt's
    tokens, used only when the server reports no usage) and any other request fields, sent as
    they are (``temperature``, ``tools``, ``chat_template_kwargs``, ``model``...).
    """
    try:
        requests = [parse_jsonl_line(line.value, line.where) for line in read_objects(path)]
    except JsonlError as exc:
        raise DatasetError(str(exc)) from None
    if not requests:
        raise DatasetError(f"{str(path)!r} holds no requests")
    if num is None:
        return requests
    if num < 1:
        raise DatasetError("--num-prompts must be at least 1")
    return [requests[i % len(requests)] for i in range(num)]
