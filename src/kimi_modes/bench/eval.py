"""``kimi-modes eval``: accuracy on GSM8K-style word problems, scored by lm-evaluation-harness.

The problems come from a JSONL file (``question`` and ``answer``: GSM8K's own answer text ending
in ``#### <number>``, or a plain number). Each model (a gateway mode, or one model id with the
thinking switch on and off) is asked every problem through lm-eval's ``local-chat-completions``
model; the answer is the number after "The answer is", "####" or ``\\boxed{}`` (the last such),
else the last number of the reply. Nothing is downloaded: the harness reads a normalised copy
of the file from a temporary folder, with no tokenizer and the Hugging Face hubs offline.

lm-eval is an optional dependency (``pip install 'kimi-modes[eval]'``); it is imported only
when :func:`run_eval` runs. The pure parts (reading problems, extracting and normalising answers,
the task config) work without it.

Example::

    from kimi_modes.bench.eval import EvalConfig, run_eval, targets_for, format_table

    config = EvalConfig(base_url="http://127.0.0.1:8000", data_file="gsm8k_sample.jsonl")
    report = run_eval(config, targets_for(models=[], modes=["instant", "thinking"]))
    print(format_table(report))
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.bench._errors import error_body_message
from kimi_modes.endpoint import listed_model, server_root

#: The example problems shipped with the package.
SAMPLE_DATA = Path(__file__).with_name("data") / "gsm8k_sample.jsonl"

#: What lm-eval's own ``gsm8k`` task removes before comparing prediction and target
#: (``metric_list[0].regexes_to_ignore``), applied in this order, then lower-cased.
GSM8K_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")

#: The question as asked (a Jinja template lm-eval fills in; the few-shot turns use it too).
PROMPT = (
    "Solve the following math problem step by step. End your reply with the line "
    "'The answer is N', where N is the final number.\n\n{{question}}"
)

#: The few-shot assistant turn: the worked solution, then the answer in the asked form.
FEWSHOT_TARGET = "{{rationale}}\nThe answer is {{target}}."

TASK_NAME = "kimi_modes_gsm8k"
INSTALL_HINT = (
    "lm-eval is not installed: pip install 'kimi-modes[eval]' (install PyTorch's CPU build "
    "first, e.g. pip install torch --index-url https://download.pytorch.org/whl/cpu, or pip "
    "pulls the CUDA one)"
)

# A number as people write it: optional sign, digits with thousands commas, a fraction.
# The sign counts only where a word does not touch it ("2-3" is not "-3").
_NUM = r"(?:(?<![\w])-)?\$?\d(?:[\d,]*\d)?(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUM)
# The stated answer: "The (final) answer is N", "Answer: N", "#### N", "\boxed{N}".
_STATED_RE = re.compile(
    r"(?i)answer\s*(?:is|:|=)\s*[:*\s]*\\?\$?\s*(" + _NUM + r")"
    r"|####\s*\$?\s*(" + _NUM + r")"
    r"|\\boxed\{\s*\\?\$?\s*(" + _NUM + r")"
)
_CALCULATOR_RE = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: <<3*12=36>>


class EvalError(Exception):
    """The evaluation cannot run or finish (bad data file, endpoint down, lm-eval missing, a
    request refused); the message is one line."""


# --------------------------------------------------------------------------- answers


def canonical_number(text: str) -> str:
    """``text`` (a number as written: ``$1,250.00``, ``-3``, ``2.50``) without ``$``, commas,
    a ``+`` sign, leading zeros and trailing fractional zeros: ``1250``, ``-3``, ``2.5``.

    :class:`ValueError` if ``text`` is not a number.
    """
    cleaned = re.sub(r"[\s$,]", "", text).removeprefix("+")
    match = re.fullmatch(r"(-?)(\d*)(?:\.(\d*))?", cleaned)
    if match is None or not (match.group(2) or match.group(3)):
        raise ValueError(f"not a number: {text!r}")
    sign, whole, fraction = match.group(1), match.group(2).lstrip("0") or "0", match.group(3)
    fraction = (fraction or "").rstrip("0")
    number = f"{whole}.{fraction}" if fraction else whole
    return "0" if number == "0" else sign + number


def extract_answer(text: str | None, *, strict: bool = False) -> str | None:
    """The answer a reply gives, as :func:`canonical_number` writes it, or ``None``.

    The last stated answer wins ("The answer is N", "Answer: N", "#### N", ``\\boxed{N}``);
    with none, the last number of the reply, unless ``strict`` (only a stated answer counts,
    which measures whether the model followed the asked format).
    """
    if not text:
        return None
    stated = [next(g for g in m.groups() if g) for m in _STATED_RE.finditer(text)]
    if stated:
        return canonical_number(stated[-1])
    if strict:
        return None
    numbers = _NUMBER_RE.findall(text)
    return canonical_number(numbers[-1]) if numbers else None


def normalise(text: str) -> str:
    """What lm-eval's ``exact_match`` compares for the ``gsm8k`` task: ``text`` without the
    :data:`GSM8K_IGNORE` patterns, lower-cased (``ignore_case``)."""
    for pattern in GSM8K_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def _filter(strict: bool) -> Any:
    """An lm-eval ``custom`` filter function: every reply → its extracted answer."""

    def apply(resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
        # "[invalid]" is lm-eval's own fallback for "no answer found"; it never equals a number.
        return [[extract_answer(r if isinstance(r, str) else None, strict=strict) or "[invalid]"
                 for r in replies] for replies in resps]

    return apply


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: the question, the worked solution (GSM8K's text before ``####``, the
    calculator annotations removed; empty for a plain-number answer) and the target number."""

    question: str
    rationale: str
    target: str

    def to_doc(self) -> dict[str, str]:
        """The row lm-eval reads (every value a string, so Arrow infers one type)."""
        return {"question": self.question, "rationale": self.rationale, "target": self.target}


