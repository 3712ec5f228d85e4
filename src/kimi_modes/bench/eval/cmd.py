"""The ``kimi-modes eval`` command: GSM8K-style accuracy of one or more models side by side.

Imports only typer at module level: the main CLI imports this module to register the command;
:mod:`kimi_modes.bench.eval.run` (and lm-eval, inside it) loads when the command runs.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from kimi_modes.bench._cli import ApiKey
from kimi_modes.bench._cli import fail as _fail
from kimi_modes.bench._cli import json_object as _json_object


def eval_command(
    data: Annotated[
        Path | None,
        typer.Option("--data", "--data-file", "-d",
                     help="JSONL of problems: 'question' and 'answer' (GSM8K's text ending in "
                     "'#### N', or a number). Default: the 12 examples shipped with "
                     "kimi-modes."),
    ] = None,
    base_url: Annotated[
        str, typer.Option(help="Server root, e.g. http://127.0.0.1:8000 (a trailing /v1 is "
                          "tolerated).")
    ] = "http://127.0.0.1:8000",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model id to evaluate (repeatable: side by side). "
                     "With --modes: the one model whose thinking switch is flipped."),
    ] = None,
    modes: Annotated[
        str | None,
        typer.Option(help="instant,thinking: the gateway's kimi-k2.5-<mode> ids, or with one "
                     "--model its chat_template_kwargs.thinking false/true."),
    ] = None,
    api_key: ApiKey = None,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate only the first N problems.")
    ] = None,
    num_fewshot: Annotated[
        int, typer.Option(help="Worked examples shown first as earlier chat turns: the "
                          "file's first N problems, then left out of the test.")
    ] = 0,
    max_tokens: Annotated[
        int, typer.Option(help="Completion-token limit per answer (reasoning included: "
                          "leave thinking modes room).")
    ] = 4096,
    concurrency: Annotated[
        int, typer.Option(help="Requests in flight at once (lm-eval's num_concurrent).")
    ] = 8,
    extra_body: Annotated[
        str | None, typer.Option(help='JSON object merged into every request body, e.g. '
                                 '\'{"chat_template_kwargs": {"thinking": false}}\'.')
    ] = None,
    think_end_token: Annotated[
        str | None, typer.Option(help="Score only the text after this marker, e.g. '</think>' "
                                 "for a server that leaves reasoning in the content.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 600.0,
    max_retries: Annotated[
        int, typer.Option(help="Tries per request before the evaluation fails.")
    ] = 3,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="JSON result file (default: "
                     "kimi-modes-eval-<date>-<time>.json here)."),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Show lm-eval's own log.")] = False,
) -> None:
    """GSM8K-style accuracy of models or modes side by side, scored by lm-eval.

    Prints accuracy ± stderr, n and wall time per model; saves every answer as JSON.
    """
    from kimi_modes.bench.eval.config import SAMPLE_DATA, EvalConfig, EvalError, targets_for
    from kimi_modes.bench.eval.problems import load_problems
    from kimi_modes.bench.eval.report import format_table, save_report
    from kimi_modes.bench.eval.run import first_model, run_eval

    chosen_modes = [m.strip() for m in (modes or "").split(",") if m.strip()]
    config = EvalConfig(
        base_url=base_url, data_file=data if data is not None else SAMPLE_DATA,
        api_key=api_key or None, limit=limit, num_fewshot=num_fewshot, max_tokens=max_tokens,
        concurrency=concurrency, timeout=timeout, max_retries=max_retries,
        think_end_token=think_end_token or None,
    )
    body = _json_object(extra_body, "--extra-body")
    models = list(model or [])
    try:  # the options and the file first, before any request
        config.check()
        load_problems(config.data_file)
        targets_for(models, chosen_modes, body)
    except EvalError as exc:
        raise _fail(str(exc)) from None
    try:
        if not models and not chosen_modes:
            models = [first_model(config)]
        targets = targets_for(models, chosen_modes, body)
        report = run_eval(config, targets, verbose=verbose)
    except EvalError as exc:
        raise _fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None

    typer.echo(format_table(report))
    path = output or Path(f"kimi-modes-eval-{datetime.now():%Y%m%d-%H%M%S}.json")
    try:
        save_report(report, path)
    except OSError as exc:
        raise _fail(f"cannot write {str(path)!r}: {exc.strerror}", 1) from None
    typer.echo(f"Result saved to {path}", err=True)
