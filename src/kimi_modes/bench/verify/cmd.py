"""The ``kimi-modes verify tools`` command: options in K2-Vendor-Verifier's spelling.

Imports only typer and protocol's family list at module level: the main CLI imports this
module to register the command; the verifier's own modules (aiohttp) load when it runs. Exit
status: 0 the deployment passes, 1 it does not (or the run failed), 2 a usage error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kimi_modes.bench._cli import fail as _fail
from kimi_modes.bench._cli import json_object as _json_object
from kimi_modes.protocol.families import Family, resolve_family

_FAMILY_HELP = (
    "Sets --threshold to Moonshot's bar: k2-instruct 0.80, the others ("
    + ", ".join(f for f in Family if f is not Family.K2_INSTRUCT)
    + ") 0.73."
)


def tools(
    file_path: Annotated[
        Path | None,
        typer.Argument(help="JSONL test set, one chat-completion request body per line "
                       "(K2VV's format); default: the bundled sample set.",
                       show_default=False),
    ] = None,
    base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL of the endpoint under test.")
    ] = "http://127.0.0.1:8000/v1",
    model: Annotated[
        str | None, typer.Option(help="Model to verify (a gateway mode such as "
                                 "kimi-k2.5-instant); default: the first of /models.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar=["KIMI_MODES_API_KEY", "OPENAI_API_KEY"], show_envvar=True,
                     help="Bearer key for --base-url."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 5,
    output: Annotated[
        Path, typer.Option(help="Per-request results (JSONL, one record per line).")
    ] = Path("results/results.jsonl"),
    summary: Annotated[Path, typer.Option(help="Summary JSON.")] = Path("results/summary.json"),
    timeout: Annotated[float, typer.Option(help="Seconds one attempt may take.")] = 600.0,
    max_retries: Annotated[
        int, typer.Option("--max-retries", "--retries",
                          help="Retries on 429, 5xx, timeouts and broken connections.")
    ] = 3,
    backoff: Annotated[
        float, typer.Option(help="Seconds before the first retry (doubling, jittered).")
    ] = 1.0,
    extra_body: Annotated[
        str | None, typer.Option(help='JSON object merged into every request body, e.g. '
                                 '\'{"temperature": 0.6}\'.')
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Set temperature in every request.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Set max_tokens in every request.")
    ] = None,
    incremental: Annotated[
        bool, typer.Option(help="Resume: keep the successful results already in --output and "
                           "send only the rest.")
    ] = False,
    reference_url: Annotated[
        str | None, typer.Option(help="Reference endpoint (e.g. Moonshot's API) whose "
                                 "answers are the ground truth.")
    ] = None,
    reference_model: Annotated[
        str | None, typer.Option(help="Model at --reference-url (default: its first).")
    ] = None,
    reference_api_key: Annotated[
        str | None, typer.Option(envvar="KIMI_MODES_REFERENCE_API_KEY", show_envvar=True,
                                 help="Bearer key for --reference-url.")
    ] = None,
    reference_results: Annotated[
        Path | None, typer.Option(help="A results JSONL of the reference (ours or K2VV's) "
                                  "as the ground truth, matched by line.")
    ] = None,
    model_family: Annotated[
        str, typer.Option(help=_FAMILY_HELP)
    ] = "k2.5",
    threshold: Annotated[
        float | None, typer.Option(help="tool_call_f1 needed to pass (a fraction).")
    ] = None,
    schema_threshold: Annotated[
        float | None, typer.Option(help="schema_accuracy needed to pass (a fraction; "
                                   "default: not gated, as in K2VV).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N requests of the file.")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress line.")] = False,
    suite: Annotated[
        str, typer.Option(help="k2vv (tool-call F1, K2VV), or Kimi-Vendor-Verifier's params, "
                          "schema, k3, prompt-tokens, or all of them.")
    ] = "k2vv",
    data: Annotated[
        Path | None, typer.Option(help="KVV test data: a checkout's testdata folder (schema "
                                  "and prompt-token cases) or a prompt-token cases JSONL.")
    ] = None,
    think_mode: Annotated[
        str, typer.Option(help="How to switch thinking: kimi, opensource or none (KVV's).")
    ] = "opensource",
) -> None:
    """Check a deployment's tool calls as Moonshot's K2-Vendor-Verifier does: tool-call
    trigger F1 against a reference or labels, and schema accuracy."""
    if suite != "k2vv":
        _kvv_suites(suite, base_url, model, api_key, model_family, data, think_mode,
                    max_tokens, timeout, summary)
    from kimi_modes.bench.verify import run as verifier
    from kimi_modes.bench.verify.cases import InputError, load_cases
    from kimi_modes.bench.verify.metrics import F1_THRESHOLDS, Thresholds

    try:
        family = resolve_family(model_family)
    except ValueError:
        raise _fail(f"--model-family must be one of {', '.join(Family)}") from None
    if limit is not None and limit < 1:
        raise _fail("--limit must be at least 1")
    if max_tokens is not None and max_tokens < 1:
        raise _fail("--max-tokens must be at least 1")
    bars = Thresholds(
        threshold if threshold is not None else F1_THRESHOLDS[family],
        schema_threshold,
        None if threshold is not None else family.value,
    )
    try:
        cases = load_cases(file_path, limit)
        config = verifier.VerifyConfig(
            base_url=base_url, model=model, api_key=api_key or None, concurrency=concurrency,
            timeout=timeout, max_retries=max_retries, backoff=backoff,
            extra_body=_json_object(extra_body, "--extra-body"), temperature=temperature,
            max_tokens=max_tokens, reference_url=reference_url,
            reference_model=reference_model, reference_api_key=reference_api_key or None,
            reference_results=reference_results, output=output, summary=summary,
            incremental=incremental, thresholds=bars, progress=not no_progress,
        )
    except (InputError, verifier.VerifyError) as exc:
        raise _fail(str(exc)) from None
    try:
        run = verifier.run_verification(cases, config)
    except verifier.VerifyError as exc:
        raise _fail(str(exc), 2 if isinstance(exc, verifier.UsageError) else 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted (finished requests are in the output; resume with "
                    "--incremental)", 130) from None
    typer.echo("\n".join(run.lines))
    typer.echo(f"Results: {os.fspath(output)}  Summary: {os.fspath(summary)}", err=True)
    s = run.summary
    if s["failure_count"] == s["total"]:
        first = next((r.get("error") for r in run.records if r.get("error")), None)
        raise _fail(f"all {s['total']} requests failed" + (f": {first}" if first else ""), 1)
    raise typer.Exit(0 if s["passed"] else 1)


def _kvv_suites(suite: str, base_url: str, model: str | None, api_key: str | None,
                model_family: str, data: Path | None, think_mode: str,
                max_tokens: int | None, timeout: float, summary: Path) -> None:
    """Run Kimi-Vendor-Verifier's suites, print their summary, write it, exit 0/1."""
    import json

    from kimi_modes.bench._http import EndpointError
    from kimi_modes.bench.verify import suites as kvv
    from kimi_modes.bench.verify.client import Endpoint

    names = list(kvv.SUITES) if suite == "all" else [suite]
    if any(n not in kvv.SUITES for n in names):
        raise _fail(f"--suite must be k2vv, {', '.join(kvv.SUITES)} or all")
    if think_mode not in ("kimi", "opensource", "none"):
        raise _fail("--think-mode must be kimi, opensource or none")
    try:
        family = resolve_family(model_family)
    except ValueError:
        raise _fail(f"--model-family must be one of {', '.join(Family)}") from None
    options = kvv.SuiteOptions(family, data, think_mode, max_tokens or 2048, min(timeout, 600))
    try:
        result = kvv.run(Endpoint(base_url, model, api_key or None), names, options)
    except (EndpointError, ValueError) as exc:
        raise _fail(str(exc), 1) from None
    typer.echo("\n".join(kvv.summary_lines(result)))
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    raise typer.Exit(0 if result["passed"] else 1)
