"""Several gateway processes on one listening socket (``kimi-modes serve --workers N``).

The parent binds the socket once and starts ``N`` worker processes (``multiprocessing``'s
*spawn*: fresh interpreters, nothing inherited but the socket), each running the very same
serving function one process runs alone; the kernel spreads the accepted connections over
them. They share the run store (runs, events, the memories between requests) and a
directory of metrics (summed for each scrape); the gateway-wide caps are divided between
them by the caller (:meth:`~kimi_modes.config.Settings.shared_by`; docs/scaling.md, "Many
processes").

The parent only supervises: a worker that dies after it started is replaced; one that fails
while starting (exit status :data:`STARTUP_FAILURE`) stops them all. ``SIGINT`` or
``SIGTERM`` to the parent stops every worker gracefully (each is sent ``SIGTERM``, the signal
uvicorn drains open connections on) and the parent returns once all have exited; a worker
still running ``stop_timeout`` seconds later is killed. No worker outlives the parent: each
also stops when the parent dies (``PR_SET_PDEATHSIG`` where Linux offers it).

uvicorn's own ``Multiprocess`` supervisor is not used: its workers run ``uvicorn.Server``
on a pickled ``uvicorn.Config``, but a gateway worker first builds and starts its
:class:`~kimi_modes.server.app.Gateway` (start-up errors as one line, not a traceback) and
serves with a protocol class made at run time (:mod:`kimi_modes.server.connection`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from typing import Any, Protocol

from prometheus_client.multiprocess import mark_process_dead

from kimi_modes.config import Settings
from kimi_modes.server.metrics import MULTIPROCESS_DIR
from kimi_modes.tools.descriptors import seal_inherited

#: A worker's exit status when it could not start (uvicorn's ``STARTUP_FAILURE`` too).
STARTUP_FAILURE = 3

log = logging.getLogger("kimi_modes.server.workers")
_spawn = multiprocessing.get_context("spawn")


class WorkerMain(Protocol):
    """What each worker runs: serve ``settings`` on ``sock`` until told to stop, calling
    ``on_started`` once it accepts requests; False when it could not start."""

    def __call__(self, settings: Settings, sock: socket.socket, *, access_log: bool,
                 on_started: Callable[[], None]) -> bool: ...


def _die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent exits (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker(main: WorkerMain, values: dict[str, Any], sock: socket.socket, access_log: bool,
            ready: Any) -> None:
    """A worker process's body: run ``main``; exit :data:`STARTUP_FAILURE` if it failed."""
    _die_with_parent()
    # The settings travel as their values: a --config file's settings class is made at run
    # time (it names its file), so it cannot be pickled; the values are already read.
    settings = Settings.model_validate(values)
    seal_inherited()  # as `serve` does in one process: our children get none of ours
    try:
        started = main(settings, sock, access_log=access_log,
                       on_started=lambda: ready.put(os.getpid()))
    except KeyboardInterrupt:  # stopped while still starting
        started = True
    if not started:
        raise SystemExit(STARTUP_FAILURE)


class Workers:
    """``count`` worker processes serving ``settings`` with ``main`` on ``sock``."""

    def __init__(self, main: WorkerMain, settings: Settings, sock: socket.socket, count: int, *,
                 access_log: bool, stop_timeout: float = 10.0) -> None:
        if count < 1:
            raise ValueError("at least one worker")
        self._main = main
        self._settings = settings
        self._sock = sock
        self._count = count
        self._access_log = access_log
        self._stop_timeout = stop_timeout
        self._ready: Any = _spawn.SimpleQueue()
        self._stop = threading.Event()
        self.processes: list[SpawnProcess] = []
        self._metrics_dir = ""

    def _start_one(self) -> SpawnProcess:
        process = _spawn.Process(
            target=_worker,
            args=(self._main, self._settings.model_dump(), self._sock, self._access_log,
                  self._ready),
            name="kimi-modes-worker",
        )
        process.start()
        return process

    def run(self, on_all_started: Callable[[list[int]], None]) -> bool:
        """Start the workers and supervise them until SIGINT/SIGTERM; ``on_all_started``
        gets the worker pids once each has started (not called when start-up failed).
        Returns False when a worker failed to start; blocks the calling (main) thread."""
        previous = {sig: signal.signal(sig, lambda *_: self._stop.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        failed = False
        # Every worker writes its metrics here and sums all of them for a scrape
        # (server/metrics.py); the workers get it through their environment.
        metrics_dir = tempfile.TemporaryDirectory(prefix="kimi-modes-metrics-")
        self._metrics_dir = metrics_dir.name
        saved = os.environ.get(MULTIPROCESS_DIR)
        os.environ[MULTIPROCESS_DIR] = metrics_dir.name
        try:
            self.processes = [self._start_one() for _ in range(self._count)]
            started: set[int] = set()
            announced = False
            while not self._stop.wait(0.1):
                while not self._ready.empty():
                    started.add(self._ready.get())
                if not announced and len(started) >= self._count:
                    announced = True
                    on_all_started([p.pid for p in self.processes if p.pid is not None])
                failed = self._replace_dead()
                if failed:
                    break
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if saved is None:
                os.environ.pop(MULTIPROCESS_DIR, None)
            else:
                os.environ[MULTIPROCESS_DIR] = saved
            metrics_dir.cleanup()
        return not failed

    def _replace_dead(self) -> bool:
        """Replace each worker that exited; True when one failed at start-up (stop all)."""
        for index, process in enumerate(self.processes):
            if process.is_alive():
                continue
            process.join()
            if process.pid is not None:  # its requests in flight are no longer counted
                mark_process_dead(process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s could not start; stopping", process.pid)
                return True
            log.warning("worker %s exited (status %s); starting another",
                        process.pid, process.exitcode)
            self.processes[index] = self._start_one()
        return False

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(self._stop_timeout)
            if process.is_alive():
                log.warning("worker %s did not stop in %ss; killing it",
                            process.pid, self._stop_timeout)
                process.kill()
                process.join()
