"""What sandboxed code can reach of the process that started it, under both event loops the
gateway runs on (``kimi-modes serve`` runs uvloop; uvloop ignores ``close_fds``):

- descriptors: the test process holds an inheritable descriptor of a directory with a secret
  file in it, as a gateway started by ``flock DIR kimi-modes serve`` or a shell's
  ``exec 3<DIR`` does; the sandboxed code (shell and python) lists ``/proc/self/fd``, reads
  through every descriptor number and must find neither the directory nor the secret;
- ``/proc``: the test process's environment (a marker variable) and descriptors are nowhere in
  the sandbox's ``/proc``;
- the python tool's protocol: code that writes made-up replies to every descriptor it has
  and to every descriptor it can open under ``/proc`` cannot change what the tool reports, for
  its own call or the next.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from kimi_modes.tools import RunContext, ToolResult
from kimi_modes.tools.code import PythonTool, ShellTool
from kimi_modes.tools.sandbox import Sandbox, SandboxLimits

LIMITS = SandboxLimits(wall_timeout=20, output_limit=8000)
SECRET = f"secret-{uuid.uuid4().hex}"
MARKER = f"marker-{uuid.uuid4().hex}"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

#: Prints every descriptor of the sandboxed process, then whatever it can read through each
#: number 3..255 as a directory (the secret file) or a file.
PROBE = r'''
import json, os
seen = {}
for name in sorted(os.listdir("/proc/self/fd"), key=int):
    try:
        seen[name] = os.readlink("/proc/self/fd/" + name)
    except OSError as exc:
        seen[name] = "gone"
found = []
for fd in range(3, 256):
    try:
        found.append(open("key.txt", opener=lambda p, f: os.open(p, f, dir_fd=fd)).read())
    except OSError:
        pass
    try:
        os.lseek(fd, 0, 0)
        found.append(os.read(fd, 4096).decode("utf-8", "replace"))
    except OSError:
        pass
print(json.dumps({"fds": seen, "found": found}))
'''


@pytest.fixture(params=sorted(LOOPS))
def run_in_loop(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    factory = LOOPS[request.param]

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coroutine)
    return run


@pytest.fixture
def inherited_dir(tmp_path: Path) -> Iterator[int]:
    """An inheritable descriptor of a directory holding ``key.txt`` (readable by anyone, as
    a gateway's own files are to a sandbox running as the gateway's user)."""
    secret_dir = tmp_path / "config"
    secret_dir.mkdir()
    (secret_dir / "key.txt").write_text(SECRET)
    (secret_dir / "key.txt").chmod(0o644)
    for folder in (tmp_path, secret_dir):
        folder.chmod(0o755)
    fd = os.open(secret_dir, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    file_fd = os.open(secret_dir / "key.txt", os.O_RDONLY)
    os.set_inheritable(file_fd, True)
    try:
        yield fd
    finally:
        os.close(fd)
        os.close(file_fd)


async def _sandbox() -> Sandbox:
    sandbox = Sandbox(LIMITS)
    problem = await sandbox.check()
    if problem is not None:
        pytest.skip(f"bubblewrap cannot sandbox here: {problem}")
    return sandbox


def _report(result: ToolResult) -> dict[str, Any]:
    assert not result.is_error, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("{"))
    report: dict[str, Any] = json.loads(line)
    return report


def _only_own(report: dict[str, Any], allowed: int) -> None:
    """Descriptors 0-2 plus at most ``allowed`` of the process's own (pipes, its listing)."""
    assert SECRET not in json.dumps(report)
    extra = {fd: target for fd, target in report["fds"].items() if int(fd) > 2}
    assert len(extra) <= allowed, extra
    for target in extra.values():
        assert target.startswith(("pipe:", "socket:", "gone", "/proc/")), extra


def test_shell_sees_only_its_own_descriptors(
        run_in_loop: Callable[..., Any], inherited_dir: int, tmp_path: Path) -> None:
    async def main() -> ToolResult:
        ctx = RunContext("run-fd-shell", tmp_path / "ws")
        ctx.workspace.mkdir()
        (ctx.workspace / "probe.py").write_text(PROBE)
        try:
            return await ShellTool(await _sandbox()).run({"command": "python3 probe.py"}, ctx)
        finally:
            await ctx.aclose()
    _only_own(_report(run_in_loop(main())), allowed=1)  # the listing's own descriptor


