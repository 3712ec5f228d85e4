"""The confinement boundary: the one place that opens files inside a run's workspace.

A path a model gives (relative to the workspace, or absolute) is resolved and opened in one
pass, by the kernel, beneath a descriptor of the workspace; no path string is ever checked and
then opened. :class:`Workspace` promises:

- resolution walks the path one component at a time, each opened with ``openat(dir_fd, name,
  O_NOFOLLOW)`` relative to the descriptor of the directory before it, starting from the
  workspace's descriptor. A symbolic link is never followed by the kernel: it is read
  (``readlinkat``) and its target spliced into the rest of the path, then walked the same way.
  ``..`` pops the walk's own stack of descriptors; it never asks the file system for a parent,
  so it cannot leave the workspace (nor follow a directory that was moved out);
- a walk that would go above the workspace (``..``, an absolute path elsewhere, a link to
  ``/etc`` or to another run's workspace, a relative link such as ``up -> ..``) is refused
  before anything outside is opened or even looked at; an absolute path or link target is
  allowed only when it names the workspace itself (its given or its real path) or lies
  beneath it;
- so a component swapped for a link between any two steps (a race with code running in the
  sandbox) is seen as a link when it is opened, and refused or resolved again beneath the
  workspace: no interleaving can make an open land outside;
- the final component is opened with ``O_NOFOLLOW`` relative to its directory's descriptor, so
  a write through a dangling link or a link swapped in at the last moment fails instead of
  creating or changing a file outside; files are never opened with ``O_TRUNC``;
- missing directories (``create_dirs``) are made only after the whole path was resolved
  inside the workspace, each made and entered with ``mkdirat`` + ``O_NOFOLLOW``;
- only regular files are opened as files and only directories as directories: devices, FIFOs
  and sockets are refused before they are opened (``O_NONBLOCK`` besides) and checked again on
  the open descriptor; a regular file with more than one hard link is refused (it may be a
  second name of a file outside);
- :func:`walk` lists beneath an open directory descriptor and never enters a link.

Assumption: nothing with write access outside the workspace moves a directory of the workspace
out of it during a call (the sandbox cannot: it can write only inside). Every refusal raises
:class:`WorkspaceError`, whose message says why and what to do instead. POSIX only
(``dir_fd`` opens).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["Opened", "Workspace", "WorkspaceError", "describe_kind", "open_entry", "walk"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
#: Links followed in one resolution before it is called a loop (Linux's own limit).
MAX_LINKS = 40


class WorkspaceError(Exception):
    """A path the model gave cannot be used; the message says why and what to do instead."""


class Opened(NamedTuple):
    """An open descriptor inside the workspace (the caller closes it) and its path relative to
    the workspace after resolution (``.`` for the workspace itself)."""

    fd: int
    shown: str
    is_dir: bool


class _Resolved(NamedTuple):
    parent: int  # descriptor of the directory that holds ``name`` (owned by the caller)
    names: tuple[str, ...]  # the directory's components beneath the workspace
    name: str | None  # the final component; None when the target is ``parent`` itself

    @property
    def shown(self) -> str:
        return "/".join((*self.names, *([self.name] if self.name else []))) or "."


class Workspace:
    """A run's workspace directory (trusted: the gateway made it) and the opens beneath it.

    Each method takes a path as the model gave it; the guarantees are in the module docstring.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    # ----------------------------------------------------------------- opens

    def open_file(self, path: str, flags: int = os.O_RDONLY, *,
                  create_dirs: bool = False) -> Opened:
        """Open the regular file ``path`` with ``flags`` (``O_CREAT`` creates it; missing
        parent directories are made when ``create_dirs``)."""
        res = self._resolve(path, create_dirs=create_dirs)
        try:
            if res.name is None:
                where = "the workspace directory" if not res.names else "a directory"
                raise WorkspaceError(f"{res.shown} is {where}, not a file. Use list_files "
                                     "to see what it holds.")
            return self._open_final(res, flags, directory_ok=False)
        finally:
            os.close(res.parent)

    def open_dir(self, path: str) -> Opened:
        """Open the directory ``path`` for listing."""
        opened = self.open_any(path)
        if not opened.is_dir:
            os.close(opened.fd)
            raise WorkspaceError(f"{opened.shown}: is not a directory")
        return opened

    def open_any(self, path: str) -> Opened:
        """Open ``path`` for reading: a directory, or a regular file with one link."""
        res = self._resolve(path, create_dirs=False)
        if res.name is None:
            return Opened(res.parent, res.shown, True)
        try:
            return self._open_final(res, os.O_RDONLY, directory_ok=True)
        finally:
            os.close(res.parent)

    def _open_final(self, res: _Resolved, flags: int, *, directory_ok: bool) -> Opened:
        assert res.name is not None
        shown = res.shown
        try:
            st = os.stat(res.name, dir_fd=res.parent, follow_symlinks=False)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise WorkspaceError(f"{shown}: no such file or directory. Use list_files to "
                                     "see what the workspace holds.") from None
        else:
            if not (directory_ok and stat.S_ISDIR(st.st_mode)):
                _check_regular(st, shown)
        try:
            fd = os.open(res.name, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, 0o644,
                         dir_fd=res.parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise WorkspaceError(f"{shown}: access denied: it is a symbolic link (it "
                                     "changed while being opened)") from exc
            if exc.errno == errno.EISDIR:
                raise WorkspaceError(f"{shown}: is a directory") from exc
            if exc.errno == errno.ENOENT:
                raise WorkspaceError(f"{shown}: no such file or directory (it vanished "
                                     "while being opened)") from exc
            raise
        try:
            st = os.fstat(fd)
            is_dir = directory_ok and stat.S_ISDIR(st.st_mode)
            if not is_dir:
                _check_regular(st, shown)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return Opened(fd, shown, is_dir)

    # ----------------------------------------------------------------- resolution

    def _root_fd(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError as exc:
            why = "not a directory" if exc.errno == errno.ENOTDIR else exc.strerror
            raise WorkspaceError(f"the run's workspace is not available ({why})") from exc

    def _beneath(self, absolute: str) -> list[str] | None:
        """The components of ``absolute`` beneath the workspace (by its given or its real
        path, compared component by component, nothing resolved), or ``None``."""
        parts = [p for p in absolute.split("/") if p not in ("", ".")]
        for base in (os.path.abspath(self.root), os.path.realpath(self.root)):
            prefix = [p for p in base.split("/") if p]
            if parts[:len(prefix)] == prefix:
                return parts[len(prefix):]
        return None

    def _resolve(self, path: str, *, create_dirs: bool) -> _Resolved:
        """Walk ``path`` beneath the workspace (see the module docstring): the descriptor of
        the directory holding the target, and the target's final name."""
        if "\x00" in path:
            raise WorkspaceError("the path contains a NUL character")
        given = path if path.strip() else "."
        if given.startswith("/"):
            rest = self._beneath(given)
            if rest is None:
                raise _escape(given, via_link=False)
        else:
            rest = given.split("/")
        todo: deque[str] = deque(p for p in rest if p not in ("", "."))
        fds = [self._root_fd()]
        names: list[str] = []
        missing: list[str] = []  # components beneath the first one that does not exist
        final: str | None = None
        links = 0
        via_link = False
        try:
            while todo:
                name = todo.popleft()
                final = None
                if name in ("", "."):
                    continue
                if name == "..":
                    if missing:
                        missing.pop()
                    elif names:
                        os.close(fds.pop())
                        names.pop()
                    else:
                        raise _escape(given, via_link=via_link)
                    continue
                if missing:
                    missing.append(name)
                    continue
                target = self._step(fds, names, name, last=not todo)
                if target is None:  # the component exists and is not a link
                    if not todo:
                        final = name
                    continue
                if isinstance(target, _Absent):
                    missing.append(name)
                    continue
                links += 1
                via_link = True
                if links > MAX_LINKS:
                    raise WorkspaceError(f"{given}: too many levels of symbolic links (a loop)")
                if target.startswith("/"):
                    inside = self._beneath(target)
                    if inside is None:
                        raise _escape(given, via_link=True)
                    while len(fds) > 1:
                        os.close(fds.pop())
                    names.clear()
                    todo.extendleft(reversed(inside))
                else:
                    todo.extendleft(reversed(target.split("/")))
            if missing:
                final = missing.pop()
                if missing and not create_dirs:
                    shown = "/".join([*names, missing[0]])
                    raise WorkspaceError(f"{shown}: no such directory")
                for name in missing:
                    self._make_dir(fds, names, name)
            parent = fds.pop()
            return _Resolved(parent, tuple(names), final)
        finally:
            for fd in fds:
                os.close(fd)

    def _step(self, fds: list[int], names: list[str], name: str, *,
              last: bool) -> str | _Absent | None:
        """Enter the directory ``name`` (pushing its descriptor) unless ``last``; return
        ``None`` when it exists and is not a link (or is the missing final name), the link's
        target when it is a link, or :data:`_ABSENT` when a directory on the way is missing."""
        top = fds[-1]
        if last:
            try:
                st = os.stat(name, dir_fd=top, follow_symlinks=False)
            except FileNotFoundError:
                return None  # the final name; whether it must exist is the opener's call
            return os.readlink(name, dir_fd=top) if stat.S_ISLNK(st.st_mode) else None
        try:
            fds.append(os.open(name, _DIR_FLAGS, dir_fd=top))
        except OSError as exc:
            try:
                st = os.stat(name, dir_fd=top, follow_symlinks=False)
            except FileNotFoundError:
                return _ABSENT
            if stat.S_ISLNK(st.st_mode):
                return os.readlink(name, dir_fd=top)
            shown = "/".join([*names, name])
            if not stat.S_ISDIR(st.st_mode):
                raise WorkspaceError(f"{shown}: is not a directory") from exc
            raise
        names.append(name)
        return None

    def _make_dir(self, fds: list[int], names: list[str], name: str) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=fds[-1])
        try:
            fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
        except OSError as exc:
            shown = "/".join([*names, name])
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise WorkspaceError(f"{shown}: access denied: it is not a directory (a link "
                                     "or file appeared while it was being made)") from exc
            raise
        names.append(name)


class _Absent:
    """A directory on the way does not exist (yet)."""


_ABSENT = _Absent()


def _escape(given: str, *, via_link: bool) -> WorkspaceError:
    why = ("it is (or passes through) a symbolic link that points outside the workspace"
           if via_link else "it is outside the workspace")
    return WorkspaceError(f"{given}: access denied: {why}. Only files inside the run's "
                          "workspace can be used; give a path relative to it "
                          "(e.g. 'data/input.csv').")


def describe_kind(mode: int) -> str:
    """What a file of ``mode`` (``st_mode``) is, in words: ``a directory``, ``a FIFO (named
    pipe)``, ..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _check_regular(st: os.stat_result, shown: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        hint = " Use list_files to see what it holds." if stat.S_ISDIR(st.st_mode) else ""
        raise WorkspaceError(f"{shown}: is {describe_kind(st.st_mode)}, not a regular file."
                             f"{hint}")
    if st.st_nlink > 1:
        raise WorkspaceError(f"{shown}: access denied: the file has {st.st_nlink} hard links "
                             "(it may be another name of a file outside the workspace)")


def open_entry(dir_fd: int, name: str, shown: str) -> int:
    """Open ``name`` in the directory ``dir_fd`` (one :func:`walk` yielded) for reading: a
    regular file with one link, never through a link, never a special file, never blocking.
    The caller closes it."""
    try:
        _check_regular(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), shown)
        fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise WorkspaceError(f"{shown}: cannot be opened ({exc.strerror})") from exc
    try:
        _check_regular(os.fstat(fd), shown)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def walk(top: int, *, recursive: bool, skip: frozenset[str] = frozenset()
         ) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    """``(relative dir, entry, dir fd)`` for the entries beneath the open directory ``top``
    (which the walk takes over and closes), sorted by name, never following links (a link is
    yielded, not entered; a directory swapped for a link is skipped). ``dir fd`` is valid
    until the next entry is asked for."""
    stack: list[tuple[str, int]] = [("", top)]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                subdirs: list[tuple[str, int]] = []
                for entry in entries:
                    yield rel, entry, fd
                    if (recursive and entry.name not in skip
                            and entry.is_dir(follow_symlinks=False)):
                        try:
                            sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                        except OSError:
                            continue  # vanished, became a link, or unreadable
                        subdirs.append((f"{rel}{entry.name}/", sub))
                stack.extend(reversed(subdirs))
            finally:
                os.close(fd)
    finally:
        for _, fd in stack:
            os.close(fd)
