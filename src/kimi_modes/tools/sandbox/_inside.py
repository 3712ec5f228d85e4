"""The program that runs *inside* the sandbox. Standard library only; never imports kimi_modes.

The host runs this file's source with ``python3 -I -c STUB SOURCE MODE CONFIG ...`` (the stub
compiles it under the name ``<sandbox>``), so it must
run on whatever interpreter the sandbox uses (Python 3.8 or later). ``CONFIG`` is a JSON object
of resource limits (``cpu``, ``as``, ``nproc``, ``fsize``: hard limits; missing ones are left
alone) plus, for the REPL, ``cell_cpu`` (default per-cell CPU seconds) and ``capture`` (bytes of
each output stream kept per cell).

Before anything else it closes every descriptor above 2 it was handed (but the channel below):
whatever the gateway's process leaked to bubblewrap ends here, before any code runs.

``exec CONFIG ARGV...``
    Apply the limits (soft = hard) and exec ``ARGV``: the launcher of the ``shell`` tool.

``repl CONFIG``
    Apply the limits and serve code cells, one at a time, in one persistent namespace.
    ``CONFIG["channel"]`` is the descriptor of the gateway's protocol socket. Protocol, one
    JSON object per line: the server first writes ``{"ready": true, ...}``; the host then
    writes ``{"code": str, "cpu": int, "wall": float}`` and reads back
    ``{"stdout": str, "stdout_bytes": int, "stderr": str, "stderr_bytes": int,
    "error": str | null, "kind": str | null}`` (``kind``: ``exception``, ``syntax``,
    ``timeout``, ``cpu``, ``memory``, ``exit``).

    User code never holds the gateway's socket. Before any of it runs, the interpreter (the
    sandbox's first process; its parent is the sandbox's init) forks a *supervisor* that
    keeps the socket and closes it in the interpreter. The supervisor is not dumpable
    (``PR_SET_DUMPABLE`` 0), so code without capabilities cannot open its descriptors through
    ``/proc`` or trace it. It forwards each request over a pipe, with a fresh random nonce,
    and builds the reply itself: the output from the two pipes it drains (the interpreter's
    fds 1 and 2; fd 0 is ``/dev/null``), the error and its kind from the interpreter's answer
    carrying that nonce, read from a second pipe. Anything else written to that pipe is
    ignored, so code writing made-up replies to its descriptors changes nothing; code that
    searches the interpreter's own memory for the nonce can only make up its own call's error
    report, as it can by raising. The output threads keep the head and the tail of what is
    written, so output of child processes is captured too and no amount of output can block
    or exhaust the server. A cell is interrupted by ``WallTimeExceeded`` (``SIGALRM`` at
    ``wall`` seconds) or ``CPUTimeExceeded`` (``SIGXCPU`` when the soft CPU limit, raised by
    ``cpu`` before each cell, is reached); both derive from ``BaseException`` so that
    ``except Exception`` in user code does not swallow them. Code stuck in C ignores them
    until it returns; the host kills the interpreter when that takes too long. When the
    interpreter dies the sandbox goes with it (it is bubblewrap's child), and bubblewrap's exit
    status is the interpreter's.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import fcntl
import json
import linecache
import os
import resource
import secrets
import select
import signal
import socket
import struct
import sys
import termios
import threading
import time
import traceback
import types
from typing import IO, Any

_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
}
_SETTLE_SECONDS = 0.25
_TRACEBACK_FRAMES = 100
#: The file name the host runs this source under (see ``runner._INSIDE_STUB``).
SOURCE_NAME = "<sandbox>"
_KINDS = (None, "exception", "syntax", "timeout", "cpu", "memory", "exit")
_PR_SET_DUMPABLE = 4


def close_descriptors(keep: tuple[int, ...] = ()) -> None:
    """Close every open descriptor above 2 but those in ``keep``."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every possible number
        open_fds = list(range(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 16)))
    for fd in open_fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def set_dumpable(dumpable: bool) -> None:
    """``prctl(PR_SET_DUMPABLE)``. Not dumpable, a process's ``/proc`` entries (descriptors,
    memory) and ``ptrace`` are closed to processes without ``CAP_SYS_PTRACE``: to all of the
    sandbox's."""
    import ctypes  # only here: the shell tool's launcher does without it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE): {os.strerror(errno)}")