def parse_target(answer: Any) -> tuple[str, str]:
    """``(rationale, target)`` of an ``answer`` field: GSM8K's text ending in ``#### N``, or a
    number (JSON number or string). :class:`ValueError` says what is wrong."""
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise ValueError("'answer' must be a string or a number")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise ValueError("'answer' must be a finite number")
    text = str(answer)
    rationale, sep, final = text.rpartition("####")
    if not sep:
        rationale, final = "", text
    try:
        target = canonical_number(final.strip())
    except ValueError:
        raise ValueError(
            "'answer' must end with '#### <number>' (GSM8K's format) or be a number"
        ) from None
    return _CALCULATOR_RE.sub("", rationale).strip(), target


def load_problems(path: str | Path) -> list[Problem]:
    """Read a JSONL file of problems (blank lines skipped). :class:`EvalError` names the file
    and line of the first problem found."""
    where = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalError(f"cannot read the data file {where!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EvalError(f"the data file {where!r} is not UTF-8 text") from None
    problems = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{where}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvalError(f"{where}:{number}: each line must be a JSON object")
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise EvalError(f"{where}:{number}: 'question' must be a non-empty string")
        if "answer" not in row:
            raise EvalError(f"{where}:{number}: 'answer' is missing")
        try:
            rationale, target = parse_target(row["answer"])
        except ValueError as exc:
            raise EvalError(f"{where}:{number}: {exc}") from None
        problems.append(Problem(question.strip(), rationale, target))
    if not problems:
        raise EvalError(f"the data file {where!r} holds no problems")
    return problems


# --------------------------------------------------------------------------- task config


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


def write_task_files(problems: Sequence[Problem], folder: Path, *, num_fewshot: int = 0,
                     limit: int | None = None) -> tuple[Path, Path | None, int]:
    """Write the test problems (and the few-shot ones: the first ``num_fewshot``, left out of
    the test) as JSONL under ``folder``; ``(test_file, fewshot_file, n_test)``."""
    if num_fewshot < 0:
        raise EvalError("--num-fewshot must be >= 0")
    if limit is not None and limit < 1:
        raise EvalError("--limit must be at least 1")
    shots, tests = list(problems[:num_fewshot]), list(problems[num_fewshot:])
    if not tests:
        raise EvalError(f"the data file has {len(problems)} problem(s): none is left to test "
                        f"after {num_fewshot} few-shot example(s)")
    tests = tests[:limit] if limit is not None else tests

    def write(name: str, rows: Sequence[Problem]) -> Path:
        path = folder / name
        path.write_text("".join(json.dumps(p.to_doc()) + "\n" for p in rows), encoding="utf-8")
        return path

    return write("test.jsonl", tests), write("fewshot.jsonl", shots) if shots else None, len(tests)


# --------------------------------------------------------------------------- what to evaluate


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
        if not self.base_url.startswith(("http://", "https://")):
            raise EvalError(f"--base-url must be an http(s) URL, not {self.base_url!r}")
        for name, value in (("--max-tokens", self.max_tokens),
                            ("--concurrency", self.concurrency),
                            ("--max-retries", self.max_retries)):
            if value < 1:
                raise EvalError(f"{name} must be at least 1")
        if self.timeout <= 0:
            raise EvalError("--timeout must be > 0")


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class Sample:
    """One problem as one model answered it."""

    index: int
    question: str
    target: str
    response: str
    extracted: str | None
    correct: bool
    strict_correct: bool


@dataclass(slots=True)
class ModelResult:
    """One model's scores: accuracy (flexible extraction) and strict accuracy (the stated
    answer only), each with lm-eval's standard error of the mean; ``wall_s`` is the time of
    its whole run (requests at ``concurrency`` at once)."""

    target: EvalTarget
    n: int
    accuracy: float
    accuracy_stderr: float | None
    strict_accuracy: float
    strict_accuracy_stderr: float | None
    no_answer: int
    wall_s: float
    samples: list[Sample]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.target.model, "extra_body": self.target.extra_body, "n": self.n,
            "accuracy": self.accuracy, "accuracy_stderr": self.accuracy_stderr,
            "strict_accuracy": self.strict_accuracy,
            "strict_accuracy_stderr": self.strict_accuracy_stderr,
            "no_answer": self.no_answer, "wall_s": round(self.wall_s, 3),
            "s_per_problem": round(self.wall_s / self.n, 3) if self.n else None,
            "samples": [
                {"index": s.index, "target": s.target, "extracted": s.extracted,
                 "correct": s.correct, "strict_correct": s.strict_correct,
                 "question": s.question, "response": s.response}
                for s in self.samples
            ],
        }


