"""The sandbox's seccomp filter, from inside real sandboxes: each denied system call is made
with ``ctypes`` (``syscall(2)``) by sandboxed python and must fail with EPERM; the same calls
in a sandbox without the filter show that the filter is what refuses them (most would
succeed); and what python and the shell need still works under it.

Skipped (with the reason) where bubblewrap cannot sandbox or libseccomp is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.tools import RunContext
from kimi_modes.tools.code import PythonTool, ShellTool
from kimi_modes.tools.sandbox import Sandbox, SandboxLimits, seccomp

LIMITS = SandboxLimits(wall_timeout=20, output_limit=8000)

# name: (arguments, what the call gives without the filter where that is not EPERM: "ok", or
# an error, as on Linux 6.x).
# Arguments are harmless even where the call goes through: nothing valid to load, mount or
# reboot with; ptrace(PTRACE_TRACEME) and personality() affect only the calling process.
CALLS: dict[str, tuple[tuple[int | str, ...], str | None]] = {
    "ptrace": ((0, 0, 0, 0), "ok"),  # PTRACE_TRACEME
    "process_vm_readv": (("pid", 0, 0, 0, 0, 0), "ok"),
    "process_vm_writev": (("pid", 0, 0, 0, 0, 0), "ok"),
    "keyctl": ((0, -3, 0), "ok"),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": ((0, 0, 0, 0, 0), "EFAULT"),
    "request_key": ((0, 0, 0, 0), "EFAULT"),
    "mount": ((0, 0, 0, 0, 0), None),
    "umount2": ((0, 0), None),
    "pivot_root": ((0, 0), None),
    "swapon": ((0, 0), None),
    "swapoff": ((0,), None),
    "reboot": ((0, 0, 0, 0), None),
    "kexec_load": ((0, 0, 0, 0), None),
    "init_module": ((0, 0, 0), None),
    "finit_module": ((-1, 0, 0), None),
    "delete_module": ((0, 0), None),
    "bpf": ((0, 0, 0), None),
    "perf_event_open": ((0, 0, -1, -1, 0), "EFAULT"),
    "userfaultfd": ((0,), None),
    "io_uring_setup": ((1, 0), "EFAULT"),
    "io_uring_enter": ((-1, 0, 0, 0, 0, 0), "EBADF"),
    "io_uring_register": ((-1, 0, 0, 0), "EBADF"),
    "setns": ((-1, 0), "EBADF"),
    "unshare/user": ((0x10000000,), "ENOSPC"),  # CLONE_NEWUSER
    "unshare/net": ((0x40000000,), None),  # CLONE_NEWNET
    "clone/user": ((0x10000000 | 17, 0, 0, 0, 0), "ENOSPC"),  # CLONE_NEWUSER | SIGCHLD
    "personality": ((0x0040000,), "ok"),  # ADDR_NO_RANDOMIZE
    "ioctl/TIOCSTI": ((0, 0x5412, "buf"), "ENOTTY"),
    "ioctl/TIOCSTI-high-bits": ((0, 0x1_0000_5412, "buf"), "ENOTTY"),
    "open_by_handle_at": ((-1, 0, 0), "EBADF"),
}

PROBE = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(b"x")
out = {}
for name, (nr, args) in json.loads(CALLS).items():
    values = [os.getpid() if a == "pid" else ctypes.addressof(buf) if a == "buf" else a
              for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(nr, *[ctypes.c_long(v) for v in values])
    if r == 0 and name.startswith("clone"):
        os._exit(0)  # a child made without the filter
    out[name] = errno.errorcode.get(ctypes.get_errno(), "?") if r == -1 else "ok"
print(json.dumps(out))
"""


def _calls() -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, (args, _) in CALLS.items():
        nr = seccomp.syscall_number(name.split("/")[0])
        if nr is not None:
            table[name] = [nr, list(args)]
    return table


def _probe_code() -> str:
    return f"CALLS = {json.dumps(json.dumps(_calls()))}\n{PROBE}"


async def _sandbox(*, filtered: bool) -> Sandbox:
    try:
        seccomp.program()
    except seccomp.SeccompUnavailable as exc:
        pytest.skip(str(exc))
    box = Sandbox(LIMITS, seccomp=filtered)
    problem = await box.check()
    if problem is not None:
        pytest.skip(f"bubblewrap cannot sandbox here: {problem}")
    assert (box.seccomp_filter is not None) == filtered
    return box


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RunContext]:
    context = RunContext("run-seccomp", tmp_path / "ws")
    (tmp_path / "ws").mkdir()
    yield context
    await context.aclose()


