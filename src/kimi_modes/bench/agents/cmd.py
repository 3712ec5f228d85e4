"""The ``kimi-modes bench agents`` command.

Imports only typer at module level: the main CLI imports this module to register the command;
the benchmark's modules (aiohttp, rich) load when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kimi_modes.bench._cli import fail as _fail
from kimi_modes.bench._cli import json_object as _json_object


def agents(
    tasks_file: Annotated[
        Path | None, typer.Argument(help="JSONL task file (default: the shipped sample, "
                                    "bench/data/agent_tasks.jsonl).", show_default=False)
    ] = None,
    base_url: Annotated[
        str, typer.Option(help="API root of a gateway or any OpenAI-compatible endpoint, "
                          "e.g. http://127.0.0.1:8000/v1.")
    ] = "http://127.0.0.1:8000/v1",
    modes: Annotated[
        str | None, typer.Option(help="Modes to run: agent, swarm or agent,swarm (default: "
                                 "both, unless --model is given).")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="A model id to run, as ID or MODE=ID (MODE agent "
                                       "or swarm; an ID ending in -swarm is a swarm, any "
                                       "other an agent). Repeatable.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="KIMI_MODES_API_KEY", show_envvar=True,
                                 help="Bearer key sent with every request.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Tasks running at once.")] = 1,
    timeout: Annotated[
        float, typer.Option(help="Seconds one task may take; then it is cancelled and "
                            "counts as failed.")
    ] = 900.0,
    repeat: Annotated[int, typer.Option(help="Runs of each task in each mode.")] = 1,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N tasks of the file.")
    ] = None,
    extra_body: Annotated[
        str | None, typer.Option(help='JSON object merged into every request body, e.g. '
                                 '\'{"agent": {"max_steps": 20}, "swarm": {"fan_out": '
                                 '"auto"}}\'.')
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the results as JSON here.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No line per finished task.")
    ] = False,
) -> None:
    """Run a task file through Agent and Swarm modes; report success, time, steps and tokens."""
    from kimi_modes.bench.agents.report import print_table
    from kimi_modes.bench.agents.results import TaskRun
    from kimi_modes.bench.agents.run import AgentsConfig, BenchmarkError, run_agents, targets_for
    from kimi_modes.bench.agents.tasks import TaskFileError, load_tasks, sample_tasks_path

    path = tasks_file if tasks_file is not None else sample_tasks_path()
    if limit is not None and limit < 1:
        raise _fail("--limit must be at least 1")
    try:
        tasks = load_tasks(path, limit)
        config = AgentsConfig(base_url=base_url, targets=targets_for(modes, model or []),
                              api_key=api_key or None, concurrency=concurrency,
                              timeout=timeout, repeat=repeat,
                              extra_body=_json_object(extra_body, "--extra-body"))
    except (TaskFileError, BenchmarkError) as exc:
        raise _fail(str(exc)) from None

    def progress(run: TaskRun, done: int, total: int) -> None:
        if quiet:
            return
        verdict = "pass" if run.success else "FAIL"
        why = "" if run.success else f" ({run.error or run.check})"
        typer.echo(f"[{done}/{total}] {run.task} · {run.mode} · {verdict} · "
                   f"{run.wall_time:.2f} s{why}", err=True)

    try:
        result = run_agents(config, tasks, tasks_file=str(path), on_result=progress)
    except BenchmarkError as exc:
        raise _fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None

    note = "" if result.runs_api else " (no runs API at this endpoint: run figures unavailable)"
    print_table(result.totals, result.per_task,
                title=f"bench agents · {config.base_url}{note}")
    if output is not None:
        try:
            output.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {str(output)!r}: {exc.strerror}", 1) from None
        typer.echo(f"Results saved to {output}", err=True)
    if all(r.error is not None for r in result.runs):
        raise _fail(f"all {len(result.runs)} requests failed (see the notes above)", 1)
