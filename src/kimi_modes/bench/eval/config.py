"""What ``kimi-modes eval`` evaluates and where: the targets (models, or one model with the
thinking switch flipped), the endpoint and the limits, and the one error of the command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.bench._http import check_http_url, server_root

#: The example problems shipped with the package.
SAMPLE_DATA = Path(__file__).parents[1] / "data" / "gsm8k_sample.jsonl"


class EvalError(Exception):
    """The evaluation cannot run or finish (bad data file, endpoint down, lm-eval missing, a
    request refused); the message is one line."""


@dataclass(frozen=True, slots=True)
class EvalTarget:
    """One column of the comparison: a label, the model id sent, and body keys it adds."""

    label: str
    model: str
    extra_body: dict[str, Any] = field(default_factory=dict)


MODES = ("instant", "thinking")


def targets_for(models: Sequence[str], modes: Sequence[str],
                extra_body: dict[str, Any] | None = None) -> list[EvalTarget]:
    """What to evaluate, in order.

    - ``models`` only: each id as it is.
    - ``modes`` only: the gateway's ids, ``kimi-k2.5-<mode>``.
    - ``modes`` and one model: that model with Kimi's thinking switch,
      ``chat_template_kwargs.thinking`` true/false (a vLLM or SGLang serving K2.5).

    ``extra_body`` goes into every request (a mode's switch wins over its ``thinking``).
    """
    extra = dict(extra_body or {})
    for mode in modes:
        if mode not in MODES:
            raise EvalError(f"unknown mode {mode!r}: use instant and/or thinking")
    if len(set(modes)) != len(modes) or len(set(models)) != len(models):
        raise EvalError("each model and mode may be named once")
    if not modes:
        return [EvalTarget(m, m, extra) for m in models]
    if not models:
        return [EvalTarget(f"kimi-k2.5-{mode}", f"kimi-k2.5-{mode}", extra) for mode in modes]
    if len(models) > 1:
        raise EvalError("--modes goes with at most one --model (the one to switch)")
    kwargs = extra.get("chat_template_kwargs")
    base_kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    return [
        EvalTarget(f"{models[0]} ({mode})", models[0],
                   {**extra, "chat_template_kwargs": {**base_kwargs,
                                                      "thinking": mode == "thinking"}})
        for mode in modes
    ]


@dataclass(slots=True)
class EvalConfig:
    """Where and how. ``base_url`` is the server root (``http://host:port``; a trailing
    ``/v1`` is tolerated)."""

    base_url: str = "http://127.0.0.1:8000"
    data_file: str | Path = SAMPLE_DATA
    api_key: str | None = None
    limit: int | None = None
    num_fewshot: int = 0
    max_tokens: int = 4096
    concurrency: int = 8
    timeout: float = 600.0
    max_retries: int = 3
    think_end_token: str | None = None

    @property
    def root(self) -> str:
        return server_root(self.base_url)

    @property
    def chat_url(self) -> str:
        return self.root + "/v1/chat/completions"

    def check(self) -> None:
        try:
            check_http_url(self.base_url)
        except ValueError as exc:
            raise EvalError(str(exc)) from None
        for name, value in (("--max-tokens", self.max_tokens),
                            ("--concurrency", self.concurrency),
                            ("--max-retries", self.max_retries)):
            if value < 1:
                raise EvalError(f"{name} must be at least 1")
        if self.timeout <= 0:
            raise EvalError("--timeout must be > 0")
