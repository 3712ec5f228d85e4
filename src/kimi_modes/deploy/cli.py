"""``kimi-modes deploy``: plan a Kimi deployment on given hardware (``plan``) and print the
exo model cards for the Kimi MLX checkpoints (``exo-cards``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kimi_modes.deploy import exo
from kimi_modes.deploy.hardware import accelerator
from kimi_modes.deploy.models import MODELS
from kimi_modes.deploy.planner import KvDtype, Plan, PlanError, Request, plan

app = typer.Typer(help="Plan a self-hosted Kimi deployment.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _text(result: Plan) -> str:
    par = result.parallelism
    lines = [
        f"{result.model} · {result.checkpoint} on {result.hardware} · engine {result.engine}",
        f"fits: {'yes' if result.fits else 'no'}   minimum GPUs: "
        f"{result.min_gpus if result.min_gpus is not None else 'none up to 64'}",
        f"layout: TP{par.tp} PP{par.pp} DP{par.dp} EP{par.ep} over {par.nodes} node(s), "
        f"{par.gpus} GPU(s)",
        f"weights: {result.weights_bytes / 1e9:,.1f} GB   KV: {result.kv_bytes_per_token:,} B "
        f"per token ({result.kv_dtype})",
        f"cache: {result.max_tokens_in_cache:,} tokens = {result.concurrent_sequences} "
        f"sequence(s) of {result.context:,} (wanted {result.concurrency})",
        "why:",
        *(f"  - {reason}" for reason in result.reasons),
    ]
    return "\n".join(lines)


@app.command("plan")
def plan_command(
    model: Annotated[str, typer.Option("--model", "-m", help=f"One of: {', '.join(MODELS)}.")],
    gpu: Annotated[str, typer.Option(
        "--gpu", "-g", help="Accelerator: h100, h200, b200, gb200, b300, gb300, mi300x, "
        "mi325x, mi355x, l20, rtx4090, ... or an Apple machine: m3-ultra-512, apple-192.")],
    quant: Annotated[str | None, typer.Option(
        "--quant", "-q", help="Checkpoint: int4, fp8, bf16, nvfp4, mxfp4, w4a8, gguf-..., "
        "mlx-... (default: the model's native one; on a Mac its first MLX card).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(
        "--gpus-per-node", "--gpus", help="GPUs per node (default: the usual node of that "
        "GPU: 8, or 4 for GB200/GB300 trays).")] = None,
    nodes: Annotated[int, typer.Option(help="Nodes (Macs for exo).")] = 1,
    cpu_ram: Annotated[float, typer.Option(
        help="CPU RAM per node in GiB (llama.cpp offloads into it).")] = 0.0,
    context: Annotated[int | None, typer.Option(
        help="Wanted context length in tokens (default: the model's own).")] = None,
    concurrency: Annotated[int, typer.Option(
        help="Concurrent sequences of that context wanted.")] = 1,
    engine: Annotated[str, typer.Option(
        help="vllm, sglang, trtllm, atom, llama.cpp, exo, or best.")] = "best",
    kv_dtype: Annotated[str, typer.Option(help="auto, bf16 or fp8.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Will this model fit this hardware? The minimum GPUs, the layout, the KV budget.

    Exit status 0 when it fits, 1 when it does not, 2 for a request that cannot be planned.
    """
    if kv_dtype not in ("auto", "bf16", "fp8"):
        raise _fail("--kv-dtype must be auto, bf16 or fp8")
    dtype: KvDtype = "fp8" if kv_dtype == "fp8" else "bf16" if kv_dtype == "bf16" else "auto"
    try:
        request = Request(
            model=model, accelerator=accelerator(gpu), nodes=nodes, gpus_per_node=gpus_per_node,
            checkpoint=quant, context=context, concurrency=concurrency, engine=engine,
            kv_dtype=dtype, cpu_ram_gib=cpu_ram,
        )
        result = plan(request)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    except PlanError as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(result.to_json(), indent=2) if as_json else _text(result))
    raise typer.Exit(0 if result.fits else 1)


@app.command("exo-cards")
def exo_cards() -> None:
    """Print an exo model card (``resources/inference_model_cards/*.toml``) for every Kimi MLX
    checkpoint we know, separated by blank lines."""
    typer.echo("\n".join(card.toml() for card in exo.cards()))
