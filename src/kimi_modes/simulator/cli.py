"""``kimi-modes simulate`` (and ``python -m kimi_modes.simulator``): run the engine.

Imports nothing heavy beyond protocol (for the family list) until the command runs, since the
main CLI imports this module to register the command.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kimi_modes.protocol.families import Family

if TYPE_CHECKING:
    import uvicorn

    from kimi_modes.simulator.config import SimConfig

FAMILY_HELP = "Model family: " + ", ".join(Family) + "."


def simulate(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port; 0 picks a free one.")] = 8001,
    model: Annotated[str, typer.Option(help="Served model name.")] = "moonshotai/Kimi-K2.5",
    family: Annotated[
        str, typer.Option(help=FAMILY_HELP)
    ] = "k2.5",
    max_model_len: Annotated[
        int, typer.Option(help="Context length (0: the family's).")
    ] = 0,
    script: Annotated[
        Path | None, typer.Option(help="JSON file of scripted reply rules.")
    ] = None,
    ttft: Annotated[float, typer.Option(help="Time to first token, seconds.")] = 0.2,
    tpot: Annotated[float, typer.Option(help="Time per output token, seconds.")] = 0.02,
    jitter: Annotated[
        float, typer.Option(help="Uniform jitter on each latency, as a fraction (0.1 = ±10%).")
    ] = 0.0,
    tokens_per_chunk: Annotated[int, typer.Option(help="Tokens per streamed chunk.")] = 1,
    max_num_seqs: Annotated[
        int, typer.Option(help="Requests generated at once; the rest wait (FIFO).")
    ] = 256,
    reasoning_field: Annotated[
        str, typer.Option(help="Reasoning delta field: reasoning, reasoning_content or both.")
    ] = "reasoning",
    raw_markers: Annotated[
        bool, typer.Option(help="Behave as vLLM without the Kimi parsers: raw Kimi text in "
                           "content.")
    ] = False,
    fail_rate: Annotated[
        float, typer.Option(help="Share of requests answered with --fail-status.")
    ] = 0.0,
    fail_status: Annotated[int, typer.Option(help="500, 429 or 503.")] = 500,
    cut_rate: Annotated[
        float, typer.Option(help="Share of answers cut off mid-way (connection closed).")
    ] = 0.0,
    hang_rate: Annotated[
        float, typer.Option(help="Share of requests accepted and never answered.")
    ] = 0.0,
    retry_after: Annotated[
        float | None, typer.Option(help="Retry-After seconds sent with 429 and 503 faults.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fault and jitter draws.")] = 0,
    sampling: Annotated[
        str, typer.Option(help="open: any sampling value, as vLLM; official: refuse (400) what "
                          "Moonshot's API refuses for the family (fixed temperature, top_p...).")
    ] = "open",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the simulated Kimi engine: vLLM serving Kimi, with set latencies and faults."""
    from kimi_modes.simulator.config import Settings, SimConfig
    from kimi_modes.simulator.script import ScriptError, load_script

    try:
        settings = Settings(
            ttft=ttft, tpot=tpot, jitter=jitter, tokens_per_chunk=tokens_per_chunk,
            max_num_seqs=max_num_seqs, fail_rate=fail_rate, fail_status=fail_status,
            cut_rate=cut_rate, hang_rate=hang_rate, retry_after=retry_after,
        )
        config = SimConfig(
            model=model, family=family, max_model_len=max_model_len,
            reasoning_field=reasoning_field, raw_markers=raw_markers,
            script=load_script(script) if script is not None else None, seed=seed,
            settings=settings, sampling=sampling,
        )
    except (ValueError, ScriptError) as exc:
        raise typer.BadParameter(str(exc)) from None
    serve(config, host=host, port=port, log_level=log_level)


def serve(config: SimConfig, *, host: str = "127.0.0.1", port: int = 8001,
          log_level: str = "info") -> None:
    """Serve ``config`` until SIGINT/SIGTERM. Prints ``Simulated Kimi engine listening on
    http://HOST:PORT`` (the real port) once connections are accepted."""
    import uvicorn

    from kimi_modes.simulator.app import create_app

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    real_port = sock.getsockname()[1]
    uv_config = uvicorn.Config(
        create_app(config), loop="uvloop", http="httptools", lifespan="off",
        log_level=log_level.lower(), access_log=False, proxy_headers=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(uv_config)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    with asyncio.Runner(loop_factory=uv_config.get_loop_factory()) as runner:
        runner.run(_serve(server, sock, f"http://{shown}:{real_port}"))


async def _serve(server: uvicorn.Server, sock: socket.socket, url: str) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    # uvicorn offers a flag, not an event, for "accepting connections"
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    if server.started:
        # Start-up garbage becomes permanent, so the first burst of requests does not pay for
        # a full collection (~30 ms stalls in every stream; vLLM does the same for its heap).
        gc.collect()
        gc.freeze()
        print(f"Simulated Kimi engine listening on {url}", flush=True)
    await task
