"""Fixtures that start the real processes: the simulated engine, the gateway, and a
throwaway PostgreSQL server.

Each is started the way a user starts it (``python -m kimi_modes simulate|serve``) on a free
loopback port, waited for on its ``/health``, and stopped at the end of the test. The
machinery is in :mod:`helpers.processes`; shared tool schemas and clients in
:mod:`helpers.tools` and :mod:`helpers.clients`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import helpers.processes
from helpers.processes import Proc, free_port, start_process
from helpers.simulator import Sim, launch

if TYPE_CHECKING:
    from helpers.postgres import PostgresCluster


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """``start_simulator("--ttft", "0.01", ...)`` → a running simulated engine (the one way
    the tests start it: :func:`helpers.simulator.launch`), stopped after the test."""
    sims: list[Sim] = []

    def start(*args: str) -> Sim:
        sim = launch(args, tmp_path / f"simulate-{len(sims)}.log")
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``start_gateway(toml_text, *extra_args)`` → a running gateway with that config."""
    procs: list[Proc] = []

    def start(config: str | None = None, *args: str, env: dict[str, str] | None = None,
              pass_fds: tuple[int, ...] = ()) -> Proc:
        cli = ["serve", "--no-access-log"]
        if config is not None:
            path = tmp_path / f"gateway-{len(procs)}.toml"
            path.write_text(config)
            cli += ["--config", str(path)]
        proc = start_process([*cli, *args], tmp_path / f"gateway-{len(procs)}.log", env=env,
                      pass_fds=pass_fds)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def upstream_toml() -> Callable[..., str]:
    """``upstream_toml(url, kind=..., name=..., extra=...)``: a gateway config with one
    upstream at ``url`` (a base URL ending in ``/v1``)."""
    return helpers.processes.upstream_toml


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (for "upstream is down" tests)."""
    return free_port()


@pytest.fixture(scope="module")
def embedded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A gateway with no configuration, i.e. on the embedded default model; one per module,
    since loading the model is the slow part."""
    log = tmp_path_factory.mktemp("embedded") / "gateway.log"
    proc = start_process(["serve", "--no-access-log"], log, timeout=180,
                  env={"KIMI_MODES_CONFIG": ""})
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL server for the session (started when a test first asks);
    each test takes a database of its own (``postgres.new_database()``)."""
    from helpers.postgres import PostgresCluster  # psycopg: the postgres extra

    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