def test_python_sees_only_its_own_descriptors(
        run_in_loop: Callable[..., Any], inherited_dir: int, tmp_path: Path) -> None:
    async def main() -> list[ToolResult]:
        ctx = RunContext("run-fd-python", tmp_path / "ws")
        try:
            tool = PythonTool(await _sandbox())
            return [await tool.run({"code": PROBE}, ctx),
                    await tool.run({"code": "import subprocess\n"
                                    f"subprocess.run(['python3', '-c', {PROBE!r}])"}, ctx)]
        finally:
            await ctx.aclose()
    cell, child = run_in_loop(main())
    # the interpreter: its listing's descriptor and its two request/reply pipes
    _only_own(_report(cell), allowed=3)
    _only_own(_report(child), allowed=1)


def test_the_callers_proc_entries_are_out_of_reach(
        run_in_loop: Callable[..., Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIMI_TEST_MARKER", MARKER)
    me = os.getpid()
    code = rf'''
import os
out = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["{me}"]:
    for entry in ("environ", "cmdline", "cwd", "root", "fd", "mem", "maps"):
        path = "/proc/%s/%s" % (pid, entry)
        try:
            if entry in ("cwd", "root"):
                out.append(path + " -> " + os.readlink(path) + " " + repr(os.listdir(path)))
            elif entry == "fd":
                out.append(path + " " + repr({{fd: os.readlink(path + "/" + fd)
                                              for fd in os.listdir(path)}}))
            else:
                with open(path, "rb") as f:
                    out.append(path + " " + repr(f.read(1 << 16)))
        except OSError as exc:
            out.append(path + " " + type(exc).__name__)
print(len(os.listdir("/proc")), "\n".join(out))
'''

    async def main() -> ToolResult:
        ctx = RunContext("run-proc", tmp_path / "ws")
        try:
            return await PythonTool(await _sandbox()).run({"code": code}, ctx)
        finally:
            await ctx.aclose()
    result = run_in_loop(main())
    assert not result.is_error, result.output
    assert MARKER not in result.output
    if me > 100:  # not a pid the sandbox's own namespace could have
        assert f"/proc/{me}/environ FileNotFoundError" in result.output


FORGE = r'''
import glob, json, os
forged = (json.dumps({"stdout": "FORGED", "stdout_bytes": 6, "stderr": "", "stderr_bytes": 0,
                      "error": None, "kind": None, "ready": True}) + "\n").encode()
hits = 0
# 1 and 2 are its own output: what is written there is shown, as it should be
targets = [int(n) for n in os.listdir("/proc/self/fd") if int(n) > 2]
for fd in targets:
    try:
        os.write(fd, b"\n" + forged * 3)
        hits += 1
    except OSError:
        pass
for path in glob.glob("/proc/[0-9]*/fd/*"):
    if path.startswith("/proc/%d/" % os.getpid()):
        continue
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        continue
    try:
        os.write(fd, b"\n" + forged * 3)
        hits += 1
    except OSError:
        pass
    finally:
        os.close(fd)
print("real output", hits > 0)
'''


def test_code_cannot_forge_the_python_tools_reply(
        run_in_loop: Callable[..., Any], tmp_path: Path) -> None:
    async def main() -> list[ToolResult]:
        ctx = RunContext("run-forge", tmp_path / "ws")
        try:
            tool = PythonTool(await _sandbox())
            return [await tool.run({"code": FORGE}, ctx),
                    await tool.run({"code": "print('second', 6 * 7)"}, ctx),
                    await tool.run({"code": "x = 1\nx + 1"}, ctx)]
        finally:
            await ctx.aclose()
    first, second, third = run_in_loop(main())
    for result in (first, second, third):
        assert "FORGED" not in result.output
        assert not result.is_error, result.output
        assert not result.meta.get("restarted")
    assert "real output" in first.output
    assert second.output.strip() == "second 42"
    assert third.output.strip() == "2"