def apply_limits(config: dict[str, Any], *, soft_cpu: int | None = None) -> None:
    """Set each configured limit as hard (and soft) limit, but CPU time whose hard limit is a
    second past its soft one; no core files. A limit above the current hard limit is lowered
    to it (raising it needs a privilege we dropped)."""
    _set_limit(resource.RLIMIT_CORE, 0)
    for key, which in _LIMITS.items():
        if key != "cpu" and config.get(key) is not None:
            _set_limit(which, int(config[key]))
    if config.get("cpu") is not None:  # SIGXCPU at the limit, SIGKILL a second later
        _set_limit(resource.RLIMIT_CPU, int(config["cpu"]) + 1)
        _set_soft_cpu(int(config["cpu"]))
    if soft_cpu is not None:
        _set_soft_cpu(soft_cpu)


def _set_limit(which: int, value: int) -> None:
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _set_soft_cpu(seconds: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        seconds = min(seconds, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, hard))


# --------------------------------------------------------------------------- output capture


class _Capture:
    """Keeps the head and the tail of what arrives on the pipe ``read_fd`` (a thread reads)."""

    def __init__(self, read_fd: int, limit: int, name: str) -> None:
        os.set_blocking(read_fd, False)
        self._fd = read_fd
        self._head_max = max(1, limit * 2 // 3)
        self._tail_max = max(1, limit - self._head_max)
        self._lock = threading.Lock()
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        threading.Thread(target=self._pump, name=f"capture-{name}", daemon=True).start()

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            poller.poll()
            # Read and record under the lock, so that ``take`` seeing an empty pipe while it
            # holds the lock knows everything written so far has been recorded.
            with self._lock:
                try:
                    data = os.read(self._fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self._add(data)

    def _add(self, data: bytes) -> None:
        self._total += len(data)
        room = self._head_max - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            excess = len(self._tail) - self._tail_max
            if excess > 0:
                del self._tail[:excess]

    def _pending(self) -> int:
        try:
            raw = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])

    def take(self) -> tuple[str, int]:
        """What arrived since the last ``take`` (head and tail, decoded), and its byte count.
        Waits briefly for the pipe to be drained (a writer that never stops is cut off)."""
        deadline = time.monotonic() + _SETTLE_SECONDS
        while True:
            with self._lock:
                if self._pending() == 0 or time.monotonic() >= deadline:
                    head, tail, total = bytes(self._head), bytes(self._tail), self._total
                    self._head, self._tail, self._total = bytearray(), bytearray(), 0
                    break
            time.sleep(0.001)
        text = head.decode("utf-8", "replace")
        dropped = total - len(head) - len(tail)
        if dropped > 0:
            text += f"\n[... {dropped} bytes truncated ...]\n"
        return text + tail.decode("utf-8", "replace"), total


# --------------------------------------------------------------------------- interrupts


class WallTimeExceeded(BaseException):
    """The call ran past its wall-clock limit."""


class CPUTimeExceeded(BaseException):
    """The call used more CPU time than its limit."""


class _Cell:
    """What the signal handlers need to know about the cell being run."""

    running = False
    wall = 0.0
    cpu = 0


def _on_alarm(signum: int, frame: types.FrameType | None) -> None:
    if _Cell.running:
        raise WallTimeExceeded(f"the call ran past its {_Cell.wall:g} s wall-clock limit")


def _on_xcpu(signum: int, frame: types.FrameType | None) -> None:
    if _Cell.running:
        raise CPUTimeExceeded(f"the call used more than its {_Cell.cpu} s of CPU time")


# --------------------------------------------------------------------------- the REPL


class _Pipes:
    """The pipes between the interpreter and its supervisor, made before the fork."""

    def __init__(self) -> None:
        self.out_read, self.out_write = os.pipe()        # the interpreter's fd 1
        self.err_read, self.err_write = os.pipe()        # the interpreter's fd 2
        self.request_read, self.request_write = os.pipe()  # supervisor -> interpreter
        self.answer_read, self.answer_write = os.pipe()    # interpreter -> supervisor

    def supervisor_side(self) -> tuple[int, ...]:
        return self.out_read, self.err_read, self.request_write, self.answer_read

    def interpreter_side(self) -> tuple[int, ...]:
        return self.out_write, self.err_write, self.request_read, self.answer_write


