"""The confinement boundary: every file the tools open inside a run's workspace is opened here.

A path a model gives is confined to the run's workspace (``ctx.workspace``):

- a relative path resolves against the workspace; an absolute path must resolve inside it;
- the path is resolved with realpath semantics (every symbolic link followed, ``..`` applied
  after) and refused unless the result is the workspace or lies beneath it, so ``..``, an
  absolute path elsewhere and a link (made by sandboxed code, say) to ``/etc`` are all refused;
- the resolved path is then opened one component at a time from a descriptor of the workspace
  with ``O_NOFOLLOW``, so a link swapped in between the check and the open (a race with code
  running in the sandbox) makes the open fail instead of escaping;
- only regular files are opened as files and only directories as directories: devices, FIFOs
  and sockets are refused before they are opened, and checked again on the open descriptor;
  a regular file with more than one hard link is refused too (it may be a second name of a
  file outside);
- walking a directory never follows links: links are yielded, not entered.

Every refusal raises :class:`WorkspaceError`, whose message says why and what to do instead.
POSIX only (it relies on ``dir_fd`` opens).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from kimi_modes.tools.base import RunContext

__all__ = [
    "WorkspaceError",
    "WorkspacePath",
    "confine",
    "describe_kind",
    "is_dir",
    "open_dir",
    "open_entry",
    "open_file",
    "walk",
]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class WorkspaceError(Exception):
    """A path the model gave cannot be used; the message says why and what to do instead."""


@dataclass(frozen=True, slots=True)
class WorkspacePath:
    """A path confined to the workspace: the workspace's real path and the components of the
    resolved target beneath it (empty for the workspace itself)."""

    root: str
    parts: tuple[str, ...]

    @property
    def display(self) -> str:
        """The path relative to the workspace, ``.`` for the workspace itself."""
        return "/".join(self.parts) or "."


def _workspace_root(ctx: RunContext) -> str:
    try:
        root = os.path.realpath(ctx.workspace, strict=True)
    except OSError as exc:
        raise WorkspaceError(f"the run's workspace is not available ({exc.strerror})") from exc
    if not os.path.isdir(root):
        raise WorkspaceError("the run's workspace is not a directory")
    return root


def confine(ctx: RunContext, path: str) -> WorkspacePath:
    """Resolve ``path`` (relative to the workspace, or absolute) and refuse it unless the
    resolved path is the workspace or lies beneath it. Links are followed, including a
    dangling one (its target is what a write would create)."""
    if "\x00" in path:
        raise WorkspaceError("the path contains a NUL character")
    root = _workspace_root(ctx)
    given = path if path.strip() else "."
    candidate = given if os.path.isabs(given) else os.path.join(root, given)
    try:
        resolved = os.path.realpath(candidate)
    except (OSError, ValueError) as exc:  # a link loop, say
        raise WorkspaceError(f"{given}: cannot be resolved ({exc})") from exc
    if resolved != root and not resolved.startswith(root.rstrip(os.sep) + os.sep):
        lexical = os.path.normpath(candidate)
        workspace_names = (root, os.path.normpath(os.path.abspath(ctx.workspace)))
        lexically_inside = any(lexical == w or lexical.startswith(w.rstrip(os.sep) + os.sep)
                               for w in workspace_names)
        why = ("it is (or passes through) a symbolic link that points outside the workspace"
               if lexically_inside else "it is outside the workspace")
        raise WorkspaceError(
            f"{given}: access denied: {why}. Only files inside the run's workspace can be "
            "used; give a path relative to it (e.g. 'data/input.csv').")
    rel = os.path.relpath(resolved, root)
    parts = () if rel == "." else tuple(rel.split(os.sep))
    return WorkspacePath(root, parts)


def open_dir(root: str, parts: tuple[str, ...], *, create: bool = False) -> int:
    """A descriptor of the directory ``root/parts``, opened component by component without
    following any link (``create`` makes missing directories on the way). The caller closes
    it. A component that became a link since :func:`confine` raises ``WorkspaceError``."""
    fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        for i, name in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
            try:
                nxt = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC,
                              dir_fd=fd)
            except OSError as exc:
                shown = "/".join(parts[: i + 1])
                if exc.errno in (errno.ELOOP, errno.EMLINK) or _is_link(name, fd):
                    raise WorkspaceError(f"{shown}: access denied: it is a symbolic link "
                                         "(it changed while being opened)") from exc
                if exc.errno == errno.ENOTDIR:
                    raise WorkspaceError(f"{shown}: is not a directory") from exc
                if exc.errno == errno.ENOENT:
                    raise WorkspaceError(f"{shown}: no such directory") from exc
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


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


def open_file(target: WorkspacePath, flags: int, *, create_dirs: bool = False) -> int:
    """Open the regular file ``target`` with ``flags`` (never following a link, never
    blocking on a FIFO). Refuses anything but a regular file with one link."""
    if not target.parts:
        raise WorkspaceError(". is the workspace directory, not a file")
    dir_fd = open_dir(target.root, target.parts[:-1], create=create_dirs)
    name = target.parts[-1]
    try:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise WorkspaceError(f"{target.display}: no such file. Use list_files to see "
                                     "what the workspace holds.") from None
        else:
            _check_regular(st, target.display)
        try:
            fd = os.open(name, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, 0o644,
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise WorkspaceError(f"{target.display}: access denied: it is a symbolic "
                                     "link (it changed while being opened)") from exc
            if exc.errno in (errno.EISDIR,):
                raise WorkspaceError(f"{target.display}: is a directory") from exc
            raise
    finally:
        os.close(dir_fd)
    try:
        _check_regular(os.fstat(fd), target.display)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_entry(dir_fd: int, name: str, shown: str) -> int:
    """Open ``name`` in the directory ``dir_fd`` (one :func:`walk` yielded) for reading: a
    regular file with one link, never through a link, never blocking. The caller closes it."""
    try:
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


def walk(target: WorkspacePath, *, recursive: bool, skip: frozenset[str] = frozenset()
         ) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    """``(relative dir, entry, dir fd)`` for the entries under the directory ``target``,
    sorted by name, never following links (a link is yielded, not entered). ``dir_fd`` is
    valid until the next entry is asked for."""
    top = open_dir(target.root, target.parts)
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
                            sub = os.open(entry.name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW
                                          | _O_CLOEXEC, dir_fd=fd)
                        except OSError:
                            continue  # vanished, became a link, or unreadable
                        subdirs.append((f"{rel}{entry.name}/", sub))
                stack.extend(reversed(subdirs))
            finally:
                os.close(fd)
    finally:
        for _, fd in stack:
            os.close(fd)


def is_dir(target: WorkspacePath) -> bool:
    """Whether ``target`` is a directory (not following a final link)."""
    if not target.parts:
        return True
    dir_fd = open_dir(target.root, target.parts[:-1])
    try:
        st = os.stat(target.parts[-1], dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise WorkspaceError(f"{target.display}: no such file or directory") from None
    finally:
        os.close(dir_fd)
    return stat.S_ISDIR(st.st_mode)
