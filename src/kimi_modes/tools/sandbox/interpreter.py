"""One persistent sandboxed Python interpreter per run: :class:`PythonInterpreter`.

The interpreter is the in-sandbox REPL of ``_inside.py`` (``repl`` mode), started on the first
call and kept until :meth:`PythonInterpreter.aclose`. Variables, imports and definitions persist
from one call to the next. Cells run one at a time (concurrent calls wait their turn).

What happens when a cell misbehaves:

- it raises: the traceback comes back, the state is kept;
- it passes ``wall_timeout`` or ``cpu_seconds``: it is interrupted with ``WallTimeExceeded`` /
  ``CPUTimeExceeded`` (state kept);
- it has not returned ``kill_grace`` seconds after the wall-clock limit (stuck in C code, or it
  catches the interruption), the interpreter exits or is killed (memory, its lifetime CPU limit,
  ``os._exit``), or the call is cancelled: the whole sandbox is killed and the result says the
  state is lost; the next call starts a new interpreter and says so too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_modes.tools.sandbox.runner import Sandbox, SandboxUnavailable, wait_exited

__all__ = ["CellResult", "PythonInterpreter"]

_START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class CellResult:
    """The outcome of one code cell.

    ``error``: the traceback (or what went wrong), ``None`` on success. ``kind``: ``None``,
    ``exception``, ``syntax``, ``timeout``, ``cpu``, ``memory``, ``exit`` (``SystemExit`` with
    status 0; not a failure), ``killed`` (the interpreter was killed or died: state lost),
    ``start`` (no interpreter could be started), ``unavailable`` (the sandbox refuses).
    ``restarted``: the cell ran in a new interpreter because the previous one was lost.
    """

    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    error: str | None = None
    kind: str | None = None
    restarted: bool = False
    duration: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None and self.kind != "exit"

    @property
    def state_lost(self) -> bool:
        return self.kind == "killed"


class PythonInterpreter:
    """The run's sandboxed interpreter, started lazily. ``aclose`` kills it and everything
    it started (the sandbox's pid namespace goes with it)."""

    def __init__(self, sandbox: Sandbox, workspace: Path) -> None:
        self.sandbox = sandbox
        self.workspace = workspace
        self.limits = sandbox.limits
        self._process: asyncio.subprocess.Process | None = None
        #: The protocol socket (see _inside.py), read and written here only.
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lost: str | None = None  # why the previous interpreter is gone
        self._lock = asyncio.Lock()
        self._stderr_tail = bytearray()
        self._stderr_pump: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def execute(self, code: str) -> CellResult:
        """Run ``code`` as one cell; never raises for anything the code does."""
        async with self._lock:
            started = time.monotonic()
            if self._closed:
                return CellResult(error="the run is over; its interpreter is closed",
                                  kind="start")
            restarted = False
            if not self.alive:
                restarted = self._lost is not None
                try:
                    await self._start()
                except SandboxUnavailable as exc:
                    return CellResult(error=str(exc), kind="unavailable")
                except _StartFailed as exc:
                    return CellResult(error=str(exc), kind="start", restarted=restarted,
                                      duration=time.monotonic() - started)
            else:
                await self.sandbox.prepare(self.workspace)  # files the gateway wrote meanwhile
            try:
                reply = await self._exchange(code)
            except asyncio.CancelledError:
                self._discard("the call was cancelled while it ran")
                raise
            except _Lost as exc:
                error = (f"{exc} The interpreter is gone and its state is lost: variables, "
                         "imports and definitions from earlier calls are gone (files in the "
                         "workspace remain). The next call starts a new interpreter.")
                return CellResult(error=error, kind="killed", restarted=restarted,
                                  duration=time.monotonic() - started)
            return CellResult(
                stdout=str(reply.get("stdout", "")), stderr=str(reply.get("stderr", "")),
                stdout_bytes=int(reply.get("stdout_bytes", 0)),
                stderr_bytes=int(reply.get("stderr_bytes", 0)),
                error=reply.get("error"), kind=reply.get("kind"), restarted=restarted,
                duration=time.monotonic() - started)

    async def _start(self) -> None:
        limits = self.limits
        await self.sandbox.require()
        config = self.sandbox.limit_config(limits, per_call_cpu=False)
        config.update(cell_cpu=max(1, round(limits.cpu_seconds)), capture=limits.output_limit)
        # A reply holds at most ~2 x output_limit characters, each at most 12 bytes of JSON.
        stream_limit = 32 * limits.output_limit + (1 << 20)
        ours, theirs = socket.socketpair()
        try:
            config["channel"] = theirs.fileno()
            try:
                process = await self.sandbox.spawn("repl", config, [], self.workspace,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   pass_fds=[theirs.fileno()])
            finally:
                theirs.close()  # the sandbox's now: its end of file is ours
            self._process = process
            reader, self._writer = await asyncio.open_unix_connection(sock=ours,
                                                                      limit=stream_limit)
        except BaseException:
            ours.close()
            if self._process is not None:
                self._discard("cancelled while starting")
            raise
        self._reader = reader
        self._stderr_tail = bytearray()
        assert process.stderr is not None
        self._stderr_pump = asyncio.ensure_future(self._pump_stderr(process.stderr))
        try:
            line = await asyncio.wait_for(reader.readline(), _START_TIMEOUT)
            ready = json.loads(line) if line else {}
        except (TimeoutError, ValueError):
            ready = {}
        except BaseException:
            self._discard("cancelled while starting")
            raise
        if not ready.get("ready"):
            await wait_exited(process, 1.0)
            detail = self._stderr_tail.decode("utf-8", "replace").strip()[-1000:]
            self._discard("it did not start")
            raise _StartFailed("the sandboxed Python interpreter did not start"
                               + (f": {detail}" if detail else ""))
        self._lost = None

    async def _pump_stderr(self, stream: asyncio.StreamReader) -> None:
        # Only bubblewrap's and the supervisor's own messages arrive here.
        while data := await stream.read(4096):
            self._stderr_tail = (self._stderr_tail + data)[-4096:]

    async def _exchange(self, code: str) -> dict[str, Any]:
        process, reader, writer = self._process, self._reader, self._writer
        assert process is not None and reader is not None and writer is not None
        limits = self.limits
        request = {"code": code, "cpu": max(1, round(limits.cpu_seconds)),
                   "wall": limits.wall_timeout}
        deadline = limits.wall_timeout + limits.kill_grace
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), deadline)
        except TimeoutError:
            self._discard("timeout")
            raise _Lost(f"The code did not return within {deadline:g} s (the wall-clock "
                        f"limit is {limits.wall_timeout:g} s).") from None
        except ConnectionError:  # it is gone: say why below
            line = b""
        except ValueError:  # a line past the stream limit
            self._discard("protocol")
            raise _Lost("The interpreter's reply was too large.") from None
        if not line:
            raise _Lost(await self._death(process))
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._discard("protocol")
            raise _Lost("The interpreter's reply was malformed.")
        return reply

    async def _death(self, process: asyncio.subprocess.Process) -> str:
        """Why ``process`` is gone (it closed its end), once it has exited."""
        await wait_exited(process, 2.0)
        code = process.returncode
        if self._process is process:
            self._discard("died")
        if self._closed:
            return "The run was closed while the code ran."
        if code is None:
            return "The interpreter stopped answering."
        if code < 0:
            code = 128 - code
        if code > 128:
            number = code - 128
            name = _signal_name(number)
            hint = ""
            if number == signal.SIGKILL:
                hint = (" (it most likely reached its lifetime CPU limit of "
                        f"{self.limits.interpreter_cpu_seconds:g} s or ran out of memory)")
            return f"The interpreter was killed by {name}{hint}."
        return f"The interpreter exited with status {code}."

    def _discard(self, why: str) -> None:
        """Kill the current interpreter (if any) and remember that its state is lost."""
        process, self._process = self._process, None
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        if process is not None:
            self.sandbox.kill(process)
            self.sandbox.reap_later(process)
            self._lost = why
        if self._stderr_pump is not None:
            self._stderr_pump.cancel()
            self._stderr_pump = None

    async def aclose(self) -> None:
        """Kill the interpreter and every process it left; later calls are refused."""
        self._closed = True
        process = self._process
        self._discard("closed")
        if process is not None:
            await wait_exited(process, 2.0)


class _StartFailed(Exception):
    pass


class _Lost(Exception):
    pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