async def _results(box: Sandbox, ctx: RunContext, tool: str) -> dict[str, str]:
    code = _probe_code()
    if tool == "python":
        result = await PythonTool(box).run({"code": code}, ctx)
    else:
        (ctx.workspace / "probe.py").write_text(code)
        result = await ShellTool(box).run({"command": "python3 probe.py"}, ctx)
    assert not result.is_error, result.output
    line = [ln for ln in result.output.splitlines() if ln.startswith("{")][-1]
    found: dict[str, str] = json.loads(line)
    assert set(found) == set(_calls())
    return found


@pytest.mark.parametrize("tool", ["python", "shell"])
async def test_denied_calls_fail_with_eperm(ctx: RunContext, tool: str) -> None:
    # Tries: every call of the deny list (tracing, keyrings, mounts, modules, kexec, bpf,
    # perf, userfaultfd, io_uring, namespaces, personality, TIOCSTI). Must not happen: any
    # of them getting past the filter (any answer but EPERM).
    box = await _sandbox(filtered=True)
    found = await _results(box, ctx, tool)
    assert found == dict.fromkeys(found, "EPERM")


async def test_without_the_filter_the_same_calls_get_through(ctx: RunContext) -> None:
    # The control: the EPERMs above come from the filter, not from missing capabilities.
    box = await _sandbox(filtered=False)
    found = await _results(box, ctx, "python")
    # Calls that succeed must succeed; the errors others fail with vary with the kernel's
    # order of checks, but none is EPERM.
    for name, (_, without) in CALLS.items():
        if without == "ok":
            assert found[name] == "ok", (name, found[name])
        elif without is not None and name in found:
            assert found[name] != "EPERM", name


async def test_python_and_the_shell_work_under_the_filter(ctx: RunContext) -> None:
    # Must still work: threads (clone3 falls back to clone), processes, pipes, sockets on
    # loopback, mmap, signals, the personality query's neighbour PER_LINUX, a shell pipeline.
    box = await _sandbox(filtered=True)
    code = """
import ctypes, mmap, multiprocessing, os, signal, socket, sqlite3, subprocess, threading
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(4) as pool:
    assert sum(pool.map(lambda x: x * x, range(100))) == 328350
with multiprocessing.Pool(2) as procs:
    assert procs.map(abs, [-1, -2]) == [1, 2]
assert subprocess.run(["sh", "-c", "echo hi | tr a-z A-Z"], capture_output=True,
                      text=True).stdout == "HI\\n"
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
m = mmap.mmap(-1, 4096); m[:2] = b"ok"
signal.signal(signal.SIGUSR1, lambda *_: None); os.kill(os.getpid(), signal.SIGUSR1)
assert ctypes.CDLL(None).personality(0) >= 0
db = sqlite3.connect(":memory:"); assert db.execute("select 1").fetchone() == (1,)
print("all fine")
"""
    result = await PythonTool(box).run({"code": code}, ctx)
    assert not result.is_error and "all fine" in result.output, result.output
    result = await ShellTool(box).run(
        {"command": "seq 1 1000 | sort -n | tail -1; (sleep 0.1 &); wait; "
                    "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"}, ctx)
    assert not result.is_error, result.output
    assert result.output.startswith("1000\n") and "Seccomp:\t2" in result.output


def test_the_filter_reaches_bubblewrap_through_a_descriptor(tmp_path: Path) -> None:
    try:
        code = seccomp.program()
    except seccomp.SeccompUnavailable as exc:
        pytest.skip(str(exc))
    assert code == seccomp.program() and len(code) % 8 == 0  # BPF: 8 bytes an instruction
    fd = seccomp.program_fd(code)
    try:
        assert os.read(fd, len(code) + 1) == code and not os.get_inheritable(fd)
        options = Sandbox().bwrap_options(tmp_path, fd)
        assert options[options.index("--seccomp") + 1] == str(fd)
    finally:
        os.close(fd)
    assert "--seccomp" not in Sandbox().bwrap_options(tmp_path)
