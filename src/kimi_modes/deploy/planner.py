"""``kimi-modes deploy plan``: will a Kimi checkpoint fit this hardware, and how to lay it out.

Pure arithmetic over :mod:`.models`, :mod:`.hardware` and :mod:`.engines`; no I/O. The rules
(stated again in ``reasons`` and in docs/deploy.md):

* **Memory per GPU.** Weights are sharded evenly over a replica's GPUs. vLLM/ATOM/SGLang give
  the KV cache ``memory × fraction − reserve − weights``; TensorRT-LLM gives it
  ``fraction × (memory − reserve − weights)`` (see :data:`.engines.ENGINES` for the values).
* **KV cache.** MLA caches ``kv_lora_rank + qk_rope_head_dim`` values per token per layer
  (K2.x: 576; BF16 over 61 layers 70,272 B). The latent is replicated on every TP rank, so
  TP adds no capacity; a PP stage caches only its own layers.
* **Layouts.** A replica has 1, 2, 4, … 64 GPUs: TP must divide the 64 attention heads, and
  the published multi-node Kimi layouts (TP16, TP8×PP2, DP16/DP32 with EP) are all powers of
  two, which also divide the routed-expert counts (384, 896) evenly for EP. Inside a node a
  replica is TP; across nodes vLLM adds PP, SGLang and TensorRT-LLM widen TP; ATOM and
  llama.cpp stay on one node. Left-over GPUs hold more replicas (DP).
* **Fit.** A layout fits when the weights leave room for ``context`` tokens of KV; the
  minimum is the fewest GPUs whose replicas hold ``concurrency`` sequences of ``context``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from kimi_modes.deploy import exo
from kimi_modes.deploy.engines import ENGINES, HOST_RESERVE_GIB, Engine
from kimi_modes.deploy.hardware import Accelerator
from kimi_modes.deploy.models import Checkpoint, Model, kv_bytes_per_token, model

GIB = 1 << 30
#: The replica sizes the layout rule allows (see the module docstring).
REPLICA_SIZES = (1, 2, 4, 8, 16, 32, 64)
#: The widest TP any published Kimi layout runs inside one NVLink domain.
TP_IN_NVLINK_DOMAIN = 8
#: The keys of :meth:`Plan.to_json`, in order; callers may rely on them.
JSON_KEYS = ("fits", "min_gpus", "weights_bytes", "kv_bytes_per_token", "kv_dtype",
             "max_tokens_in_cache", "parallelism", "engine", "reasons", "model", "checkpoint",
             "hardware", "context", "concurrency", "concurrent_sequences", "placement")

KvDtype = Literal["auto", "bf16", "fp8"]


class PlanError(ValueError):
    """The request itself is wrong (a model without that checkpoint, an engine that cannot
    load it, hardware it cannot run on); the message says what to change."""


@dataclass(frozen=True)
class Request:
    """What the user asked: ``nodes`` × ``gpus_per_node`` of ``accelerator`` (the table's
    node size when ``None``), CPU RAM per node in GiB, the context (the model's own when
    ``None``) and concurrency wanted, an engine or ``best``."""

    model: str
    accelerator: Accelerator
    nodes: int = 1
    gpus_per_node: int | None = None
    checkpoint: str | None = None
    context: int | None = None
    concurrency: int = 1
    engine: str = "best"
    kv_dtype: KvDtype = "auto"
    cpu_ram_gib: float = 0.0


@dataclass(frozen=True)
class Parallelism:
    """One replica is ``tp × pp`` GPUs over ``nodes_per_replica`` nodes; ``dp`` replicas;
    ``ep``: expert-parallel group size (1: experts sharded by TP)."""

    tp: int
    pp: int
    dp: int
    ep: int
    nodes: int
    gpus: int


@dataclass(frozen=True)
class Plan:
    """The answer. ``parallelism`` and the KV figures describe the layout on the given
    hardware; ``min_gpus`` is the fewest GPUs (or Macs) of this type that would serve the
    wanted context and concurrency (``None``: no layout up to 64 does)."""

    fits: bool
    min_gpus: int | None
    weights_bytes: int
    kv_bytes_per_token: int
    kv_dtype: str
    max_tokens_in_cache: int
    parallelism: Parallelism
    engine: str
    reasons: tuple[str, ...]
    model: str
    checkpoint: str
    hardware: str
    context: int
    concurrency: int
    concurrent_sequences: int
    placement: list[dict[str, Any]] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with exactly :data:`JSON_KEYS`."""
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        return {key: data[key] for key in JSON_KEYS}


