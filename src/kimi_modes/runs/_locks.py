"""Which processes still hold their runs: one lock file per open store.

Several processes may share one runs database (the gateway and a ``kimi-modes run`` in a
terminal). Each open store holds an exclusive ``flock`` on ``<directory>/<store id>.lock`` until
it closes, or until its process ends and the kernel lets go of it. A store opening the
database treats the active runs of a store whose lock is free as left behind by a stopped
process. Everything here blocks on the file system: call it from a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from kimi_modes.runs.errors import RunStoreError


class StoreLock:
    """The lock of the store ``store_id`` in ``directory`` (made when needed)."""

    def __init__(self, directory: Path, store_id: str) -> None:
        self.directory = directory
        self.store_id = store_id
        self._fd: int | None = None

    def take(self) -> None:
        """Create and lock this store's file; held until :meth:`release`. Raises
        :class:`RunStoreError` if the file keeps vanishing under a sweeping store."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(self.store_id)
        for _ in range(10):
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # A sweeping store may have removed the file between open and flock: the
                # lock must be on the file that is at the path.
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    self._fd = fd
                    return
            except FileNotFoundError:
                pass
            except OSError:
                os.close(fd)
                raise
            os.close(fd)
        raise RunStoreError(f"could not take the lock {path}")

    def release(self) -> None:
        """Remove and unlock this store's file. Idempotent."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self._path(self.store_id))
        os.close(self._fd)
        self._fd = None

    def alive(self, store_id: str | None) -> bool:
        """Whether the store ``store_id`` is open: this one, or another whose lock is held."""
        if store_id is None:
            return False
        if store_id == self.store_id:
            return True
        return _held(self._path(store_id))

    def sweep(self) -> None:
        """Remove the lock files of stores that are gone."""
        for path in self.directory.glob("*.lock"):
            if path.stem != self.store_id and not _held(path):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _path(self, store_id: str) -> Path:
        return self.directory / f"{store_id}.lock"


def _held(path: Path) -> bool:
    """Whether an open store holds the lock file at ``path``."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
