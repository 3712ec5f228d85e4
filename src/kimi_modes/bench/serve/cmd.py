"""The ``kimi-modes bench serve`` command: options in vLLM's ``vllm bench serve`` spelling.

Imports only typer at module level: the main CLI imports this module to register the command;
the benchmark's own modules (aiohttp, numpy, rich, matplotlib) load when it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kimi_modes.bench._cli import ApiKey
from kimi_modes.bench._cli import fail as _fail
from kimi_modes.bench._cli import json_object as _json_object

_CHAT = "/v1/chat/completions"


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(f"{option} takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def serve(
    base_url: Annotated[
        str, typer.Option(help="Server root, e.g. http://127.0.0.1:8000 (a trailing /v1 is "
                          "tolerated).")
    ] = "http://127.0.0.1:8000",
    endpoint: Annotated[
        str, typer.Option(help="/v1/chat/completions or /v1/completions.")
    ] = _CHAT,
    model: Annotated[
        str | None, typer.Option(help="Model id to send (a gateway mode: kimi-k2.5-instant, "
                                 "-thinking, -agent, -swarm); default: the first of /v1/models.")
    ] = None,
    api_key: ApiKey = None,
    header: Annotated[
        list[str] | None, typer.Option(help="Extra request header KEY=VALUE (repeatable).")
    ] = None,
    dataset_name: Annotated[
        str, typer.Option(help="random (synthetic prompts) or jsonl (--dataset-path).")
    ] = "random",
    dataset_path: Annotated[
        Path | None, typer.Option(help="JSONL file of requests (--dataset-name jsonl).")
    ] = None,
    num_prompts: Annotated[
        int | None, typer.Option(help="Requests to send (default: 1000 for random, every line "
                                 "of a JSONL file).")
    ] = None,
    random_input_len: Annotated[
        int, typer.Option("--random-input-len", "--input-len",
                          help="random: mean prompt length, tokens.")
    ] = 1024,
    random_output_len: Annotated[
        int, typer.Option("--random-output-len", "--output-len",
                          help="random: mean output length, tokens.")
    ] = 128,
    random_range_ratio: Annotated[
        float, typer.Option(help="random: lengths uniform on [L*(1-r), L*(1+r)], 0 <= r < 1.")
    ] = 0.0,
    random_prefix_len: Annotated[
        int, typer.Option(help="random: tokens of a prefix shared by all prompts.")
    ] = 0,
    request_rate: Annotated[
        float, typer.Option(help="Requests per second (inf: all at once).")
    ] = float("inf"),
    burstiness: Annotated[
        float, typer.Option(help="Gamma shape of the arrival gaps: 1 = Poisson, <1 burstier, "
                            ">1 steadier.")
    ] = 1.0,
    max_concurrency: Annotated[
        int | None, typer.Option(help="Most requests in flight at once.")
    ] = None,
    num_warmups: Annotated[int, typer.Option(help="Warm-up requests before the run.")] = 0,
    ignore_eos: Annotated[
        bool | None,
        typer.Option("--ignore-eos/--no-ignore-eos",
                     help="Send ignore_eos (default: on for random, as vLLM, off for jsonl)."),
    ] = None,
    extra_body: Annotated[
        str | None, typer.Option(help='JSON object merged into every request body, e.g. '
                                 '\'{"chat_template_kwargs": {"thinking": false}}\'.')
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the lengths, prompts and arrivals.")] = 0,
    percentile_metrics: Annotated[
        str, typer.Option(help="Metrics to report: ttft,tpot,itl,e2el,client_queue_time,"
                          "e2el_including_client_queue.")
    ] = "ttft,tpot,itl",
    metric_percentiles: Annotated[
        str, typer.Option(help="Percentiles to report, e.g. 50,90,99.")
    ] = "99",
    goodput: Annotated[
        list[str] | None,
        typer.Option(help="SLO KEY:VALUE in ms (ttft, tpot, e2el): --goodput ttft:500 tpot:50."),
    ] = None,
    more_goodput: Annotated[
        list[str] | None, typer.Argument(hidden=True, help="More --goodput pairs.")
    ] = None,
    save_result: Annotated[bool, typer.Option(help="Save the result as JSON.")] = False,
    save_detailed: Annotated[
        bool, typer.Option(help="Keep the per-request lists (ttfts, itls, ...) in the JSON.")
    ] = False,
    result_dir: Annotated[Path | None, typer.Option(help="Folder of the JSON result.")] = None,
    result_filename: Annotated[
        str | None, typer.Option(help="File name of the JSON result (default: vLLM's).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Result label (file name prefix).")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE saved in the result (repeatable).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Folder for PNG plots (latencies, tokens/s).")
    ] = None,
    request_timeout: Annotated[
        float, typer.Option(help="Seconds one request may take before it counts as failed.")
    ] = 6 * 60 * 60.0,
    request_id_prefix: Annotated[
        str | None, typer.Option(help="Prefix of the x-request-id headers.")
    ] = None,
    disable_tqdm: Annotated[
        bool, typer.Option("--disable-tqdm", "--no-progress", help="No progress bar.")
    ] = False,
) -> None:
    """Load-test an OpenAI-compatible endpoint and report vLLM's serving metrics."""
    from kimi_modes.bench.serve import datasets
    from kimi_modes.bench.serve import results as serve_results
    from kimi_modes.bench.serve import run as bench
    from kimi_modes.bench.serve.metrics import (
        MetricsOptionError,
        parse_goodput,
        parse_metric_percentiles,
        parse_percentile_metrics,
    )
    from kimi_modes.bench.serve.plots import PlotError, write_serve_plots

    pairs = list(goodput or [])
    for extra in more_goodput or []:
        if not pairs or ":" not in extra:
            raise _fail(f"unexpected argument {extra!r}")
        pairs.append(extra)
    try:
        slos = parse_goodput(pairs)
        chosen_metrics = parse_percentile_metrics(percentile_metrics)
        percentiles = parse_metric_percentiles(metric_percentiles)
    except MetricsOptionError as exc:
        raise _fail(str(exc)) from None

    try:
        if dataset_name == "random":
            if dataset_path is not None:
                raise _fail("--dataset-path goes with --dataset-name jsonl")
            count = num_prompts if num_prompts is not None else datasets.DEFAULT_NUM_PROMPTS
            requests = datasets.random_requests(
                count, input_len=random_input_len, output_len=random_output_len,
                range_ratio=random_range_ratio, prefix_len=random_prefix_len, seed=seed,
            )
            eos = True if ignore_eos is None else ignore_eos
        elif dataset_name == "jsonl":
            if dataset_path is None:
                raise _fail("--dataset-name jsonl needs --dataset-path FILE")
            requests = datasets.load_jsonl(dataset_path, num_prompts)
            eos = bool(ignore_eos)
        else:
            raise _fail("--dataset-name must be random or jsonl")
    except datasets.DatasetError as exc:
        raise _fail(str(exc)) from None

    try:
        config = bench.ServeConfig(
            base_url=base_url, endpoint=endpoint, model=model, api_key=api_key or None,
            headers=_pairs(header, "--header"), request_rate=request_rate,
            burstiness=burstiness, max_concurrency=max_concurrency, num_warmups=num_warmups,
            ignore_eos=eos, extra_body=_json_object(extra_body, "--extra-body"),
            percentile_metrics=chosen_metrics, metric_percentiles=percentiles, goodput=slos,
            seed=seed, request_timeout=request_timeout, progress=not disable_tqdm,
        )
        if request_id_prefix is not None:
            config.request_id_prefix = request_id_prefix
        run = bench.run_benchmark(config, requests, num_prompts=len(requests), label=label,
                            metadata=_pairs(metadata, "--metadata"))
    except bench.BenchmarkError as exc:
        raise _fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None

    bench.print_summary(run)
    if save_result:
        path = serve_results.result_filename(run.result, config, label=label, result_dir=result_dir,
                                result_filename=result_filename)
        try:
            serve_results.save_result(run.result, path, detailed=save_detailed)
        except OSError as exc:
            raise _fail(f"cannot write {str(path)!r}: {exc.strerror}", 1) from None
        typer.echo(f"Result saved to {path}", err=True)
    if plot is not None:
        try:
            paths = write_serve_plots(run.metrics, run.outputs, plot,
                                      title=f"({run.result['model_id']})")
        except PlotError as exc:
            raise _fail(str(exc), 1) from None
        typer.echo(f"Plots written: {', '.join(os.fspath(p) for p in paths)}", err=True)
    if run.metrics.completed == 0:
        raise _fail(f"all {len(run.outputs)} requests failed (see the errors above)", 1)