def _gib(value: float) -> str:
    """``value`` GiB as text, one decimal."""
    return f"{value:,.1f} GiB"


def _choose_engine(request: Request, checkpoint: Checkpoint) -> Engine:
    acc = request.accelerator
    if request.engine != "best":
        try:
            chosen = ENGINES[request.engine.lower()]
        except KeyError:
            known = ", ".join(ENGINES)
            raise PlanError(f"unknown engine {request.engine!r} (known: best, {known})") from None
        if checkpoint.format not in chosen.formats:
            raise PlanError(f"{chosen.name} does not load {checkpoint.format} checkpoints "
                            f"({checkpoint.repo}); it loads {', '.join(sorted(chosen.formats))}")
        if acc.vendor not in chosen.vendors:
            raise PlanError(f"{chosen.name} does not run on {acc.name}")
        return chosen
    if checkpoint.format == "mlx":
        return ENGINES["exo"]
    if checkpoint.format == "gguf":
        return ENGINES["llama.cpp"]
    if acc.vendor == "amd" and checkpoint.format in ("w4a8", "mxfp4") \
            and checkpoint.repo.startswith("amd/"):
        return ENGINES["atom"]  # AMD's own quantisations: ATOM's recipes
    return ENGINES["vllm"]  # the recipes every published minimum comes from


def _kv_dtype(request: Request, engine: Engine, checkpoint: Checkpoint, m: Model) -> tuple[
        str, str]:
    """The KV dtype and why."""
    if request.kv_dtype != "auto":
        if request.kv_dtype == "fp8" and engine.memory_model in ("pooled", "unified"):
            raise PlanError(f"--kv-dtype fp8 is not a {engine.name} option")
        return request.kv_dtype, f"KV dtype {request.kv_dtype} as asked"
    family = request.accelerator.family
    if engine.fp8_kv_by_default:
        return "fp8", f"KV in FP8, as {engine.name}'s Kimi recipes set it"
    if checkpoint.format == "nvfp4":
        return "fp8", "KV in FP8, as the NVFP4 recipes set it (--kv-dtype bf16 to override)"
    if m.key == "k3" and family in ("blackwell", "cdna4"):
        return "fp8", "KV in FP8, as the K3 recipe does on Blackwell (--kv-dtype bf16 to override)"
    if engine.key == "sglang" and request.accelerator.vendor == "amd":
        return "fp8", "KV in FP8, as SGLang's AMD cookbook sets it (fp8_e4m3)"
    return "bf16", "KV in BF16, the engine's default for this checkpoint"


@dataclass(frozen=True)
class _Layout:
    gpus: int
    tp: int
    pp: int
    ep: int
    nodes: int
    weights_gib: float  # per GPU
    usable_gib: float  # per GPU, before weights
    kv_gib: float  # per GPU
    tokens: int  # per replica
    problem: str | None  # why this layout cannot be used at all


