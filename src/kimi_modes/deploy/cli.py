"""``kimi-modes deploy``: plan a Kimi deployment on given hardware (``plan``), print the
exo model cards for the Kimi MLX checkpoints (``exo-cards``), render launch commands, a
Compose file or Kubernetes manifests for the plan (``render launch|compose|k8s``), and check
a running engine (``check``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kimi_modes.deploy import exo, k8s, render
from kimi_modes.deploy.compose import compose, dump
from kimi_modes.deploy.hardware import accelerator
from kimi_modes.deploy.models import MODELS
from kimi_modes.deploy.models import model as model_by_key
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


render_app = typer.Typer(
    help="Launch commands, a Compose file or Kubernetes manifests for a planned layout.",
    no_args_is_help=True)
app.add_typer(render_app, name="render")

#: The planner's engine for each rendered engine (same memory rules); None: not planned.
_PLANNED_AS = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm", "llama.cpp": "llama.cpp",
               "exo": "exo", "lmdeploy": "vllm", "dynamo": "vllm", "ktransformers": None}

#: Nodes offered to the planner so that it picks the smallest replica that serves the model.
_PLAN_NODES = 8

ModelOption = Annotated[str, typer.Option("--model", "-m", help=f"One of: {', '.join(MODELS)}.")]
EngineOption = Annotated[str, typer.Option(
    "--engine", "-e", help="vllm, sglang, llama.cpp, ktransformers, trtllm, lmdeploy, exo, "
    "dynamo.")]
GpuOption = Annotated[str, typer.Option("--gpu", "-g", help="Accelerator (as for plan).")]
QuantOption = Annotated[str | None, typer.Option(
    "--quant", "-q", help="Checkpoint (default: the first the engine loads).")]
PerNodeOption = Annotated[int | None, typer.Option(
    "--gpus-per-node", "--gpus", help="GPUs per node (default: the usual node).")]
TpOption = Annotated[int | None, typer.Option(
    help="GPUs per replica inside a node (default: the plan's).")]
PpOption = Annotated[int | None, typer.Option(
    help="Pipeline stages = nodes per replica (default: the plan's).")]
ContextOption = Annotated[int | None, typer.Option(
    help="Context length (default: the model's own).")]
WorkersOption = Annotated[int, typer.Option(help="Worker engines beside the orchestrator.")]


def _target(model_key: str, engine_key: str, gpu: str, quant: str | None,
            per_node: int | None, tp: int | None, pp: int | None,
            context: int | None, cpu_ram: float = 0.0) -> render.Target:
    """The replica to render: the plan's layout for this model, hardware and engine (its TP,
    PP, EP and KV dtype), or ``--tp``/``--pp`` as given."""
    m = model_by_key(model_key)
    ckpt = render.checkpoint_for(engine_key, m, quant)  # type: ignore[arg-type]
    acc = accelerator(gpu)
    node = per_node or acc.gpus_per_node
    planned_as = _PLANNED_AS.get(engine_key)
    kv_fp8 = False
    if planned_as is not None and (tp is None or pp is None):
        result = plan(Request(model=model_key, accelerator=acc, nodes=_PLAN_NODES,
                              gpus_per_node=node, checkpoint=ckpt.key, context=context,
                              engine=planned_as, cpu_ram_gib=cpu_ram))
        if result.min_gpus is None:
            raise PlanError(f"no layout of {acc.name} GPUs serves {m.name}: "
                            + result.reasons[-1])
        tp = tp or result.parallelism.tp
        pp = pp or result.parallelism.pp
        kv_fp8 = result.kv_dtype == "fp8"
    return render.Target(m, ckpt, tp=tp or node, pp=pp or 1,
                         ep=(tp or node) if engine_key == "trtllm" else 1, gpus_per_node=node,
                         context=context, kv_fp8=kv_fp8)


@render_app.command("launch")
def render_launch(model: ModelOption, engine: EngineOption = "vllm", gpu: GpuOption = "h200",
                  quant: QuantOption = None, gpus_per_node: PerNodeOption = None,
                  tp: TpOption = None, pp: PpOption = None, context: ContextOption = None,
                  cpu_ram: Annotated[float, typer.Option(help="CPU RAM per node, GiB.")] = 0.0,
                  ) -> None:
    """Print the command that starts one replica (node 0's, then the other nodes'), with
    any config file it reads."""
    try:
        command = render.launch(engine, _target(model, engine, gpu, quant, gpus_per_node, tp,
                                                pp, context, cpu_ram))
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc.args[0])) from None
    typer.echo(command.shell())
    if command.worker_args is not None:
        typer.echo(f"# nodes 1..: {command.shell(worker=True)}")
        typer.echo("# $(LWS_LEADER_ADDRESS): node 0's address; $(LWS_WORKER_INDEX): this "
                   "node's rank (LeaderWorkerSet sets both; by hand, put them in)")
    for name, content in command.files.items():
        typer.echo(f"# {name}:\n{content}")


@render_app.command("compose")
def render_compose(model: ModelOption, engine: EngineOption = "vllm", gpu: GpuOption = "h200",
                   quant: QuantOption = None, gpus_per_node: PerNodeOption = None,
                   tp: TpOption = None, context: ContextOption = None,
                   workers: WorkersOption = 0,
                   source: Annotated[str, typer.Option(
                       help="kimi-modes checkout the gateway image is built from.")] = ".",
                   ) -> None:
    """Print a Compose file: the gateway, the orchestrator engine and N workers on one node."""
    try:
        target = _target(model, engine, gpu, quant, gpus_per_node, tp, 1, context)
        typer.echo(dump(compose(engine, target, workers, source=source)), nl=False)
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc.args[0])) from None


@render_app.command("k8s")
def render_k8s(model: ModelOption, engine: EngineOption = "vllm", gpu: GpuOption = "h200",
               quant: QuantOption = None, gpus_per_node: PerNodeOption = None,
               tp: TpOption = None, pp: PpOption = None, context: ContextOption = None,
               workers: WorkersOption = 0,
               stack: Annotated[str, typer.Option(help="lws, llm-d, kserve or dynamo.")] = "lws",
               router_url: Annotated[str | None, typer.Option(
                   help="Where the llm-d/KServe router answers (the gateway's upstream).")] = None,
               store_url: Annotated[str | None, typer.Option(
                   envvar="KIMI_MODES_STORE_URL",
                   help="Shared run store (postgresql://...) for several gateway replicas.")
               ] = None,
               gateway_image: Annotated[str, typer.Option(help="The gateway's image.")] =
               "kimi-modes:local",
               gateway_replicas: Annotated[int, typer.Option(
                   help="Gateway replicas (with a shared store).")] = 2,
               ) -> None:
    """Print Kubernetes manifests: the gateway and the engines of ``--stack``."""
    if stack not in k8s.STACKS:
        raise _fail(f"--stack must be one of {', '.join(k8s.STACKS)}")
    try:
        target = _target(model, engine, gpu, quant, gpus_per_node, tp, pp, context)
        objects = k8s.manifests(engine, target, workers, stack=stack,  # type: ignore[arg-type]
                                router_url=router_url, store_url=store_url,
                                gateway_image=gateway_image, gateway_replicas=gateway_replicas)
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc.args[0])) from None
    typer.echo("---\n".join(dump(o) for o in objects), nl=False)


@app.command("check")
def check_command(
    url: Annotated[str, typer.Argument(help="The engine's URL (http://host:8000).")],
    model: Annotated[str | None, typer.Option(help="Model to check (default: the first "
                                              "of /v1/models).")] = None,
    family: Annotated[str, typer.Option(help="The family it serves: k2-instruct, "
                                        "k2-thinking, k2.5, k2.6, k2.7-code, k3.")] = "k2.5",
    dialect: Annotated[str, typer.Option(help="How it takes the thinking switch: vllm, "
                                         "sglang, llama-server, trtllm, lmdeploy, exo.")] =
    "vllm",
    api_key: Annotated[str | None, typer.Option(envvar="KIMI_MODES_UPSTREAM_API_KEY",
                                                help="Bearer key for the engine.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 300.0,
) -> None:
    """Ask a running engine what it serves, then check its thinking switch and a tool call
    round trip. Exit status 0 all pass, 1 one fails, 2 bad options."""
    from kimi_modes.deploy.check import run_check

    try:
        report = run_check(url, model=model, family=family, dialect=dialect, api_key=api_key,
                           request_timeout=timeout)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{report.url} · {report.model or '?'}")
    typer.echo("\n".join(report.lines()))
    raise typer.Exit(0 if report.passed else 1)
