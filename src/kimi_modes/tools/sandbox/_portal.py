"""Runs on the host, as root, between the gateway and bubblewrap. Standard library only.

``python3 -I -S _portal.py CONFIG BWRAP ARGS...`` with ``CONFIG`` a JSON object
``{"uid": int, "gid": int, "binds": [[source, mountpoint], ...], "keep": [fd, ...]}``:

0. close every descriptor above 2 but those in ``keep`` (what the gateway's process leaked
   to it: uvloop does not close them);
1. enter a new, private mount namespace (nothing here is seen by the host);
2. bind each ``source`` (the run's workspace, say, under ``/root`` where the sandbox's user could
   not reach it) onto its ``mountpoint`` (a directory that user can reach);
3. drop every group and become ``uid``/``gid`` (which drops all capabilities);
4. exec bubblewrap, which then runs unprivileged and sees the sources at their mountpoints.

Why: a sandbox whose processes belong to host root escapes ``RLIMIT_NPROC`` (the kernel does not
count root's processes), so when the gateway runs as root the sandbox runs as an unprivileged
host user, and bubblewrap, running as that user, must be able to reach what it binds.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys

_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    keep = {int(fd) for fd in config.get("keep", ())}
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    try:
        _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None),
               "making / private")
        for source, mountpoint in config["binds"]:
            _check(libc.mount(os.fsencode(source), os.fsencode(mountpoint), None, _MS_BIND,
                              None), f"binding {source}")
        os.setgroups([])
        os.setresgid(config["gid"], config["gid"], config["gid"])
        os.setresuid(config["uid"], config["uid"], config["uid"])
    except OSError as exc:
        print(f"sandbox launcher: {exc}", file=sys.stderr)
        return 126
    try:
        os.execv(argv[2], argv[2:])
    except OSError as exc:
        print(f"sandbox launcher: cannot run {argv[2]} as uid {config['uid']}: {exc}",
              file=sys.stderr)
        return 126
    return 0  # not reached: execv does not return


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