def _layout(engine: Engine, m: Model, acc: Accelerator, per_node: int, n: int,
            weights_bytes: int, kv_layer_bytes: int) -> _Layout:
    """Replica of ``n`` GPUs: its shape, memory and KV capacity (``problem`` if invalid)."""
    layers = m.architecture.cached_layers
    problem = None
    # TP stays inside one NVLink domain: a node, or up to 8 GPUs over NVL72 trays (the
    # K3 recipe's TP8 on 8 GB300 = 2 trays); beyond it vLLM adds PP, SGLang/TRT-LLM widen TP.
    domain = max(per_node, min(acc.nvlink_gpus, TP_IN_NVLINK_DOMAIN))
    nodes = max(n // per_node, 1)
    if n <= domain:
        tp, pp = n, 1
    else:
        tp, pp = (domain, n // domain) if engine.multi_node == "tp_pp" else (n, 1)
    if n > per_node and n % per_node:
        problem = f"{n} GPUs are not whole nodes of {per_node}"
    elif n > per_node and engine.multi_node == "none":
        problem = f"{engine.name} serves from one node ({per_node} GPUs)"
    if problem is None and m.architecture.attention_heads % tp:
        problem = f"TP{tp} does not divide the {m.architecture.attention_heads} attention heads"
    cap = engine.max_tp.get(acc.vendor)
    if problem is None and cap is not None and tp > cap:
        problem = f"{engine.name} on {acc.vendor.upper()} caps TP at {cap}"
    weights_gib = weights_bytes / n / GIB
    if engine.memory_model == "share_of_free":
        usable = acc.memory_gib - engine.reserve_gib
        kv = engine.fraction * (usable - weights_gib)
    else:
        usable = acc.memory_gib * engine.fraction - engine.reserve_gib
        kv = usable - weights_gib
    per_gpu_token = kv_layer_bytes * math.ceil(layers / pp)
    tokens = int(kv * GIB // per_gpu_token) if kv > 0 else 0
    ep = min(tp, per_node) if engine.ep_per_node else 1
    return _Layout(n, tp, pp, ep, nodes, weights_gib, usable, kv, tokens, problem)


def _describe(layout: _Layout) -> str:
    shape = f"TP{layout.tp}" + (f"×PP{layout.pp}" if layout.pp > 1 else "")
    if layout.ep > 1:
        shape += f", EP{layout.ep}"
    return f"{shape} on {layout.nodes} node{'s' if layout.nodes > 1 else ''}"


def _plan_gpus(request: Request, m: Model, ckpt: Checkpoint, engine: Engine, kv_dtype: str,
               context: int, reasons: list[str]) -> Plan:
    acc = request.accelerator
    per_node = request.gpus_per_node or acc.gpus_per_node
    available = per_node * request.nodes
    dtype_bytes = 1 if kv_dtype == "fp8" else 2
    kv_token = kv_bytes_per_token(m.architecture, dtype_bytes)
    kv_layer = kv_token // m.architecture.cached_layers
    layouts = [_layout(engine, m, acc, per_node, n, ckpt.weights_bytes, kv_layer)
               for n in REPLICA_SIZES]
    valid = [lay for lay in layouts if lay.problem is None]
    reasons.append(
        f"per GPU: {acc.name} {acc.memory_gib:g} GiB; " + (
            f"{engine.fraction:.2f} × ({acc.memory_gib:g} − {engine.reserve_gib:g} GiB runtime "
            f"reserve − weights) goes to KV ({engine.fraction_flag})"
            if engine.memory_model == "share_of_free" else
            f"{acc.memory_gib:g} × {engine.fraction:.2f} ({engine.fraction_flag}) − "
            f"{engine.reserve_gib:g} GiB activation/runtime reserve = "
            f"{_gib(valid[0].usable_gib if valid else 0)} for weights + KV"))
    reasons.append(
        f"KV: {m.architecture.kv_elements_per_token_per_layer} values per token per layer × "
        f"{dtype_bytes} B × {m.architecture.cached_layers} layers = {kv_token:,} B per token, "
        "replicated on every TP rank (a PP stage holds only its layers)")

    def seqs(lay: _Layout) -> int:
        return lay.tokens // context

    best: tuple[int, _Layout] | None = None
    for lay in valid:
        if seqs(lay) < 1:
            continue
        total = lay.gpus * math.ceil(request.concurrency / seqs(lay))
        if best is None or total < best[0]:
            best = (total, lay)
    smaller = [lay for lay in valid if best is None or lay.gpus < best[1].gpus]
    if smaller:
        lay = smaller[-1]
        reasons.append(
            f"{lay.gpus} GPU(s) ({_describe(lay)}): weights {_gib(lay.weights_gib)} per GPU "
            f"leave {_gib(lay.kv_gib)} for KV"
            + (f" = {lay.tokens:,} tokens, short of one {context:,}-token sequence"
               if lay.kv_gib > 0 else ", so the weights alone do not fit"))
    if best is None:
        reasons.append(f"no layout of up to {REPLICA_SIZES[-1]} {acc.name} GPUs holds the "
                       f"weights and one {context:,}-token sequence")
    else:
        lay = best[1]
        reasons.append(
            f"minimum: {best[0]} GPUs ({_describe(lay)} per replica): weights "
            f"{_gib(lay.weights_gib)} per GPU, KV {_gib(lay.kv_gib)} per GPU = {lay.tokens:,} "
            f"tokens = {seqs(lay)} sequence(s) of {context:,} per replica")

    # The layout on the hardware given: the minimum's replica shape, repeated; else the
    # largest valid replica that the hardware holds, to show why it falls short.
    if best is not None and best[1].gpus <= available and (
            best[1].gpus <= per_node or best[1].nodes <= request.nodes):
        lay = best[1]
    else:
        fitting = [x for x in valid if x.gpus <= available]
        lay = fitting[-1] if fitting else layouts[0]
    if lay.gpus <= per_node:
        replicas = (per_node // lay.gpus) * request.nodes
        nodes_used = math.ceil(lay.gpus * replicas / per_node)
    else:
        replicas = request.nodes // lay.nodes
        nodes_used = lay.nodes * replicas
    tokens = lay.tokens * replicas
    sequences = seqs(lay) * replicas
    fits = best is not None and sequences >= request.concurrency
    here = f"{request.nodes} × {per_node} {acc.name}"
    if fits:
        reasons.append(f"fits on {here}: {replicas} replica(s) of {_describe(lay)}, "
                       f"{tokens:,} tokens in cache, {sequences} concurrent sequence(s) of "
                       f"{context:,}")
    else:
        reasons.append(f"does not fit on {here}: " + (
            f"weights {_gib(ckpt.weights_bytes / GIB)} / {lay.gpus} GPUs ({_describe(lay)}) = "
            f"{_gib(lay.weights_gib)} per GPU > {_gib(lay.usable_gib)} usable "
            f"({acc.memory_gib:g} × {engine.fraction:.2f} − {engine.reserve_gib:g})"
            if lay.kv_gib <= 0 else
            f"{replicas} replica(s) of {_describe(lay)} hold {sequences} sequence(s) of "
            f"{context:,}, {request.concurrency} wanted"))
    return Plan(
        fits=fits, min_gpus=best[0] if best else None, weights_bytes=ckpt.weights_bytes,
        kv_bytes_per_token=kv_token, kv_dtype=kv_dtype, max_tokens_in_cache=tokens,
        parallelism=Parallelism(lay.tp, lay.pp, replicas, lay.ep, nodes_used,
                                lay.gpus * replicas),
        engine=engine.key, reasons=tuple(reasons), model=m.key, checkpoint=ckpt.repo,
        hardware=here, context=context, concurrency=request.concurrency,
        concurrent_sequences=sequences,
    )


def _plan_pooled(request: Request, m: Model, ckpt: Checkpoint, engine: Engine, kv_dtype: str,
                 context: int, reasons: list[str]) -> Plan:
    """llama.cpp: GPU memory and CPU RAM form one pool (layers split over GPUs, the rest,
    experts first with ``-ot``/``--cpu-moe``, in RAM); one node."""
    acc = request.accelerator
    gpus = (request.gpus_per_node or acc.gpus_per_node) if acc.vendor != "apple" else 1
    kv_token = kv_bytes_per_token(m.architecture, 2)
    ram = max(request.cpu_ram_gib - HOST_RESERVE_GIB, 0.0)
    per_gpu = max(acc.memory_gib - engine.reserve_gib, 0.0)
    need = (ckpt.weights_bytes + kv_token * context * request.concurrency) / GIB
    min_gpus = next((n for n in range(gpus + 1) if n * per_gpu + ram >= need), None)
    if min_gpus is None and ram + per_gpu > 0:
        min_gpus = max(math.ceil((need - ram) / per_gpu), 0)
    pool = gpus * per_gpu + ram
    spare = pool - ckpt.weights_bytes / GIB
    tokens = int(spare * GIB // kv_token) if spare > 0 else 0
    sequences = tokens // context
    fits = sequences >= request.concurrency
    reasons.append(
        f"pool: {gpus} × ({acc.memory_gib:g} − {engine.reserve_gib:g} GiB compute buffers) + "
        f"CPU RAM {request.cpu_ram_gib:g} − {HOST_RESERVE_GIB:g} GiB for the OS = {_gib(pool)}; "
        f"weights {_gib(ckpt.weights_bytes / GIB)}; unsloth's rule: RAM + VRAM must hold the "
        "quant, else llama.cpp pages from disk")
    reasons.append(
        f"KV: {m.architecture.kv_elements_per_token_per_layer} × 2 B × "
        f"{m.architecture.cached_layers} layers = {kv_token:,} B per token (F16 MLA latent "
        "cache; llama.cpp's layout for Kimi unverified)")
    reasons.append(f"{'fits' if fits else 'does not fit'}: {_gib(max(spare, 0))} left = "
                   f"{tokens:,} tokens = {sequences} sequence(s) of {context:,}")
    return Plan(
        fits=fits, min_gpus=min_gpus, weights_bytes=ckpt.weights_bytes,
        kv_bytes_per_token=kv_token, kv_dtype="bf16", max_tokens_in_cache=tokens,
        parallelism=Parallelism(1, max(gpus, 1), 1, 1, 1, gpus), engine=engine.key,
        reasons=tuple(reasons), model=m.key, checkpoint=ckpt.repo,
        hardware=f"{gpus} × {acc.name} + {request.cpu_ram_gib:g} GiB RAM", context=context,
        concurrency=request.concurrency, concurrent_sequences=sequences,
    )


def _plan_exo(request: Request, m: Model, ckpt: Checkpoint, engine: Engine, kv_dtype: str,
              context: int, reasons: list[str]) -> Plan:
    """exo over ``nodes`` identical Macs: pipeline placement as exo's, over all of them."""
    acc = request.accelerator
    card = exo.card(m, ckpt)
    avail = int((acc.memory_gib - HOST_RESERVE_GIB) * GIB)
    machines = [exo.Machine(f"mac{i}", avail) for i in range(request.nodes)]
    kv_token = kv_bytes_per_token(m.architecture, 2)
    kv_layer = kv_token // m.architecture.cached_layers
    reasons.append(
        f"each {acc.name}: {acc.memory_gib:g} − {HOST_RESERVE_GIB:g} GiB for macOS = "
        f"{_gib(avail / GIB)} as exo's ram_available (exo measures it; macOS also caps "
        "GPU-wired memory unless iogpu.wired_limit_mb is raised)")

    def capacity(placement: exo.Placement) -> int:
        return min((s.ram_available - s.bytes_needed) // (kv_layer * s.layers)
                   for s in placement.shards)

    min_macs = None
    for k in range(1, 65):
        try:
            trial = exo.place(card, [exo.Machine(f"mac{i}", avail) for i in range(k)],
                              min_nodes=k)
        except exo.PlacementError:
            continue
        if capacity(trial) >= context * request.concurrency:
            min_macs = k
            break
    try:
        placement = exo.place(card, machines, min_nodes=request.nodes)
    except exo.PlacementError as exc:
        reasons.append(f"does not fit: {exc}")
        return Plan(
            fits=False, min_gpus=min_macs, weights_bytes=ckpt.weights_bytes,
            kv_bytes_per_token=kv_token, kv_dtype="bf16", max_tokens_in_cache=0,
            parallelism=Parallelism(1, request.nodes, 1, 1, request.nodes, request.nodes),
            engine=engine.key, reasons=tuple(reasons), model=m.key, checkpoint=ckpt.repo,
            hardware=f"{request.nodes} × {acc.name}", context=context,
            concurrency=request.concurrency, concurrent_sequences=0,
        )
    tokens = capacity(placement)
    sequences = tokens // context
    fits = sequences >= request.concurrency
    layers = ", ".join(f"{s.machine} layers {s.start_layer}-{s.end_layer - 1} "
                       f"({s.bytes_needed / 1e9:,.1f} GB)" for s in placement.shards)
    reasons.append(f"exo pipeline placement in proportion to memory: {layers}")
    reasons.append(
        f"KV: {kv_token:,} B per token (BF16 MLA latent; mlx-lm's cache layout unverified, and "
        f"exo reserves no KV) → {tokens:,} tokens on the tightest Mac = {sequences} "
        f"sequence(s) of {context:,}; {'fits' if fits else 'does not fit'}")
    return Plan(
        fits=fits, min_gpus=min_macs, weights_bytes=ckpt.weights_bytes,
        kv_bytes_per_token=kv_token, kv_dtype="bf16", max_tokens_in_cache=tokens,
        parallelism=Parallelism(1, len(placement.shards), 1, 1, len(placement.shards),
                                len(placement.shards)),
        engine=engine.key, reasons=tuple(reasons), model=m.key, checkpoint=ckpt.repo,
        hardware=f"{request.nodes} × {acc.name}", context=context,
        concurrency=request.concurrency, concurrent_sequences=sequences,
        placement=[asdict(s) for s in placement.shards],
    )


def plan(request: Request) -> Plan:
    """Plan ``request``; :class:`PlanError` when the request cannot be planned at all (an
    unknown model or checkpoint, an engine or accelerator that cannot run the checkpoint)."""
    if request.nodes < 1 or request.concurrency < 1 or (request.gpus_per_node or 1) < 1:
        raise PlanError("nodes, GPUs per node and concurrency must be at least 1")
    try:
        m = model(request.model)
        wanted = request.checkpoint
        if wanted is None and request.accelerator.vendor == "apple":
            # On a Mac the native checkpoints do not load: default to the first MLX card.
            wanted = next((c.key for c in m.checkpoints if c.format == "mlx"), None)
        ckpt = m.checkpoint(wanted)
    except KeyError as exc:
        raise PlanError(str(exc.args[0])) from None
    acc = request.accelerator
    if ckpt.format != "gguf" and acc.vendor not in ckpt.vendors:
        raise PlanError(f"{ckpt.repo} ({ckpt.format}) does not run on {acc.name}; pick another "
                        f"--quant ({', '.join(c.key for c in m.checkpoints)})")
    if ckpt.requires is not None and acc.family not in ckpt.requires:
        raise PlanError(f"{ckpt.repo} needs {'/'.join(sorted(ckpt.requires))} accelerators, "
                        f"not {acc.name}")
    engine = _choose_engine(request, ckpt)
    context = request.context or m.architecture.context_length
    if context > m.architecture.context_length:
        raise PlanError(f"{m.name} takes at most {m.architecture.context_length:,} tokens")
    kv_dtype, kv_reason = _kv_dtype(request, engine, ckpt, m)
    reasons = [
        f"engine: {engine.name}" + (" (best for this checkpoint and hardware)"
                                    if request.engine == "best" else ""),
        f"weights: {ckpt.repo} ({ckpt.format}) {ckpt.weights_bytes / 1e9:,.1f} GB = "
        f"{_gib(ckpt.weights_bytes / GIB)} [{ckpt.source}]",
        kv_reason,
    ]
    if ckpt.estimate:
        reasons.append(f"estimate: {ckpt.estimate}")
    if m.architecture.estimate_note:
        reasons.append(f"estimate: {m.architecture.estimate_note}")
    planner = {"pooled": _plan_pooled, "unified": _plan_exo}.get(engine.memory_model,
                                                                 _plan_gpus)
    return planner(request, m, ckpt, engine, kv_dtype, context, reasons)
