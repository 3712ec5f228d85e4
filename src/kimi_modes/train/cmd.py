"""The ``kimi-modes train`` commands: ``targets`` (what LoRA adapts), ``run`` (GSPO),
``merge`` (an adapter merged into its base, optionally as a GGUF), ``export`` (an adapter as a
llama.cpp LoRA GGUF), ``plot`` (a run's metrics) and ``cluster`` (multi-node configs).

Imports only typer at module level: the main CLI imports this module to register the
commands; torch, transformers, TRL and PEFT load when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

train_app = typer.Typer(
    help="RL fine-tuning (GSPO with LoRA on TRL + PEFT); needs the `train` extra.",
    no_args_is_help=True,
)

MODEL_HELP = "A transformers checkpoint directory (or Hub id)."
GGUF_HELP = (
    "A GGUF file inside --model's directory to load (de-quantised to float32), e.g. the "
    "bundled SmolLM2; Llama-shaped models need --targets q_proj,k_proj,v_proj,o_proj,..."
)
TARGETS_HELP = "Comma-separated LoRA target names (default: MLA, dense and shared-expert MLP)."


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@train_app.command("targets")
def targets(
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    target_list: Annotated[str | None, typer.Option("--targets", help=TARGETS_HELP)] = None,
    routed_experts: Annotated[
        bool, typer.Option(help="Also adapt the fused routed experts (target_parameters).")
    ] = False,
    rank: Annotated[int, typer.Option(help="LoRA rank, for the parameter count.")] = 64,
    trust_remote_code: Annotated[bool, typer.Option()] = False,
) -> None:
    """Print what a LoRA target list adapts on MODEL, read from the model (weights not loaded)."""
    from kimi_modes.train.targets import (
        DEFAULT_TARGETS,
        TargetError,
        check_targets,
        load_skeleton,
        match_targets,
    )

    skeleton = load_skeleton(model, trust_remote_code=trust_remote_code)
    names = _split(target_list) or list(DEFAULT_TARGETS)
    report = match_targets(skeleton, names, routed_experts=routed_experts)
    typer.echo(f"{report.architecture}: {len(report.modules)} modules adapted")
    for match in [*report.matches, *report.expert_parameters]:
        shown = ", ".join(match.modules[:3]) + (" ..." if len(match.modules) > 3 else "")
        typer.echo(f"  {match.target:<22} {len(match.modules):>4}  {shown or 'NOTHING'}")
    typer.echo(f"LoRA parameters at rank {rank}: {report.lora_parameters(rank):,}")
    try:
        check_targets(report)
    except TargetError as exc:
        raise _fail(str(exc)) from None


@train_app.command("run")
def run(
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    output: Annotated[Path, typer.Option(help="Where the adapter is saved.")],
    task: Annotated[
        list[Path] | None, typer.Option(help="A `bench agents` task file. Repeatable.")
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="A seed scenario: customer_service, technical_support, sales."),
    ] = None,
    reward_file: Annotated[
        Path | None, typer.Option(help="Python file defining REWARDS (and WEIGHTS).")
    ] = None,
    family: Annotated[str, typer.Option(help="Kimi family, for the wire-format rewards.")] = (
        "k2-instruct"
    ),
    target_list: Annotated[str | None, typer.Option("--targets", help=TARGETS_HELP)] = None,
    optimizer: Annotated[str, typer.Option(help="adamw, or muon (Muon + AdamW).")] = "adamw",
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    num_generations: Annotated[int | None, typer.Option(help="Group size G.")] = None,
    per_device_train_batch_size: Annotated[
        int | None, typer.Option(help="Completions per forward/backward pass (preset: 1).")
    ] = None,
    gradient_accumulation_steps: Annotated[int | None, typer.Option()] = None,
    minibatches_per_generation: Annotated[
        int | None,
        typer.Option(help="Optimizer steps per generation batch (preset: 4; the steps after "
                          "the first are off-policy, where GSPO's sequence clip acts)."),
    ] = None,
    max_completion_length: Annotated[int | None, typer.Option()] = None,
    from_runs: Annotated[
        Path | None,
        typer.Option(help="A run store (runs.sqlite3): its runs become training tasks."),
    ] = None,
    runs_mode: Annotated[str | None, typer.Option(help="Only runs of this mode.")] = None,
    runs_status: Annotated[str, typer.Option(help="Only runs with this status.")] = "completed",
    runs_owner: Annotated[str | None, typer.Option(help="Only runs of this owner.")] = None,
    runs_limit: Annotated[int, typer.Option(help="The newest this many runs.")] = 1000,
    agentic: Annotated[
        bool,
        typer.Option(help="Multi-turn episodes: the model's tool calls run in the sandbox."),
    ] = False,
    max_turns: Annotated[int, typer.Option(help="Model turns per agentic episode.")] = 4,
    replay: Annotated[
        list[Path] | None,
        typer.Option(help="A task file of earlier tasks to replay. Repeatable."),
    ] = None,
    replay_ratio: Annotated[
        float, typer.Option(help="Share of replayed rows in the training set.")
    ] = 0.25,
    kl_beta: Annotated[
        float | None, typer.Option(help="KL penalty to the reference policy (GSPO: 0).")
    ] = None,
    repeat: Annotated[int, typer.Option(help="List each task this many times.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling and init (preset: 0).")] = None,
    cpu: Annotated[bool, typer.Option(help="Train on CPU (tiny models, tests).")] = False,
    gguf_file: Annotated[str | None, typer.Option(help=GGUF_HELP)] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank r (preset: 64).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (preset: 128).")] = None,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(help="Recompute activations in backward (TRL's default; off: faster "
                          "on small models)."),
    ] = True,
    plot_every: Annotated[
        int,
        typer.Option(help="Redraw OUTPUT/metrics.png every N steps (0: JSONL only)."),
    ] = 10,
) -> None:
    """GSPO with LoRA on MODEL over task files and stored runs. Shows a live progress bar
    (reward, KL, clip ratio) and prints each step; writes OUTPUT/metrics.jsonl (one line per
    step) and the plot OUTPUT/metrics.png drawn from it. A stored run whose task matches a
    --task's messages takes its checkers."""
    from kimi_modes.train.agentic import AgenticRollout
    from kimi_modes.train.checkpoint import load_model, load_tokenizer
    from kimi_modes.train.from_runs import RunFilter
    from kimi_modes.train.gspo import train_gspo
    from kimi_modes.train.metrics import MetricsRecorder, PlotError
    from kimi_modes.train.presets import KIMI
    from kimi_modes.train.progress import LiveProgress
    from kimi_modes.train.rewards import (
        AnswerFormat,
        Rewards,
        TaskCheck,
        ToolCallValidity,
        load_reward_file,
    )
    from kimi_modes.train.targets import DEFAULT_TARGETS, TargetError
    from kimi_modes.train.tasks import load_dataset, scenario_path

    if optimizer not in ("adamw", "muon"):
        raise _fail("--optimizer must be adamw or muon")
    paths = [*(task or []), *(scenario_path(name) for name in scenario or [])]
    if not paths and from_runs is None:
        raise _fail("give --task, --scenario or --from-runs")
    try:
        recorder = MetricsRecorder(output, every=plot_every)
    except (PlotError, ValueError) as exc:
        raise _fail(f"{exc} (or --plot-every 0)") from None
    tokenizer = load_tokenizer(model, gguf_file=gguf_file)
    funcs = [
        AnswerFormat(tokenizer, family),
        ToolCallValidity(tokenizer, family),
        TaskCheck(tokenizer, family),
    ]
    rewards = Rewards(list(funcs))
    if reward_file is not None:
        extra = load_reward_file(reward_file)
        rewards = Rewards(
            [*rewards.funcs, *extra.funcs],
            [*rewards.resolved_weights(), *extra.resolved_weights()],
            extra.aggregation,
        )
    changes = {
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "num_generations": num_generations,
        "per_device_train_batch_size": per_device_train_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "minibatches_per_generation": minibatches_per_generation,
        "max_completion_length": max_completion_length,
        "beta": kl_beta,
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "seed": seed,
    }
    preset = KIMI.with_(**{k: v for k, v in changes.items() if v is not None})
    rollout = AgenticRollout(tokenizer, family, max_turns=max_turns) if agentic else None
    sandbox_tools = rollout.declarations() if rollout is not None else None
    if from_runs is None:
        dataset = load_dataset(paths, tokenizer, repeat=repeat, extra_tools=sandbox_tools)
    else:
        dataset = _runs_dataset(
            from_runs,
            RunFilter(runs_mode, runs_status or None, runs_owner, runs_limit),
            paths,
            tokenizer,
            repeat,
            sandbox_tools,
        )
    if replay:
        from kimi_modes.train.continual import mix_replay

        earlier = load_dataset(replay, tokenizer, extra_tools=sandbox_tools)
        dataset = mix_replay(dataset, earlier, replay_ratio, seed=preset.seed)
    try:
        with recorder:
            train_gspo(
                load_model(model, gguf_file=gguf_file),
                tokenizer,
                dataset,
                rewards,
                preset,
                output,
                targets=_split(target_list) or list(DEFAULT_TARGETS),
                optimizer="muon" if optimizer == "muon" else "adamw",
                on_step=recorder,
                rollout=rollout,
                callbacks=[LiveProgress()],
                use_cpu=cpu,
                disable_tqdm=True,
                gradient_checkpointing=gradient_checkpointing,
            )
    except TargetError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"adapter saved to {output}")
    typer.echo(f"metrics: {recorder.path}" + (
        f", plot: {recorder.plot_path}" if recorder.plot_path is not None else ""))