class _Supervisor:
    """Holds the gateway's socket; see the module's docstring."""

    def __init__(self, config: dict[str, Any], channel: int, pipes: _Pipes) -> None:
        set_dumpable(False)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):  # bubblewrap's; fd 2 stays for the supervisor's own last words
            os.dup2(null, fd)
        close_descriptors(keep=(channel, *pipes.supervisor_side()))
        _set_soft_cpu(resource.getrlimit(resource.RLIMIT_CPU)[1])  # cells' limit: not ours
        self.capture = int(config.get("capture", 16_000))
        self.channel = socket.socket(fileno=channel)
        self.requests = self.channel.makefile("rb")
        threading.stack_size(256 * 1024)  # the threads count against RLIMIT_AS
        self.stdout = _Capture(pipes.out_read, self.capture, "stdout")
        self.stderr = _Capture(pipes.err_read, self.capture, "stderr")
        self.to_interpreter = os.fdopen(pipes.request_write, "wb")
        self.answers = pipes.answer_read
        self.pending = b""

    def reply(self, message: dict[str, Any]) -> None:
        self.channel.sendall(json.dumps(message).encode() + b"\n")

    def answer(self, nonce: str) -> dict[str, Any] | None:
        """The interpreter's answer carrying ``nonce``; ``None`` once it cannot come (the
        interpreter closed its end: it died, the sandbox goes with it)."""
        while True:
            *lines, self.pending = self.pending.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if isinstance(message, dict) and message.get("nonce") == nonce:
                        self.pending = b""
                        return message
            if len(self.pending) > 64 * self.capture + (1 << 20):
                self.pending = b""  # no answer is this long: garbage
            data = os.read(self.answers, 1 << 16)
            if not data:
                return None
            self.pending += data

    def serve(self) -> int:
        ready = self.answer("ready")
        if ready is None:
            return 1
        self.reply({"ready": True, "pid": ready.get("pid"), "python": ready.get("python")})
        for line in self.requests:
            request = json.loads(line)
            nonce = secrets.token_hex(16)
            try:
                forward = {key: request[key] for key in ("cpu", "wall") if key in request}
                forward.update(code=str(request["code"]), nonce=nonce)
                self.to_interpreter.write(json.dumps(forward).encode() + b"\n")
                self.to_interpreter.flush()
            except OSError:
                return 1
            answer = self.answer(nonce)
            if answer is None:
                return 1
            error, kind = answer.get("error"), answer.get("kind")
            if kind not in _KINDS or not isinstance(error, (str, type(None))):
                error, kind = "the interpreter's answer was malformed", "exception"
            out, out_bytes = self.stdout.take()
            err, err_bytes = self.stderr.take()
            self.reply({"stdout": out, "stdout_bytes": out_bytes, "stderr": err,
                        "stderr_bytes": err_bytes, "error": _clip(error, self.capture),
                        "kind": kind})
        return 0  # the gateway closed the socket: it kills the sandbox next


def _clip(error: str | None, limit: int) -> str | None:
    """``error`` cut to ``limit`` characters, keeping its end (the error itself)."""
    if error is None or len(error) <= limit:
        return error
    head = limit // 3
    return (f"{error[:head]}\n[... {len(error) - limit} characters truncated ...]\n"
            f"{error[-(limit - head):]}")


