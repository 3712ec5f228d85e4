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

    from kimi_modes.bench.eval.config import EvalConfig, targets_for
    from kimi_modes.bench.eval.report import format_table
    from kimi_modes.bench.eval.run import run_eval

    config = EvalConfig(base_url="http://127.0.0.1:8000", data_file="gsm8k_sample.jsonl")
    report = run_eval(config, targets_for(models=[], modes=["instant", "thinking"]))
    print(format_table(report))
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from kimi_modes.bench import _http
from kimi_modes.bench._http import EndpointError, bearer, client_session, http_error
from kimi_modes.bench.eval.config import EvalConfig, EvalError, EvalTarget
from kimi_modes.bench.eval.problems import load_problems, write_task_files
from kimi_modes.bench.eval.report import EvalReport, model_result
from kimi_modes.bench.eval.task import task_config

INSTALL_HINT = (
    "lm-eval is not installed: pip install 'kimi-modes[eval]' (install PyTorch's CPU build "
    "first, e.g. pip install torch --index-url https://download.pytorch.org/whl/cpu, or pip "
    "pulls the CUDA one)"
)
_MAX_ERROR = 200  # characters of an error body quoted in a message


def preflight(config: EvalConfig, target: EvalTarget) -> None:
    """One tiny request as the evaluation will send it: a wrong URL, key, model id or body
    key fails here with the server's own message rather than after lm-eval's retries."""
    body = {"model": target.model, "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 1, "temperature": 0.0, **target.extra_body}
    limit = aiohttp.ClientTimeout(total=min(config.timeout, 120.0))

    async def ask() -> tuple[int, bytes]:
        async with client_session() as session, session.post(
                config.chat_url, json=body, headers=bearer(config.api_key),
                timeout=limit) as response:
            return response.status, await response.read()

    try:
        status, raw = asyncio.run(ask())
    except TimeoutError:
        raise EvalError(f"cannot reach {config.chat_url}: no answer within "
                        f"{limit.total:g} s") from None
    except aiohttp.ClientError as exc:
        raise EvalError(f"cannot reach {config.chat_url}: {_http.exception_text(exc)}") from None
    if status >= 400:
        raise EvalError(f"{target.label}: {config.chat_url} answered "
                        f"{http_error(status, raw)[:_MAX_ERROR]}")


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


def first_model(config: EvalConfig) -> str:
    """The first model id the server lists at ``/v1/models`` (what a bare vLLM serves)."""

    async def ask() -> str:
        async with client_session() as session:
            return await _http.first_model(session, config.root + "/v1",
                                           bearer(config.api_key),
                                           limit_s=min(config.timeout, _http.MODELS_TIMEOUT))

    try:
        return asyncio.run(ask())
    except EndpointError as exc:
        raise EvalError(f"{exc} (or give --model or --modes)") from None


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
                model_args["header"] = bearer(config.api_key)
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
            results.append(model_result(target, output, test_problems, wall))
    return EvalReport(config, results, getattr(lm_eval, "__version__", "unknown"))
