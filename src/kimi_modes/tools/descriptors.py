"""Which open file descriptors the processes we start get: none but those meant for them.

A child process inherits every *inheritable* descriptor of its parent. Python opens its own
descriptors non-inheritable (PEP 446), and ``subprocess`` closes the rest (``close_fds``), but
uvloop, which ``kimi-modes serve`` runs on, ignores ``close_fds`` (libuv's ``uv_spawn`` closes
nothing): under it a child gets every inheritable descriptor of the gateway. Inheritable ones
come from whoever started the gateway (``flock DIR kimi-modes serve`` hands the gateway a
descriptor of ``DIR``, a shell's ``exec 3<DIR`` another) and from native code that opens files
without ``O_CLOEXEC``. Such a descriptor in a sandbox reaches past its mount namespace (``openat``
on an inherited directory), so:

- :func:`seal_inherited` marks every descriptor above 2 non-inheritable; ``serve`` calls it
  at start-up, the MCP manager and the sandbox before each process they start;
- the first program a sandbox runs (``sandbox/_inside.py``) and the root launcher
  (``sandbox/_portal.py``), which cannot import this package, close every descriptor above 2
  but those meant for them before anything else runs.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["open_descriptors", "seal_inherited"]


def open_descriptors() -> list[int]:
    """This process's open descriptors, in order (from ``/proc/self/fd``, else ``/dev/fd``)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        # The listing's own descriptor is in it, and already closed again: check each.
        return sorted(fd for fd in map(int, names) if _is_open(fd))
    return []


def seal_inherited() -> list[int]:
    """Mark every open descriptor above 2 non-inheritable, so that no process started from
    here on gets it, whatever starts it. Returns those that were inheritable. The descriptors
    stay open and usable here (a lock held through one stays held)."""
    sealed = []
    for fd in open_descriptors():
        if fd > 2:
            with contextlib.suppress(OSError):
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
                    sealed.append(fd)
    return sealed


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