class _Repl:
    """The interpreter: runs cells in one namespace, answers the supervisor."""

    def __init__(self, config: dict[str, Any], pipes: _Pipes) -> None:
        self.pid = os.getpid()
        self.default_cpu = int(config.get("cell_cpu", 30))
        self.capture = int(config.get("capture", 16_000))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(pipes.out_write, 1)  # inheritable: child processes write here too
        os.dup2(pipes.err_write, 2)
        close_descriptors(keep=(pipes.request_read, pipes.answer_write))
        self.requests: IO[bytes] = os.fdopen(pipes.request_read, "rb")
        self.answers = pipes.answer_write
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True)
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        sys.path.insert(0, os.getcwd())
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.signal(signal.SIGXCPU, _on_xcpu)
        self.cells = 0

    def send(self, message: dict[str, Any]) -> None:
        # On a line of its own, whatever a cell left unfinished on the pipe.
        data = b"\n" + json.dumps(message).encode() + b"\n"
        while data:
            data = data[os.write(self.answers, data):]

    def serve(self) -> None:
        self.send({"nonce": "ready", "pid": self.pid, "python": sys.version.split()[0]})
        for line in self.requests:
            request = json.loads(line)
            self.cells += 1
            error, kind = self.run_cell(str(request["code"]), request)
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.flush()
            self.send({"nonce": request["nonce"], "error": _clip(error, self.capture),
                       "kind": kind})

    def run_cell(self, code: str, request: dict[str, Any]) -> tuple[str | None, str | None]:
        filename = f"<cell {self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            tree = ast.parse(code, filename, "exec")
        except (SyntaxError, ValueError) as exc:
            return "".join(traceback.format_exception_only(type(exc), exc)), "syntax"
        last: ast.Expression | None = None
        final = tree.body[-1] if tree.body else None
        if isinstance(final, ast.Expr):  # shown like the interactive prompt shows it
            tree.body.pop()
            last = ast.Expression(final.value)
        _Cell.wall = float(request.get("wall", 60.0))
        _Cell.cpu = int(request.get("cpu", self.default_cpu))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _set_soft_cpu(int(usage.ru_utime + usage.ru_stime) + 1 + _Cell.cpu)
        try:
            _Cell.running = True
            signal.setitimer(signal.ITIMER_REAL, _Cell.wall)
            try:
                exec(compile(tree, filename, "exec"), self.namespace)
                if last is not None:
                    value = eval(compile(last, filename, "eval"), self.namespace)
                    if value is not None:
                        self.namespace["_"] = value
                        print(repr(value))
            finally:
                if os.getpid() != self.pid:  # a child forked by the cell: never serve
                    _exit_child()
                _Cell.running = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as exc:
            _Cell.running = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            return _describe(exc)
        return None, None


def _exit_child() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


def _describe(exc: BaseException) -> tuple[str | None, str | None]:
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return f"SystemExit: {exc.code}", "exit"
    kind = "exception"
    if isinstance(exc, WallTimeExceeded):
        kind = "timeout"
    elif isinstance(exc, CPUTimeExceeded):
        kind = "cpu"
    elif isinstance(exc, MemoryError):
        kind = "memory"
    # The innermost frames (a runaway recursion has a million).
    report = traceback.TracebackException.from_exception(exc, limit=-_TRACEBACK_FRAMES)
    for item in _chain(report):  # leave the server's own frames out
        item.stack = traceback.StackSummary.from_list(
            [frame for frame in item.stack if frame.filename != SOURCE_NAME])
    return "".join(report.format()), kind


def _chain(report: traceback.TracebackException) -> list[traceback.TracebackException]:
    seen: list[traceback.TracebackException] = []
    todo = [report]
    while todo:
        item = todo.pop()
        if any(item is known for known in seen):
            continue
        seen.append(item)
        todo += [link for link in (item.__cause__, item.__context__) if link is not None]
    return seen


def main(argv: list[str]) -> int:
    mode, config = argv[1], json.loads(argv[2])
    if mode == "exec":
        close_descriptors()
        apply_limits(config)
        try:
            os.execvp(argv[3], argv[3:])
        except OSError as exc:
            print(f"cannot run {argv[3]!r}: {exc}", file=sys.stderr)
            return 127
    if mode == "repl":
        channel = int(config["channel"])
        close_descriptors(keep=(channel,))
        apply_limits(config, soft_cpu=int(config.get("cell_cpu", 30)))
        pipes = _Pipes()
        if os.fork() == 0:
            try:
                code = _Supervisor(config, channel, pipes).serve()
            except BaseException as exc:  # its last words reach the gateway's log
                print(f"sandbox supervisor: {exc!r}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        os.close(channel)
        _Repl(config, pipes).serve()
        return 0
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
