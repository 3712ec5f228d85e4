"""Streaming-parser throughput on a short and a long Kimi output, K2 parser and K3 (XTML)
parser side by side in the same run: the cost per character must not grow with the length of
the output.

For each family (default: k2.5, the K2 parser, and k3, the XTML parser) generates a
~1k-token and a ~64k-token output (reasoning, content and a few tool calls; about 4 characters
a token), streams each through :class:`StreamingParser` one token per chunk (a control token
is one chunk, as the engine sends it), and prints characters per second for both (best of
several rounds) and their ratio (long / short; about 1 when the cost per character is flat).
With ``--min-ratio R`` it exits 1 when a family's ratio is below R (the K3 bar: 0.8).

    python benchmarks/parse_speed.py [--families k2.5,k3] [--repeat N] [--seed S]
                                     [--min-ratio 0.8]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time

from kimi_modes.protocol import StreamingParser, format_output, parse_output
from kimi_modes.protocol import tokens as T

CHARS_PER_TOKEN = 4
WORDS = (
    "the",
    "a",
    "model",
    "tool",
    "call",
    "weather",
    "city",
    "reason",
    "answer",
    "check",
    "file",
    "read",
    "write",
    "search",
    "result",
    "because",
    "then",
    "so",
    "we",
    "need",
    "to",
    "look",
    "at",
    "this",
    "value",
    "first",
    "second",
    "Paris",
    "Lyon",
    "42",
    "3.14",
    "code",
)
#: Every control token of either wire format: each streams as one chunk.
_MARKER_RE = re.compile("(" + "|".join(
    re.escape(m) for m in sorted({*T.CONTROL_TOKENS, *T.XTML_CONTROL_TOKENS},
                                 key=len, reverse=True)) + ")")


def make_output(family: str, tokens: int, rng: random.Random) -> str:
    """A ``family`` output of about ``tokens`` tokens: 45% reasoning, 45% content, 3 tool
    calls."""
    budget = tokens * CHARS_PER_TOKEN
    calls = []
    for index in range(3):
        arguments = {"city": rng.choice(WORDS), "days": rng.randint(1, 9), "note": _prose(rng, 60)}
        calls.append((f"functions.get_weather:{index}", json.dumps(arguments)))
    call_chars = sum(len(i) + len(a) for i, a in calls) + 200
    prose = max(budget - call_chars, 100)
    return format_output(
        family,
        reasoning=_prose(rng, int(prose * 0.5)),
        content=_prose(rng, int(prose * 0.5)),
        tool_calls=calls,
    )


def _prose(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        if rng.random() < 0.08:
            word += rng.choice([".\n", ", ", ". ", "\n\n"])
        else:
            word += " "
        out.append(word)
        size += len(word)
    return "".join(out)[:chars]


def tokenize(text: str) -> list[str]:
    """Chunks as an engine streams them: control tokens whole, other text 4 chars a chunk."""
    chunks: list[str] = []
    for part in _MARKER_RE.split(text):
        if _MARKER_RE.fullmatch(part):
            chunks.append(part)
        else:
            chunks += [part[i : i + CHARS_PER_TOKEN] for i in range(0, len(part), CHARS_PER_TOKEN)]
    return chunks


def stream_once(family: str, chunks: list[str]) -> float:
    """CPU seconds to stream ``chunks`` through a fresh parser (result included); CPU time
    rather than wall time, so that other processes on the machine disturb it less."""
    start = time.process_time()
    parser = StreamingParser(family)
    for chunk in chunks:
        parser.feed(chunk)
    parser.close()
    parser.result()
    return time.process_time() - start


def check(family: str, text: str, chunks: list[str]) -> None:
    """The streamed result equals the one-shot one, with three valid calls."""
    expected = parse_output(text, family)
    parser = StreamingParser(family)
    for chunk in chunks:
        parser.feed(chunk)
    parser.close()
    assert parser.result() == expected, "streamed result differs from one-shot"
    assert len(expected.tool_calls) == 3 and all(c.valid for c in expected.tool_calls)


def measure(family: str, rng: random.Random, repeat: int) -> list[tuple[str, int, int, float]]:
    """(label, characters, chunks, best CPU seconds) for the short and the long output."""
    sizes = (("1k tokens", 1_000), ("64k tokens", 64_000))
    texts = [make_output(family, tokens, rng) for _, tokens in sizes]
    chunked = [tokenize(text) for text in texts]
    for text, chunks in zip(texts, chunked, strict=True):
        check(family, text, chunks)
    # Rounds interleave the sizes, so that load from elsewhere hits both alike; in a round
    # the short output is streamed 64 times, so both sizes parse about as much text.
    best = [float("inf")] * len(sizes)
    for _ in range(repeat):
        for i, chunks in enumerate(chunked):
            times = 64 if i == 0 else 1
            seconds = sum(stream_once(family, chunks) for _ in range(times)) / times
            best[i] = min(best[i], seconds)
    return [(label, len(text), len(chunks), seconds)
            for (label, _), text, chunks, seconds in zip(sizes, texts, chunked, best,
                                                         strict=True)]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--families", default="k2.5,k3",
                     help="comma-separated families (k2.5: the K2 parser; k3: XTML)")
    cli.add_argument("--repeat", type=int, default=7, help="rounds (best one reported)")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--min-ratio", type=float, default=None,
                     help="exit 1 when a family's 64k/1k chars/s ratio is below this")
    args = cli.parse_args()
    print(f"{'family':<8}{'output':<12}{'chars':>10}{'chunks':>9}{'CPU ms':>10}"
          f"{'µs/chunk':>10}{'chars/s':>14}")
    ratios: dict[str, float] = {}
    for family in args.families.split(","):
        rows = measure(family, random.Random(args.seed), args.repeat)
        for label, chars, count, seconds in rows:
            print(f"{family:<8}{label:<12}{chars:>10,}{count:>9,}{seconds * 1e3:>10.2f}"
                  f"{seconds / count * 1e6:>10.2f}{chars / seconds:>14,.0f}")
        short, long = rows
        ratios[family] = (long[1] / long[3]) / (short[1] / short[3])
    for family, ratio in ratios.items():
        print(f"{family}: chars/s ratio, 64k / 1k: {ratio:.2f} (1.00 = flat cost per character)")
    if args.min_ratio is not None:
        low = {f: r for f, r in ratios.items() if r < args.min_ratio}
        print(f"flat: every ratio >= {args.min_ratio:.2f}" if not low
              else f"NOT flat (below {args.min_ratio:.2f}): {low}")
        if low:
            sys.exit(1)


if __name__ == "__main__":
    main()