@train_app.command("merge")
def merge(
    model: Annotated[str, typer.Option(help="The base model the adapter was trained on.")],
    adapter: Annotated[Path, typer.Option(help="The adapter directory `train run` saved.")],
    output: Annotated[Path, typer.Option(help="New directory for the merged checkpoint.")],
    gguf_file: Annotated[str | None, typer.Option(help=GGUF_HELP)] = None,
    gguf: Annotated[
        Path | None,
        typer.Option(help="Also write the merged model as this GGUF (needs --gguf-file)."),
    ] = None,
    outtype: Annotated[
        str, typer.Option(help="Encoding of the changed tensors in --gguf: f16, f32, q8_0.")
    ] = "f16",
    trust_remote_code: Annotated[bool, typer.Option()] = False,
) -> None:
    """Merge a trained LoRA into its base model (PEFT merge_and_unload) and save the result
    with its tokenizer as a transformers checkpoint (safetensors); with --gguf, also as a GGUF
    the embedded engine serves (`model_path`). Refuses a quantised base."""
    from kimi_modes.train.export import MERGED_OUTTYPES, ExportError, export_merged_gguf
    from kimi_modes.train.merge import MergeError, merge_checkpoint

    if gguf is not None and gguf_file is None:
        raise _fail("--gguf writes a GGUF built on the base GGUF: give --gguf-file too")
    if outtype not in MERGED_OUTTYPES:
        raise _fail(f"--outtype must be one of {', '.join(MERGED_OUTTYPES)}")
    try:
        merge_checkpoint(Path(model) if Path(model).exists() else model, adapter, output,
                         gguf_file=gguf_file, trust_remote_code=trust_remote_code)
    except MergeError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"merged model saved to {output}")
    if gguf is not None and gguf_file is not None:
        try:
            export_merged_gguf(output, Path(model) / gguf_file, gguf, outtype=outtype)
        except ExportError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"merged GGUF written to {gguf}")


