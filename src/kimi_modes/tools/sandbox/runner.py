"""Starting processes in a bubblewrap sandbox: :class:`Sandbox`.

A :class:`Sandbox` is shared by every run of a gateway; it holds the limits and the choice of
interpreter, finds out once whether bubblewrap works here (:meth:`Sandbox.check`), and starts
sandboxed processes (:meth:`Sandbox.spawn`, :meth:`Sandbox.run`). What the sandbox contains and
what it does not is listed in docs/sandbox.md; the bubblewrap options are in
:meth:`Sandbox.bwrap_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kimi_modes.tools.descriptors import seal_inherited
from kimi_modes.tools.sandbox import seccomp
from kimi_modes.tools.sandbox.limits import SandboxLimits

__all__ = ["CommandResult", "Sandbox", "SandboxUnavailable", "wait_exited"]

log = logging.getLogger(__name__)

#: Where the run's workspace appears inside the sandbox (also the working directory).
WORKSPACE = "/workspace"
#: The unprivileged user the code runs as inside the sandbox (its own user namespace).
SANDBOX_UID = 1000
SANDBOX_GID = 1000
#: The host user (and group) a root gateway runs the sandbox as by default.
NOBODY = 65534

_INSIDE_SOURCE = (Path(__file__).with_name("_inside.py")).read_text(encoding="utf-8")
_PORTAL = str(Path(__file__).with_name("_portal.py"))
#: Runs the source (next argument) under its own file name, so tracebacks can leave it out.
_INSIDE_STUB = "import sys; exec(compile(sys.argv.pop(1), '<sandbox>', 'exec'))"
_PROBE_TIMEOUT = 20.0

#: Host /etc entries the sandbox may see: what the dynamic loader, Python and common tools
#: read, none of it secret. passwd, group, hosts, hostname and nsswitch.conf are made up.
_ETC_ENTRIES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone",
    "mime.types", "protocols", "services", "os-release", "debian_version", "magic",
    "magic.mime", "python3",
)
_ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
              f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/tmp:/bin/bash\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "hostname": "sandbox\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
}
#: Top-level system directories bound (or recreated as the same symbolic links) read-only.
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


class SandboxUnavailable(RuntimeError):
    """Code cannot be run: bubblewrap is missing or cannot sandbox here, and unsandboxed
    execution was not allowed. The message says why and what the operator can do."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A finished sandboxed command. ``stdout``/``stderr`` are head and tail of the output
    (``*_bytes`` is how much there was); ``exit_code`` is the command's status, or 128 + the
    signal that killed it; ``timed_out``: it was killed at the wall-clock limit."""

    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    timed_out: bool
    duration: float


Mode = Literal["bwrap", "unsandboxed"]


class Sandbox:
    """Runs commands under bubblewrap with :class:`SandboxLimits`.

    ``bwrap``: the bubblewrap binary (a name looked up on ``PATH``, or a path).
    ``python``: the interpreter used inside; by default ``/usr/bin/python3`` when it exists,
    else the interpreter running the gateway (its base installation, not a virtualenv). When it
    lives outside ``/usr``, its installation prefix (the directory above its ``bin/``) is bound
    read-only at the same path, and nothing else of that tree.
    ``host_uid``/``host_gid``: when the gateway runs as root, the unprivileged host user and
    group the sandbox runs as (default ``nobody``/``nogroup``); the workspace is handed over to
    them (:meth:`prepare`) before each call. Ignored otherwise: the sandbox then runs as the
    gateway's own user. Either way it is uid 1000 ``sandbox`` inside its user namespace.
    ``allow_unsandboxed``: when bubblewrap is missing or cannot create namespaces, run the code
    directly on the host (in the workspace, with the resource limits but *no* isolation)
    instead of refusing. Only for a machine the operator is willing to hand to the model.
    ``seccomp``: load the seccomp filter of :mod:`~kimi_modes.tools.sandbox.seccomp` into every
    sandbox (when libseccomp is missing the sandbox runs without it, and the log says so).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        allow_unsandboxed: bool = False,
        bwrap: str = "bwrap",
        python: str | None = None,
        host_uid: int = NOBODY,
        host_gid: int = NOBODY,
        seccomp: bool = True,
    ) -> None:
        self.limits = limits or SandboxLimits()
        #: When the gateway is root, the host user the sandbox runs as (see _portal.py).
        self.run_as: tuple[int, int] | None = (
            (host_uid, host_gid) if os.geteuid() == 0 else None)
        self.allow_unsandboxed = allow_unsandboxed
        self.bwrap = bwrap
        self.python = python or _default_python()
        if _python_prefix(self.python) is not None:  # bound as itself: no links from outside
            self.python = os.path.realpath(self.python)
        self._checked: tuple[Mode | None, str | None] | None = None
        self._features: frozenset[str] = frozenset()
        self._want_filter = seccomp
        #: The compiled seccomp filter every sandbox loads (known once checked); ``None``: none.
        self.seccomp_filter: bytes | None = None
        self._etc_dir: Path | None = None
        self._reapers: set[asyncio.Task[object]] = set()

    # ------------------------------------------------------------------ availability

    @property
    def mode(self) -> Mode | None:
        """``"bwrap"``, ``"unsandboxed"``, or ``None`` (refusing, or not checked yet)."""
        return self._checked[0] if self._checked else None

    async def check(self) -> str | None:
        """``None`` when code can be run; else the reason it is refused (for the model and the
        operator). Probes bubblewrap once (a sandboxed ``print``) and remembers the outcome."""
        if self._checked is None:
            self._checked = await self._decide()
        return self._checked[1]

    async def _decide(self) -> tuple[Mode | None, str | None]:
        problem = await self._probe()
        if problem is None:
            return "bwrap", None
        if self.allow_unsandboxed:
            log.warning("running python/shell tools WITHOUT a sandbox: %s", problem)
            return "unsandboxed", None
        log.warning("python/shell tools disabled: %s", problem)
        return None, _refusal(problem)

    async def _probe(self) -> str | None:
        bwrap = shutil.which(self.bwrap)
        if bwrap is None:
            return (f"bubblewrap ({self.bwrap!r}) is not installed on the gateway host "
                    "(Debian/Ubuntu: apt-get install bubblewrap)")
        self.bwrap = bwrap
        try:
            help_proc = await _start_process(
                [bwrap, "--help"], stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            help_text, _ = await asyncio.wait_for(help_proc.communicate(), _PROBE_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            return f"bubblewrap ({bwrap}) cannot be run: {exc}"
        self._features = frozenset(
            opt for opt in ("--disable-userns", "--size", "--cap-drop", "--unshare-cgroup-try")
            if opt.encode() in help_text)
        if self._want_filter:
            try:
                self.seccomp_filter = seccomp.program()
            except seccomp.SeccompUnavailable as exc:
                log.warning("sandboxes run without a seccomp filter: %s", exc)
        with tempfile.TemporaryDirectory(prefix="kimi-sandbox-probe-") as ws:
            self._hand_over(Path(ws))
            filter_fd = self._filter_fd()
            command = self._sandbox_command(Path(ws), self._python_command(
                "exec", {}, [self.python, "-I", "-S", "-c", "print('sandbox-ok')"]),
                filter_fd=filter_fd)
            try:
                proc = await _start_process(
                    command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, cwd="/", start_new_session=True,
                    pass_fds=() if filter_fd is None else (filter_fd,))
            except OSError as exc:
                return f"bubblewrap could not be started: {exc}"
            finally:
                if filter_fd is not None:
                    os.close(filter_fd)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), _PROBE_TIMEOUT)
            except TimeoutError:
                self.kill(proc)
                self.reap_later(proc)
                return f"bubblewrap did not start a sandbox within {_PROBE_TIMEOUT:g} s"
        if proc.returncode != 0 or out.strip() != b"sandbox-ok":
            detail = err.decode("utf-8", "replace").strip()[-500:] or f"exit {proc.returncode}"
            return f"bubblewrap cannot create the sandbox here: {detail}"
        return None

    async def require(self) -> Mode:
        """The mode code runs in; raises :class:`SandboxUnavailable` when it is refused."""
        problem = await self.check()
        if problem is not None or self._checked is None or self._checked[0] is None:
            raise SandboxUnavailable(problem or "the sandbox is unavailable")
        return self._checked[0]

    # ------------------------------------------------------------------ command lines

    def bwrap_options(self, workspace: Path, filter_fd: int | None = None) -> list[str]:
        """``bwrap`` and its options for a sandbox whose only writable place is ``workspace``
        (bound at ``/workspace``, the working directory); ``filter_fd``: a descriptor to read
        the seccomp filter from (:meth:`_filter_fd`). The command follows ``--``."""
        opts = [self.bwrap,
                "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
                "--unshare-uts", "--hostname", "sandbox",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
                "--die-with-parent", "--new-session"]
        if "--unshare-cgroup-try" in self._features:
            opts.append("--unshare-cgroup-try")
        if "--disable-userns" in self._features:
            opts.append("--disable-userns")
        if "--cap-drop" in self._features:
            opts += ["--cap-drop", "ALL"]
        for name in _SYSTEM_DIRS:
            host = Path("/") / name
            if host.is_symlink():
                opts += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                opts += ["--ro-bind", str(host), str(host)]
        for name in _ETC_ENTRIES:
            opts += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for entry in sorted(Path("/etc").glob("python3.*")):
            opts += ["--ro-bind", str(entry), str(entry)]
        etc = self._made_up_etc()
        for name in _ETC_FILES:
            opts += ["--ro-bind", str(etc / name), f"/etc/{name}"]
        prefix = _python_prefix(self.python)
        if prefix is not None:
            opts += ["--ro-bind", str(etc / "mnt" / "py") if self.run_as else prefix, prefix]
        opts += ["--proc", "/proc", "--dev", "/dev"]
        for tmp in ("/tmp", "/dev/shm"):
            if "--size" in self._features:
                opts += ["--size", str(self.limits.tmp_bytes)]
            opts += ["--tmpfs", tmp]
        source = str(etc / "mnt" / "ws") if self.run_as else str(workspace)
        opts += ["--bind", source, WORKSPACE, "--chdir", WORKSPACE,
                 "--remount-ro", "/dev", "--remount-ro", "/", "--clearenv"]
        for key, value in _environment(home="/tmp").items():
            opts += ["--setenv", key, value]
        if filter_fd is not None:
            opts += ["--seccomp", str(filter_fd)]
        return opts

    def _filter_fd(self) -> int | None:
        """A new descriptor holding the seccomp filter (the caller passes it to bubblewrap,
        which reads and closes its copy, and closes its own), or ``None`` without a filter."""
        return None if self.seccomp_filter is None else seccomp.program_fd(self.seccomp_filter)

    def _sandbox_command(self, workspace: Path, inner: Sequence[str],
                         keep: Sequence[int] = (), *, filter_fd: int | None = None
                         ) -> list[str]:
        """The host command line that runs ``inner`` in a sandbox on ``workspace``; the
        descriptors ``keep`` reach it (bubblewrap passes them on), no others; bubblewrap reads
        the seccomp filter from ``filter_fd``."""
        command = [*self.bwrap_options(workspace, filter_fd), "--", *inner]
        if filter_fd is not None:
            keep = [*keep, filter_fd]
        if self.run_as is None:
            return command
        etc = self._made_up_etc()
        binds = [[str(workspace), str(etc / "mnt" / "ws")]]
        prefix = _python_prefix(self.python)
        if prefix is not None:
            binds.append([prefix, str(etc / "mnt" / "py")])
        config = {"uid": self.run_as[0], "gid": self.run_as[1], "binds": binds,
                  "keep": list(keep)}
        return [sys.executable, "-I", "-S", _PORTAL, json.dumps(config), *command]

    def _hand_over(self, workspace: Path, *, chown: bool = True) -> None:
        """Make ``workspace`` (created if missing) and everything in it belong to the
        sandbox's host user, so the sandbox can write where the gateway (root) wrote.

        Safe against the sandbox racing it: directories are entered by descriptor with their
        identity checked (``os.fwalk``), nothing is followed, links and files with several
        hard links are left alone."""
        os.makedirs(workspace, exist_ok=True)
        if self.run_as is None or not chown:
            return
        uid, gid = self.run_as
        top = os.stat(workspace, follow_symlinks=False)
        if (top.st_uid, top.st_gid) != (uid, gid):
            os.chown(workspace, uid, gid, follow_symlinks=False)
        for _, dirs, files, dir_fd in os.fwalk(workspace, follow_symlinks=False):
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if (st.st_uid, st.st_gid) == (uid, gid) or stat.S_ISLNK(st.st_mode):
                        continue
                    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                        continue
                    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)

    async def prepare(self, workspace: Path) -> None:
        """Ready ``workspace`` for sandboxed code: create it and, when the gateway runs as
        root, hand what is in it over to the sandbox's host user. Called before each call."""
        await asyncio.to_thread(self._hand_over, workspace, chown=self.mode == "bwrap")

    def _made_up_etc(self) -> Path:
        if self._etc_dir is None or not self._etc_dir.is_dir():
            # Under /tmp when the sandbox's user is not ours: it must reach the mountpoints.
            base = "/tmp" if self.run_as and os.path.isdir("/tmp") else None
            path = Path(tempfile.mkdtemp(prefix="kimi-sandbox-etc-", dir=base))
            for name, text in _ETC_FILES.items():
                (path / name).write_text(text, encoding="utf-8")
                (path / name).chmod(0o644)
            for mountpoint in ("mnt", "mnt/ws", "mnt/py"):  # for _portal.py
                (path / mountpoint).mkdir(mode=0o755)
            path.chmod(0o755)
            weakref.finalize(self, shutil.rmtree, path, True)
            self._etc_dir = path
        return self._etc_dir

    def _python_command(self, mode: str, config: Mapping[str, object],
                        argv: Sequence[str] = ()) -> list[str]:
        """The in-sandbox program (see ``_inside.py``) in ``mode`` with ``config``."""
        flags = ["-I", "-S"] if mode == "exec" else ["-I"]
        return [self.python, *flags, "-c", _INSIDE_STUB, _INSIDE_SOURCE, mode,
                json.dumps(dict(config)), *argv]

    def limit_config(self, limits: SandboxLimits, *, per_call_cpu: bool) -> dict[str, object]:
        """The resource limits for the in-sandbox launcher. Unsandboxed, the process limit is
        left out: it would count every process of the gateway's user."""
        config: dict[str, object] = dict(limits.rlimits(per_call_cpu=per_call_cpu))
        if self.mode != "bwrap":
            config.pop("nproc")
        return config

    # ------------------------------------------------------------------ processes

    async def spawn(
        self,
        mode: str,
        config: Mapping[str, object],
        argv: Sequence[str],
        workspace: Path,
        *,
        stdout: int = asyncio.subprocess.PIPE,
        pass_fds: Sequence[int] = (),
    ) -> asyncio.subprocess.Process:
        """Start the in-sandbox program (``mode`` ``exec`` or ``repl``) in a new session, stdin
        ``/dev/null``, ``stdout`` as given, stderr piped. It gets the descriptors ``pass_fds``
        and no other (whatever the event loop). Raises :class:`SandboxUnavailable` when
        refusing."""
        sandbox_mode = await self.require()
        await self.prepare(workspace)
        command = self._python_command(mode, config, argv)
        filter_fd = None
        if sandbox_mode == "bwrap":
            filter_fd = self._filter_fd()
            command = self._sandbox_command(workspace, command, pass_fds, filter_fd=filter_fd)
            if filter_fd is not None:
                pass_fds = [*pass_fds, filter_fd]
            cwd = "/"  # not the gateway's directory: the sandbox's host user may not reach it
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            cwd = str(workspace)
            env = _environment(home=str(workspace))
        try:
            return await _start_process(
                command, stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
                stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env, start_new_session=True,
                pass_fds=pass_fds)
        finally:
            if filter_fd is not None:
                os.close(filter_fd)

    def kill(self, process: asyncio.subprocess.Process) -> None:
        """Kill ``process`` and everything it started, now (``SIGKILL``, no waiting).

        Under bubblewrap that is the ``bwrap`` process: its death kills the sandbox's pid 1
        (``--die-with-parent``) and with it every process of the sandbox's pid namespace.
        Unsandboxed it is the process group, which code that calls ``setsid`` leaves."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        elif self.mode == "unsandboxed":
            # The leader is gone; what it left in its group goes too. (Under bubblewrap the
            # pid namespace is already torn down when bwrap has exited.)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def reap_later(self, process: asyncio.subprocess.Process) -> None:
        """Close ``process``'s pipes once it has exited (now, or in the background after a
        kill), so no transport outlives it; a background process it left cannot hold them."""
        if process.returncode is not None:
            _close_pipes(process)
            return
        task: asyncio.Task[object] = asyncio.ensure_future(_reap(process))
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def run(self, argv: Sequence[str], workspace: Path,
                  limits: SandboxLimits | None = None) -> CommandResult:
        """Run ``argv`` to completion in a fresh sandbox with ``workspace``; at the wall-clock
        limit it is killed. Whatever it leaves running is killed when it returns. Cancelling
        the caller kills it at once. Raises :class:`SandboxUnavailable` when refusing."""
        limits = limits or self.limits
        started = time.monotonic()
        await self.require()  # before limit_config: it depends on the mode
        process = await self.spawn("exec", self.limit_config(limits, per_call_cpu=True), argv,
                                   workspace)
        assert process.stdout is not None and process.stderr is not None
        out, err = _HeadTail(limits.output_limit), _HeadTail(limits.output_limit)
        pumps = [asyncio.ensure_future(out.pump(process.stdout)),
                 asyncio.ensure_future(err.pump(process.stderr))]
        timed_out = False
        try:
            if not await wait_exited(process, limits.wall_timeout):
                timed_out = True
                self.kill(process)
                await wait_exited(process, 5.0)
            self.kill(process)  # unsandboxed: what it left in its process group
            await asyncio.wait(pumps, timeout=1.0)
        except BaseException:
            self.kill(process)
            raise
        finally:
            for pump in pumps:
                pump.cancel()
            self.reap_later(process)
        code = process.returncode if process.returncode is not None else 128 + signal.SIGKILL
        if code < 0:  # unsandboxed: killed by a signal
            code = 128 - code
        return CommandResult(code, out.text(), err.text(), out.total, err.total, timed_out,
                             time.monotonic() - started)


async def _start_process(command: Sequence[str], *, pass_fds: Sequence[int] = (),
                         **options: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` giving the child only 0-2 and ``pass_fds``.

    ``close_fds`` does that on asyncio's loop; uvloop ignores it, so every descriptor above 2
    is made non-inheritable first (none of ours is inheritable; one that is came from our
    parent or from native code). In the sandbox, ``_inside.py`` (and ``_portal.py`` before
    bubblewrap, as root) close what still got through."""
    seal_inherited()
    return await asyncio.create_subprocess_exec(
        *command, close_fds=True, pass_fds=tuple(pass_fds), **options)