@dataclass(slots=True)
class EvalReport:
    """A finished comparison: every model's result, in the order asked."""

    config: EvalConfig
    results: list[ModelResult]
    lm_eval_version: str

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "task": TASK_NAME,
            "data_file": str(c.data_file),
            "base_url": c.root,
            "num_fewshot": c.num_fewshot,
            "limit": c.limit,
            "max_tokens": c.max_tokens,
            "concurrency": c.concurrency,
            "prompt": PROMPT,
            "lm_eval_version": self.lm_eval_version,
            "models": {r.target.label: r.to_json() for r in self.results},
        }


def format_table(report: EvalReport) -> str:
    """The side-by-side table: one row per model."""
    rows = [("model", "accuracy", "strict", "n", "no answer", "wall s", "s/problem")]
    for r in report.results:
        rows.append((
            r.target.label,
            _pct(r.accuracy, r.accuracy_stderr),
            _pct(r.strict_accuracy, r.strict_accuracy_stderr),
            str(r.n), str(r.no_answer), f"{r.wall_s:.1f}",
            f"{r.wall_s / r.n:.2f}" if r.n else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pct(value: float, stderr: float | None) -> str:
    return f"{value:.1%}" + (f" ± {stderr:.1%}" if stderr is not None else "")


# --------------------------------------------------------------------------- running


def _request(url: str, api_key: str | None, body: dict[str, Any] | None,
             timeout: float) -> tuple[int, str]:
    """``(status, text)`` of a GET (``body`` None) or JSON POST; :class:`OSError` when the
    server cannot be reached."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _error_message(text: str) -> str:
    """The message of an error body (its start, when it has none we know)."""
    return error_body_message(text)[:200]


def preflight(config: EvalConfig, target: EvalTarget) -> None:
    """One tiny request as the evaluation will send it: a wrong URL, key, model id or body
    key fails here with the server's own message rather than after lm-eval's retries."""
    body = {"model": target.model, "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 1, "temperature": 0.0, **target.extra_body}
    try:
        status, text = _request(config.chat_url, config.api_key, body,
                                timeout=min(config.timeout, 120.0))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EvalError(f"cannot reach {config.chat_url}: {reason}") from None
    if status >= 400:
        raise EvalError(f"{target.label}: {config.chat_url} answered HTTP {status}: "
                        f"{_error_message(text)}")


def _import_lm_eval() -> Any:
    # The hubs offline before datasets/huggingface_hub read their settings (at import).
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("lm_eval", "torch", "datasets"):
            raise EvalError(INSTALL_HINT) from None
        raise
    return lm_eval, TaskManager


def run_eval(config: EvalConfig, targets: Sequence[EvalTarget], *,
             verbose: bool = False) -> EvalReport:
    """Evaluate every target on the problems of ``config.data_file``, one after the other.

    Checks the file and reaches every target (:func:`preflight`) before the first request of
    the evaluation. Sets ``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE`` in this process. Runs
    lm-eval's event loop: call it from synchronous code. :class:`EvalError` for anything that
    stops it.
    """
    if not targets:
        raise EvalError("nothing to evaluate: give --model and/or --modes")
    config.check()
    problems = load_problems(config.data_file)
    lm_eval, task_manager_class = _import_lm_eval()
    if not verbose:  # lm-eval warns about every API-model default it applies
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
    for target in targets:
        preflight(config, target)
    results = []
    with tempfile.TemporaryDirectory(prefix="kimi-modes-eval-") as tmp:
        folder = Path(tmp)
        test_file, fewshot_file, n = write_task_files(
            problems, folder, num_fewshot=config.num_fewshot, limit=config.limit)
        test_problems = problems[config.num_fewshot:config.num_fewshot + n]
        task_manager = task_manager_class(include_defaults=False)  # skip indexing ~10k YAMLs
        for target in targets:
            task = task_config(test_file, fewshot_file=fewshot_file,
                               num_fewshot=config.num_fewshot, max_tokens=config.max_tokens,
                               extra_body=target.extra_body, cache_dir=folder / "hf-cache")
            model_args: dict[str, Any] = {
                "base_url": config.chat_url,
                "model": target.model,
                "num_concurrent": config.concurrency,
                "max_retries": config.max_retries,
                "tokenized_requests": False,
                "tokenizer_backend": None,  # no tokenizer to fetch: the server counts
                "timeout": math.ceil(config.timeout),
                "max_gen_toks": config.max_tokens,
            }
            if config.api_key:
                model_args["header"] = {"Authorization": f"Bearer {config.api_key}"}
            if config.think_end_token:
                model_args["think_end_token"] = config.think_end_token
            started = time.perf_counter()
            try:
                output = lm_eval.simple_evaluate(
                    model="local-chat-completions", model_args=model_args, tasks=[task],
                    task_manager=task_manager, apply_chat_template=True,
                    fewshot_as_multiturn=True, log_samples=True, bootstrap_iters=1000,
                )
            except Exception as exc:  # lm-eval raises whatever its HTTP client raised
                raise EvalError(f"{target.label}: the evaluation failed: "
                                f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
            wall = time.perf_counter() - started
            if output is None:
                raise EvalError(f"{target.label}: lm-eval returned no results")
            results.append(_model_result(target, output, test_problems, wall))
    return EvalReport(config, results, getattr(lm_eval, "__version__", "unknown"))


def _model_result(target: EvalTarget, output: dict[str, Any], problems: Sequence[Problem],
                  wall: float) -> ModelResult:
    scores = output["results"][TASK_NAME]
    by_filter: dict[str, dict[int, dict[str, Any]]] = {}
    for sample in output["samples"][TASK_NAME]:
        by_filter.setdefault(sample["filter"], {})[int(sample["doc_id"])] = sample
    flexible, strict = by_filter["flexible-extract"], by_filter["strict-match"]
    samples = []
    for doc_id in sorted(flexible):
        one = flexible[doc_id]
        response = one["resps"][0][0] if one["resps"] and one["resps"][0] else ""
        extracted = one["filtered_resps"][0]
        samples.append(Sample(
            index=doc_id, question=problems[doc_id].question, target=one["target"],
            response=response if isinstance(response, str) else "",
            extracted=None if extracted == "[invalid]" else extracted,
            correct=bool(one["exact_match"]),
            strict_correct=bool(strict[doc_id]["exact_match"]),
        ))

    def stderr(key: str) -> float | None:
        value = scores.get(key)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    return ModelResult(
        target=target, n=len(samples),
        accuracy=float(scores["exact_match,flexible-extract"]),
        accuracy_stderr=stderr("exact_match_stderr,flexible-extract"),
        strict_accuracy=float(scores["exact_match,strict-match"]),
        strict_accuracy_stderr=stderr("exact_match_stderr,strict-match"),
        no_answer=sum(s.extracted is None for s in samples), wall_s=wall, samples=samples,
    )


def save_report(report: EvalReport, path: str | Path) -> None:
    """Write the report as JSON (:class:`OSError` if it cannot)."""
    Path(path).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")


def first_model(config: EvalConfig) -> str:
    """The first model id the server lists at ``/v1/models`` (what a bare vLLM serves)."""
    url = config.root + "/v1/models"
    try:
        status, text = _request(url, config.api_key, None, timeout=min(config.timeout, 30.0))
    except (OSError, ValueError) as exc:
        raise EvalError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    if status != 200:
        raise EvalError(f"cannot list the models at {url}: HTTP {status}: "
                        f"{_error_message(text)}")
    try:
        entry = listed_model(json.loads(text))
    except json.JSONDecodeError:
        entry = None
    if entry is None:
        raise EvalError(f"{url} lists no models; give --model or --modes")
    return str(entry["id"])
