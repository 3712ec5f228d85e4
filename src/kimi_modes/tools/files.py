"""Workspace file tools: ``read_file``, ``write_file``, ``list_files``, ``search_files``.

Every path a model gives is confined to the run's workspace by
:mod:`kimi_modes.tools.workspace` (the only code that opens files there; its docstring has the
guarantees): ``..``, absolute paths elsewhere, links out of the workspace, special files and
hard-linked files are refused. Listing and searching never follow links: links are shown
(``name -> target``), not entered.

Failures come back as ``ToolResult(is_error=True)`` whose text says what to do instead. Sizes
and counts are bounded by :class:`FileLimits`. POSIX only (it relies on ``dir_fd`` opens).

Example::

    ctx = RunContext("run-1", Path("/tmp/ws"))
    tools = {t.name: t for t in file_tools()}
    await tools["write_file"].run({"path": "notes/a.txt", "content": "hi\\n"}, ctx)
    await tools["read_file"].run({"path": "notes/a.txt"}, ctx)   # "     1\\thi"
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kimi_modes.tools.base import RunContext, Tool, ToolResult
from kimi_modes.tools.text import SNIFF_BYTES, binary_kind, bounded_lines, cut_line, looks_binary
from kimi_modes.tools.workspace import (
    Workspace,
    WorkspaceError,
    describe_kind,
    open_entry,
    walk,
)

__all__ = [
    "FileLimits",
    "ListFilesTool",
    "ReadFileTool",
    "SearchFilesTool",
    "WriteFileTool",
    "file_tools",
]

#: Directories ``search_files`` does not descend into (version control, caches, vendored code).
SEARCH_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv"})


@dataclass(frozen=True, slots=True)
class FileLimits:
    """Bounds on what the file tools read, write and return.

    ``read_chars``: text returned by one ``read_file`` call; ``read_lines``: its default line
    count; ``line_chars``: a longer line is cut (``read_file`` and ``search_files``);
    ``read_scan_bytes``: how far into a file ``read_file`` looks for ``offset``;
    ``write_bytes``: the largest ``content`` ``write_file`` accepts (and the largest file an
    append may grow); ``list_entries``: entries ``list_files`` returns; ``search_matches``:
    matches ``search_files`` returns; ``search_file_bytes``: larger files are skipped by
    ``search_files``; ``search_total_bytes`` and ``search_seconds``: when it stops looking.
    """

    read_chars: int = 12_000
    read_lines: int = 400
    line_chars: int = 1_000
    read_scan_bytes: int = 64 * 1024 * 1024
    write_bytes: int = 5 * 1024 * 1024
    list_entries: int = 500
    search_matches: int = 200
    search_file_bytes: int = 2 * 1024 * 1024
    search_total_bytes: int = 256 * 1024 * 1024
    search_seconds: float = 20.0


# --------------------------------------------------------------------------- helpers


async def _in_thread(fn: Callable[[], ToolResult]) -> ToolResult:
    """Run blocking file work off the event loop; workspace and OS errors become results."""
    try:
        return await asyncio.to_thread(fn)
    except WorkspaceError as exc:
        return ToolResult(f"Error: {exc}", True, {"error": "workspace"})
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return ToolResult(f"Error: {where}{exc.strerror or exc}", True, {"error": "os"})


def _str_arg(arguments: dict[str, Any], name: str, default: str | None = None) -> str:
    value = arguments.get(name, default)
    if not isinstance(value, str):
        raise WorkspaceError(f"'{name}' must be a string")
    return value


def _int_arg(arguments: dict[str, Any], name: str, default: int, lo: int) -> int:
    value = arguments.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise WorkspaceError(f"'{name}' must be an integer >= {lo}")
    return value



# --------------------------------------------------------------------------- read_file


_READ_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string",
                 "description": "File path, relative to the workspace."},
        "offset": {"type": "integer", "minimum": 1,
                   "description": "First line to read (1-based). Default 1."},
        "limit": {"type": "integer", "minimum": 1,
                  "description": "Maximum number of lines to return."},
    },
    "required": ["path"],
    "additionalProperties": False,
}


class ReadFileTool:
    """``read_file``: numbered lines of a text file in the workspace.

    Returns at most ``limits.read_chars`` characters and says how to read on; a binary file
    is described (type, size), never dumped. Guarantees: see the module docstring."""

    name = "read_file"
    description = (
        "Read a text file from the workspace. Lines come back numbered (`  12\\tline`). "
        "Use offset/limit to page through long files. Binary files are described, not shown."
    )

    def __init__(self, limits: FileLimits | None = None, *, timeout: float | None = 30.0):
        self.limits = limits or FileLimits()
        self.parameters: dict[str, Any] = copy.deepcopy(_READ_FILE_SCHEMA)
        self.timeout = timeout

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return await _in_thread(lambda: self._read(arguments, ctx))

    def _read(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        lim = self.limits
        path = _str_arg(arguments, "path")
        offset = _int_arg(arguments, "offset", 1, 1)
        limit = _int_arg(arguments, "limit", lim.read_lines, 1)
        fd, shown, _ = Workspace(ctx.workspace).open_file(path)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(SNIFF_BYTES)
            if looks_binary(head):
                return ToolResult(
                    f"{shown} is a binary file ({binary_kind(head)}, {size} bytes); "
                    "its content is not shown. Use the python tool to inspect or convert it.",
                    meta={"path": shown, "bytes": size, "binary": True})
            f.seek(0)
            out: list[str] = []
            chars = 0
            lineno = 0
            more = False
            for raw, extra in bounded_lines(f, lim.line_chars * 4):
                lineno += 1
                if lineno < offset:
                    if f.tell() > lim.read_scan_bytes:
                        raise WorkspaceError(
                            f"{shown}: line {offset} lies beyond the first "
                            f"{lim.read_scan_bytes} bytes; use search_files or python")
                    continue
                if len(out) >= limit:
                    more = True
                    break
                line = cut_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"),
                                 lim.line_chars, extra)
                entry = f"{lineno:>6}\t{line}"
                if out and chars + len(entry) + 1 > lim.read_chars:
                    more = True
                    break
                out.append(entry)
                chars += len(entry) + 1
        meta = {"path": shown, "bytes": size, "lines": len(out)}
        if not out:
            if size == 0:
                return ToolResult(f"{shown} is empty (0 bytes).", meta=meta)
            return ToolResult(f"{shown} has {lineno} lines; offset {offset} is past "
                              "the end.", meta=meta)
        text = "\n".join(out)
        if more:
            nxt = offset + len(out)
            text += (f"\n[... more lines follow; call read_file with offset={nxt} to "
                     "continue]")
            meta["truncated"] = True
        return ToolResult(text, meta=meta)


# --------------------------------------------------------------------------- write_file


_WRITE_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string",
                 "description": "File path, relative to the workspace."},
        "content": {"type": "string", "description": "The text to write."},
        "append": {"type": "boolean",
                   "description": "Append to the file instead of replacing it."},
    },
    "required": ["path", "content"],
    "additionalProperties": False,
}


class WriteFileTool:
    """``write_file``: create, overwrite or append to a text file in the workspace, making
    missing parent directories (each made and entered without following links). Content
    larger than ``limits.write_bytes`` is refused, as is an append that would grow the file
    past it. Guarantees: see the module docstring."""

    name = "write_file"
    description = (
        "Write text to a file in the workspace (created if missing, with its parent "
        "directories). Overwrites unless append is true."
    )

    def __init__(self, limits: FileLimits | None = None, *, timeout: float | None = 30.0):
        self.limits = limits or FileLimits()
        self.parameters: dict[str, Any] = copy.deepcopy(_WRITE_FILE_SCHEMA)
        self.timeout = timeout

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return await _in_thread(lambda: self._write(arguments, ctx))

    def _write(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        path = _str_arg(arguments, "path")
        data = _str_arg(arguments, "content").encode("utf-8")
        append = bool(arguments.get("append", False))
        cap = self.limits.write_bytes
        if len(data) > cap:
            raise WorkspaceError(f"content is {len(data)} bytes; the limit is {cap}. Write it "
                                 "in parts with append=true, or generate it with python.")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
        fd, shown, _ = Workspace(ctx.workspace).open_file(path, flags, create_dirs=True)
        with os.fdopen(fd, "wb") as f:
            before = os.fstat(f.fileno()).st_size
            if append and before + len(data) > cap:
                raise WorkspaceError(f"{shown} is {before} bytes; appending "
                                     f"{len(data)} would pass the {cap}-byte limit")
            if not append:
                f.truncate(0)
            f.write(data)
        verb = "Appended" if append else "Wrote"
        return ToolResult(f"{verb} {len(data)} bytes to {shown}.",
                          meta={"path": shown, "bytes": len(data), "append": append})


def _matcher(glob: str | None) -> Callable[[str, str], bool]:
    """Whether ``(relative path, name)`` matches ``glob``: a pattern without ``/`` is
    matched against the name, one with ``/`` against the path (``*`` may cross ``/``)."""
    if not glob:
        return lambda _path, _name: True
    pattern = glob.removeprefix("./")
    if "/" in pattern:
        pattern = pattern.replace("**/", "*") if pattern.startswith("**/") else pattern
        return lambda path, _name: fnmatch.fnmatchcase(path, pattern)
    return lambda _path, name: fnmatch.fnmatchcase(name, pattern)


# --------------------------------------------------------------------------- list_files


_LIST_FILES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string",
                 "description": "Directory, relative to the workspace. Default '.'."},
        "glob": {"type": "string",
                 "description": "Shell pattern for names, e.g. '*.csv'; one with '/' "
                                "(e.g. 'data/*.csv') is matched against the path below "
                                "`path` and implies recursive."},
        "recursive": {"type": "boolean",
                      "description": "Include the contents of subdirectories."},
    },
    "additionalProperties": False,
}


class ListFilesTool:
    """``list_files``: the entries of a workspace directory (optionally recursive and
    filtered by a glob), at most ``limits.list_entries``; directories end in ``/``, files
    show their size, links show their target and are not entered."""

    name = "list_files"
    description = (
        "List files and directories in the workspace. Directories end with '/'. "
        "Set recursive to list subdirectories too; glob filters names (e.g. '*.py')."
    )

    def __init__(self, limits: FileLimits | None = None, *, timeout: float | None = 30.0):
        self.limits = limits or FileLimits()
        self.parameters: dict[str, Any] = copy.deepcopy(_LIST_FILES_SCHEMA)
        self.timeout = timeout

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return await _in_thread(lambda: self._list(arguments, ctx))

    def _list(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        path = _str_arg(arguments, "path", ".")
        glob = arguments.get("glob")
        if glob is not None and not isinstance(glob, str):
            raise WorkspaceError("'glob' must be a string")
        top, shown, _ = Workspace(ctx.workspace).open_dir(path)
        recursive = bool(arguments.get("recursive", False)) or "/" in (glob or "")
        matches = _matcher(glob)
        cap = self.limits.list_entries
        prefix = "" if shown == "." else shown + "/"
        lines: list[str] = []
        more = False
        for rel, entry, dir_fd in walk(top, recursive=recursive):
            relpath = rel + entry.name
            if not matches(relpath, entry.name):
                continue
            if len(lines) >= cap:
                more = True
                break
            lines.append(_describe(prefix + relpath, entry, dir_fd))
        meta: dict[str, Any] = {"path": shown, "entries": len(lines)}
        if not lines:
            what = f" matching {glob!r}" if glob else ""
            return ToolResult(f"{shown}: no entries{what}.", meta=meta)
        text = "\n".join(lines)
        if more:
            meta["truncated"] = True
            text += (f"\n[listing stopped at {cap} entries; narrow it with path or glob]")
        return ToolResult(text, meta=meta)


def _describe(shown: str, entry: os.DirEntry[str], dir_fd: int) -> str:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return f"{shown} (unreadable)"
    if stat.S_ISDIR(st.st_mode):
        return f"{shown}/"
    if stat.S_ISLNK(st.st_mode):
        try:
            dest = os.readlink(entry.name, dir_fd=dir_fd)
        except OSError:
            dest = "?"
        return f"{shown} -> {dest} (symbolic link)"
    if stat.S_ISREG(st.st_mode):
        return f"{shown} ({st.st_size} bytes)"
    return f"{shown} ({describe_kind(st.st_mode)})"


# --------------------------------------------------------------------------- search_files


_SEARCH_FILES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string", "description": "Regular expression or text."},
        "path": {"type": "string",
                 "description": "File or directory to search, relative to the workspace. "
                                "Default '.'."},
        "glob": {"type": "string", "description": "Only files whose name matches, "
                                                  "e.g. '*.py'."},
        "literal": {"type": "boolean",
                    "description": "Treat pattern as plain text, not a regex."},
        "ignore_case": {"type": "boolean", "description": "Case-insensitive match."},
    },
    "required": ["pattern"],
    "additionalProperties": False,
}


class SearchFilesTool:
    """``search_files``: lines matching a regular expression (or a literal string) in the
    workspace's text files, as ``path:line: text``.

    Bounded: at most ``limits.search_matches`` matches; files larger than
    ``limits.search_file_bytes`` and binary files are skipped; it stops after
    ``limits.search_total_bytes`` or ``limits.search_seconds`` and says so. Directories in
    :data:`SEARCH_SKIP_DIRS` are not entered, nor are links."""

    name = "search_files"
    description = (
        "Search the workspace's text files for a regular expression (Python syntax) or, with "
        "literal=true, a plain string. Returns matching lines as 'path:line: text'."
    )

    def __init__(self, limits: FileLimits | None = None, *, timeout: float | None = 60.0):
        self.limits = limits or FileLimits()
        self.parameters: dict[str, Any] = copy.deepcopy(_SEARCH_FILES_SCHEMA)
        self.timeout = timeout

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        return await _in_thread(lambda: self._search(arguments, ctx))

    def _search(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        lim = self.limits
        pattern = _str_arg(arguments, "pattern")
        if not pattern:
            raise WorkspaceError("'pattern' is empty")
        flags = re.IGNORECASE if arguments.get("ignore_case") else 0
        try:
            regex = re.compile(re.escape(pattern) if arguments.get("literal") else pattern,
                               flags)
        except re.error as exc:
            raise WorkspaceError(f"invalid regular expression: {exc}. Escape special "
                                 "characters or pass literal=true.") from exc
        glob = arguments.get("glob")
        if glob is not None and not isinstance(glob, str):
            raise WorkspaceError("'glob' must be a string")
        matches = _matcher(glob)
        opened = Workspace(ctx.workspace).open_any(_str_arg(arguments, "path", "."))
        deadline = time.monotonic() + lim.search_seconds
        state = _SearchState()
        if not opened.is_dir:
            self._scan_fd(opened.fd, opened.shown, regex, state)
        else:
            prefix = "" if opened.shown == "." else opened.shown + "/"
            for rel, entry, dir_fd in walk(opened.fd, recursive=True, skip=SEARCH_SKIP_DIRS):
                if state.stopped or time.monotonic() > deadline:
                    state.stopped = state.stopped or "time"
                    break
                if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    continue
                if not matches(rel + entry.name, entry.name):
                    continue
                self._scan_entry(dir_fd, entry.name, prefix + rel + entry.name, regex, state)
        return self._report(pattern, opened.shown, state)

    def _scan_entry(self, dir_fd: int, name: str, shown: str, regex: re.Pattern[str],
                    state: _SearchState) -> None:
        try:
            fd = open_entry(dir_fd, name, shown)
        except WorkspaceError:
            return  # a special or hard-linked file, or one that vanished: not searched
        self._scan_fd(fd, shown, regex, state)

    def _scan_fd(self, fd: int, shown: str, regex: re.Pattern[str],
                 state: _SearchState) -> None:
        """Search the open regular file ``fd`` (closed here)."""
        lim = self.limits
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if st.st_size > lim.search_file_bytes:
                state.skipped_large.append(shown)
                return
            data = f.read(lim.search_file_bytes + 1)
        state.files += 1
        state.bytes += len(data)
        if looks_binary(data[:SNIFF_BYTES]):
            return
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                if len(state.hits) >= lim.search_matches:
                    state.stopped = "matches"
                    return
                state.hits.append(f"{shown}:{lineno}: {cut_line(line.strip(), 300)}")
        if state.bytes > lim.search_total_bytes:
            state.stopped = "bytes"

    def _report(self, pattern: str, shown_path: str, state: _SearchState) -> ToolResult:
        lim = self.limits
        meta: dict[str, Any] = {"matches": len(state.hits), "files_searched": state.files}
        notes: list[str] = []
        if state.stopped == "matches":
            notes.append(f"[stopped at {lim.search_matches} matches; narrow the pattern, "
                         "path or glob]")
        elif state.stopped == "time":
            notes.append(f"[stopped after {lim.search_seconds:g} s; results are partial]")
        elif state.stopped == "bytes":
            notes.append(f"[stopped after {lim.search_total_bytes} bytes; results are partial]")
        if state.skipped_large:
            shown = ", ".join(state.skipped_large[:5])
            extra = len(state.skipped_large) - 5
            notes.append(f"[skipped files over {lim.search_file_bytes} bytes: {shown}"
                         + (f" and {extra} more" if extra > 0 else "") + "]")
        if state.stopped:
            meta["truncated"] = True
        if not state.hits:
            text = (f"No matches for {pattern!r} in {shown_path} "
                    f"({state.files} files searched).")
        else:
            text = "\n".join(state.hits)
        return ToolResult("\n".join([text, *notes]), meta=meta)


@dataclass
class _SearchState:
    hits: list[str] = field(default_factory=list)
    skipped_large: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    stopped: str = ""


# --------------------------------------------------------------------------- factory


def file_tools(limits: FileLimits | None = None) -> list[Tool]:
    """The four workspace file tools sharing ``limits``."""
    lim = limits or FileLimits()
    return [ReadFileTool(lim), WriteFileTool(lim), ListFilesTool(lim), SearchFilesTool(lim)]