async def wait_exited(process: asyncio.subprocess.Process, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``process`` itself to exit; whether it did.

    Unlike ``process.wait()``, which (Python 3.11) also waits for every pipe to close, this
    does not hang on a background process that inherited stdout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = 0.001
    while process.returncode is None:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


async def _reap(process: asyncio.subprocess.Process) -> None:
    await wait_exited(process, 30.0)
    _close_pipes(process)


def _close_pipes(process: asyncio.subprocess.Process) -> None:
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()


class _HeadTail:
    """Keeps the first two thirds and the last third of ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.head_max = limit * 2 // 3
        self.tail_max = limit - self.head_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while data := await stream.read(65536):
            self.total += len(data)
            room = self.head_max - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data
                if len(self.tail) > self.tail_max:
                    del self.tail[: len(self.tail) - self.tail_max]

    def text(self) -> str:
        text = self.head.decode("utf-8", "replace")
        dropped = self.total - len(self.head) - len(self.tail)
        if dropped > 0:
            text += f"\n[... {dropped} bytes truncated ...]\n"
        return text + self.tail.decode("utf-8", "replace")


def _environment(*, home: str) -> dict[str, str]:
    """The whole environment of sandboxed code: nothing of the gateway's leaks in."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "SHELL": "/bin/bash",
        "TERM": "dumb",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _refusal(problem: str) -> str:
    return (f"Code execution is disabled on this server: {problem}. The python and shell "
            "tools refuse to run code without a sandbox; the operator can install bubblewrap "
            "or explicitly allow unsandboxed execution ([agent] allow_unsandboxed = true).")


def _default_python() -> str:
    if os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def _python_prefix(python: str) -> str | None:
    """The directory to bind for an interpreter outside ``/usr``: ``<prefix>/bin/python``
    gives ``<prefix>``. ``None`` when ``/usr`` (always bound) holds it."""
    real = Path(os.path.realpath(python))
    if real.is_relative_to("/usr"):
        return None
    prefix = real.parent.parent if real.parent.name == "bin" else real.parent
    return str(prefix)
