"""The simulator's own tests: ``sim`` is one engine with no latency shared by a test
module, put back to its start settings before each test (engines are started by
:func:`helpers.simulator.launch`, as everywhere)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from helpers.simulator import Sim, launch


@pytest.fixture(scope="module")
def start_module_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Sim]]:
    """Like ``start_sim``, for an engine shared by a test module."""
    sims: list[Sim] = []

    def start(*args: str) -> Sim:
        sim = launch(args, tmp_path_factory.mktemp("sim") / "sim.log")
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


@pytest.fixture(scope="module")
def shared_sim(start_module_sim: Callable[..., Sim]) -> Sim:
    return start_module_sim("--ttft", "0", "--tpot", "0")


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    """The module's engine with no latency and no faults, its counters reset."""
    shared_sim.control(
        ttft=0,
        tpot=0,
        jitter=0,
        tokens_per_chunk=1,
        max_num_seqs=256,
        fail_rate=0,
        cut_rate=0,
        hang_rate=0,
        retry_after=None,
        down=False,
        reset=True,
        seed=0,
    )
    return shared_sim