@train_app.command("plot")
def plot(
    metrics: Annotated[Path, typer.Option(help="A run's metrics.jsonl.")],
    output: Annotated[Path, typer.Option(help="The image to write (.png or .svg).")],
) -> None:
    """Draw a run's metrics.jsonl (reward mean ± std, each objective, clip ratio, KL)."""
    from kimi_modes.train.metrics import PlotError, plot_metrics

    try:
        plot_metrics(metrics, output)
    except (PlotError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"plot written to {output}")


@train_app.command("export")
def export(
    adapter: Annotated[Path, typer.Option(help="The adapter directory `train run` saved.")],
    base_gguf: Annotated[Path, typer.Option(help="The GGUF the adapter will be applied to.")],
    output: Annotated[Path, typer.Option(help="The LoRA GGUF to write.")],
) -> None:
    """Write a trained LoRA adapter as a llama.cpp LoRA GGUF, for an embedded upstream's
    `adapter` setting (Llama-architecture GGUFs such as the bundled SmolLM2)."""
    from kimi_modes.train.export import ExportError, export_lora_gguf

    try:
        export_lora_gguf(adapter, base_gguf, output)
    except (ExportError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"adapter GGUF written to {output}")


def _runs_dataset(
    store: Path,
    runs: Any,
    paths: list[Path],
    tokenizer: Any,
    repeat: int,
    extra_tools: list[dict[str, Any]] | None,
) -> Any:
    """The stored runs' rows, then the task files' rows (their tasks also check the runs)."""
    from datasets import Dataset

    from kimi_modes.bench.agents.tasks import load_tasks
    from kimi_modes.train.from_runs import read_trajectories, trajectory_rows
    from kimi_modes.train.tasks import task_row

    tasks = [t for path in paths for t in load_tasks(path)]
    trajectories = read_trajectories(store, runs)
    if not trajectories:
        raise _fail(f"no runs in {store} match the filter")
    rows = trajectory_rows(trajectories, tokenizer, tasks=tasks, tools=extra_tools)
    blank = {"reference": "", "trajectory": "[]"}
    rows += [task_row(t, tokenizer, extra_tools) | blank for t in tasks]
    return Dataset.from_list(rows * repeat)


@train_app.command("cluster")
def cluster(
    output: Annotated[Path, typer.Option(help="Directory the configs are written to.")],
    strategy: Annotated[str, typer.Option(help="zero3 (DeepSpeed ZeRO-3) or fsdp (FSDP2).")] = (
        "zero3"
    ),
    nodes: Annotated[int, typer.Option(help="Machines.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per machine.")] = 8,
    main_ip: Annotated[str, typer.Option(help="Address of node 0 (multi-node).")] = "127.0.0.1",
    main_port: Annotated[int, typer.Option()] = 29500,
    offload: Annotated[bool, typer.Option(help="ZeRO-3: offload to CPU memory.")] = False,
) -> None:
    """Write the accelerate (and DeepSpeed) configs to run `train run` on a cluster."""
    from kimi_modes.train.launch import FULL_1T, Cluster, write_configs

    if strategy not in ("zero3", "fsdp"):
        raise _fail("--strategy must be zero3 or fsdp")
    try:
        spec = Cluster(nodes, gpus_per_node, main_ip, main_port)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    written = write_configs(spec, "zero3" if strategy == "zero3" else "fsdp", output,
                            offload=offload)
    for path in written:
        typer.echo(f"wrote {path}")
    node_file = output / f"accelerate-{strategy}-node<R>.yaml"
    typer.echo(f"on node R: accelerate launch --config_file {node_file} -m kimi_modes train run")
    typer.echo(FULL_1T)
