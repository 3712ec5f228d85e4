"""The lm-eval task of ``kimi-modes eval``: the prompt, the few-shot turns, and scoring as
lm-eval's own ``gsm8k`` task scores (``exact_match`` under a flexible and a strict filter)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kimi_modes.bench.eval.answers import GSM8K_IGNORE, extract_answer

#: The question as asked (a Jinja template lm-eval fills in; the few-shot turns use it too).
PROMPT = (
    "Solve the following math problem step by step. End your reply with the line "
    "'The answer is N', where N is the final number.\n\n{{question}}"
)

#: The few-shot assistant turn: the worked solution, then the answer in the asked form.
FEWSHOT_TARGET = "{{rationale}}\nThe answer is {{target}}."

TASK_NAME = "kimi_modes_gsm8k"


def _filter(strict: bool) -> Any:
    """An lm-eval ``custom`` filter function: every reply → its extracted answer."""

    def apply(resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
        # "[invalid]" is lm-eval's own fallback for "no answer found"; it never equals a number.
        return [[extract_answer(r if isinstance(r, str) else None, strict=strict) or "[invalid]"
                 for r in replies] for replies in resps]

    return apply


def task_config(
    test_file: str | Path,
    *,
    fewshot_file: str | Path | None = None,
    num_fewshot: int = 0,
    max_tokens: int = 4096,
    extra_body: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The lm-eval task (a config dict for ``TaskManager.load``) over the normalised files
    :func:`write_task_files` writes.

    Scored as lm-eval's ``gsm8k``: ``exact_match`` with its :data:`GSM8K_IGNORE` and
    ``ignore_case``, under two filters — ``flexible-extract`` (the stated answer, else the
    last number) and ``strict-match`` (only a stated answer). ``extra_body`` keys go into the
    generation kwargs, which lm-eval's chat model copies into every request body. Generation
    is greedy (``temperature`` 0, unless ``extra_body`` sets it) and stops only at the model's
    end: no stop strings.
    """
    if num_fewshot > 0 and fewshot_file is None:
        raise ValueError("num_fewshot needs a fewshot_file")
    files = {"test": str(test_file)}
    if num_fewshot > 0 and fewshot_file is not None:
        files["train"] = str(fewshot_file)
    dataset_kwargs: dict[str, Any] = {"data_files": files}
    if cache_dir is not None:
        dataset_kwargs["cache_dir"] = str(cache_dir)
    metric = {
        "metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
        "ignore_case": True, "ignore_punctuation": False,
        "regexes_to_ignore": list(GSM8K_IGNORE),
    }
    config: dict[str, Any] = {
        "task": TASK_NAME,
        "dataset_path": "json",
        "dataset_kwargs": dataset_kwargs,
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": PROMPT,
        "doc_to_target": "{{target}}",
        "target_delimiter": "",
        "num_fewshot": num_fewshot,
        "generation_kwargs": {
            "until": [],  # without it lm-eval stops at its "\n\n" few-shot delimiter
            "max_gen_toks": max_tokens,
            "do_sample": False,
            "temperature": 0.0,
            **(extra_body or {}),  # the caller's sampling (e.g. temperature) wins
        },
        "metric_list": [metric],
        "filter_list": [
            {"name": "flexible-extract",
             "filter": [{"function": "custom", "filter_fn": _filter(strict=False)},
                        {"function": "take_first"}]},
            {"name": "strict-match",
             "filter": [{"function": "custom", "filter_fn": _filter(strict=True)},
                        {"function": "take_first"}]},
        ],
        "metadata": {"version": 1.0},
    }
    if num_fewshot > 0:
        config["fewshot_split"] = "train"
        config["fewshot_config"] = {"sampler": "first_n", "doc_to_target": FEWSHOT_TARGET}
    return config
