"""The sandbox the ``python`` and ``shell`` tools run code in (bubblewrap + resource limits).

:class:`Sandbox` (shared by a gateway's runs) starts processes in a bubblewrap sandbox: no
network, a read-only system, the run's workspace as the only writable place (at
``/workspace``), a private ``/tmp``, its own user, pid, IPC and UTS namespaces, all capabilities
dropped, a seccomp filter (:mod:`.seccomp`), and the :class:`SandboxLimits` set with
``setrlimit``. :class:`PythonInterpreter` is a
run's persistent interpreter inside such a sandbox. Without a working bubblewrap the sandbox
refuses (:class:`SandboxUnavailable`) unless ``allow_unsandboxed=True``. The guarantees and
the limits of the containment are in docs/sandbox.md.

Example::

    sandbox = Sandbox(SandboxLimits(wall_timeout=10))
    result = await sandbox.run(["bash", "-c", "echo hi > out.txt; ls"], Path("/srv/ws/run-1"))
    interpreter = PythonInterpreter(sandbox, Path("/srv/ws/run-1"))
    await interpreter.execute("x = 6 * 7")
    (await interpreter.execute("x")).stdout        # "42\\n"
    await interpreter.aclose()
"""

from kimi_modes.tools.sandbox.interpreter import CellResult, PythonInterpreter
from kimi_modes.tools.sandbox.limits import SandboxLimits
from kimi_modes.tools.sandbox.runner import (
    WORKSPACE,
    CommandResult,
    Sandbox,
    SandboxUnavailable,
)

__all__ = [
    "WORKSPACE",
    "CellResult",
    "CommandResult",
    "PythonInterpreter",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
]
