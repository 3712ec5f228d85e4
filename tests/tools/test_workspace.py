"""The confinement boundary (:mod:`kimi_modes.tools.workspace`) against links, hard links and
races: each test says what it tries and asserts what must not happen (a secret outside the
workspace is never read, nothing outside is created or changed).

Layout of every test: ``runs/run-1`` is the workspace, ``runs/run-2`` another run's workspace
and ``outside`` a directory beside them; both hold a file with a secret in it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.tools import RunContext
from kimi_modes.tools.files import ListFilesTool, ReadFileTool, SearchFilesTool, WriteFileTool
from kimi_modes.tools.workspace import Workspace, WorkspaceError, walk

SECRET = "SECRET-0xC0FFEE"


class Layout:
    def __init__(self, tmp_path: Path) -> None:
        self.ws = tmp_path / "runs" / "run-1"
        self.peer = tmp_path / "runs" / "run-2"
        self.outside = tmp_path / "outside"
        for d in (self.ws, self.peer, self.outside):
            d.mkdir(parents=True)
            (d / "secret.txt").write_text(SECRET + "\n")
            (d / "only-outside.txt").write_text("")
        (self.ws / "secret.txt").unlink()
        (self.ws / "only-outside.txt").unlink()
        self.workspace = Workspace(self.ws)
        self.ctx = RunContext("run-1", self.ws)

    def outside_untouched(self) -> None:
        """Nothing was created in, or changed under, the two directories outside."""
        for d in (self.outside, self.peer):
            assert sorted(p.name for p in d.iterdir()) == ["only-outside.txt", "secret.txt"]
            assert (d / "secret.txt").read_text() == SECRET + "\n"


@pytest.fixture
def lay(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def read(workspace: Workspace, path: str) -> str:
    fd, _, _ = workspace.open_file(path)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def write(workspace: Workspace, path: str, text: str) -> str:
    fd, shown, _ = workspace.open_file(path, os.O_WRONLY | os.O_CREAT, create_dirs=True)
    with os.fdopen(fd, "wb") as f:
        f.truncate(0)
        f.write(text.encode())
    return shown


# --------------------------------------------------------------------------- links, no race


def test_links_out_to_other_directories_are_refused(lay: Layout) -> None:
    # What sandboxed code can do: links to /etc, to another run's workspace (relative and
    # absolute), to a directory outside, and `up -> ..`.
    (lay.ws / "etc").symlink_to("/etc")
    (lay.ws / "peer").symlink_to("../run-2")
    (lay.ws / "peer_abs").symlink_to(lay.peer)
    (lay.ws / "out").symlink_to(lay.outside)
    (lay.ws / "up").symlink_to("..")
    (lay.ws / "deep").mkdir()
    (lay.ws / "deep/up2").symlink_to("../..")
    paths = ["etc/passwd", "peer/secret.txt", "peer_abs/secret.txt", "out/secret.txt",
             "up/run-2/secret.txt", "deep/up2/outside/secret.txt", "peer", "out", "up",
             str(lay.ws / "peer/secret.txt"), "deep/../peer/secret.txt"]
    for path in paths:
        for open_ in (lay.workspace.open_file, lay.workspace.open_any, lay.workspace.open_dir):
            with pytest.raises(WorkspaceError, match="symbolic link that points outside"):
                open_(path)
        with pytest.raises(WorkspaceError, match="symbolic link that points outside"):
            write(lay.workspace, path, "x")
        with pytest.raises(WorkspaceError, match="symbolic link that points outside"):
            write(lay.workspace, path + "/new/file.txt", "x")
    lay.outside_untouched()


def test_paths_out_without_links_are_refused_and_make_nothing(lay: Layout) -> None:
    # `..` in several spellings, absolute paths elsewhere, and a missing directory followed
    # by `..` (which must not be created before the escape is seen).
    for path in ("..", "../run-2/secret.txt", "new/../../run-2/x", "a/b/../../../outside/x",
                 str(lay.peer / "secret.txt"), "/", str(lay.ws) + "/../outside/secret.txt"):
        with pytest.raises(WorkspaceError, match="it is outside the workspace"):
            lay.workspace.open_any(path)
        with pytest.raises(WorkspaceError, match="it is outside the workspace"):
            write(lay.workspace, path, "x")
    assert list(lay.ws.iterdir()) == []
    lay.outside_untouched()


def test_links_that_stay_inside_are_followed(lay: Layout) -> None:
    (lay.ws / "d/e").mkdir(parents=True)
    (lay.ws / "d/e/f.txt").write_text("inside\n")
    (lay.ws / "alias").symlink_to("d")
    (lay.ws / "abs").symlink_to(lay.ws / "d")
    (lay.ws / "d/e/up").symlink_to("..")
    (lay.ws / "file-link").symlink_to("d/e/f.txt")
    for path in ("alias/e/f.txt", "abs/e/f.txt", "d/e/up/e/f.txt", "file-link",
                 "alias/../d/e/f.txt", str(lay.ws / "abs/e/f.txt")):
        fd, shown, _ = lay.workspace.open_file(path)
        os.close(fd)
        assert shown == "d/e/f.txt", path
        assert read(lay.workspace, path) == "inside\n"
    fd, shown, is_dir = lay.workspace.open_any("alias/e/up")
    os.close(fd)
    assert (shown, is_dir) == ("d", True)


def test_dangling_links_are_not_written_through_to_outside(lay: Layout) -> None:
    (lay.ws / "trap").symlink_to(lay.outside / "created.txt")
    (lay.ws / "trap_rel").symlink_to("../../outside/created.txt")
    (lay.ws / "trap_peer").symlink_to("../run-2/created.txt")
    for path in ("trap", "trap_rel", "trap_peer"):
        with pytest.raises(WorkspaceError, match="symbolic link that points outside"):
            write(lay.workspace, path, "pwned")
    lay.outside_untouched()
    # A dangling link that stays inside creates its target inside.
    (lay.ws / "inner").symlink_to("made/here.txt")
    assert write(lay.workspace, "inner", "ok") == "made/here.txt"
    assert (lay.ws / "made/here.txt").read_text() == "ok"


def test_hard_links_to_outside_files_are_neither_read_nor_written(lay: Layout) -> None:
    os.link(lay.outside / "secret.txt", lay.ws / "hl.txt")
    for attempt in (lambda: read(lay.workspace, "hl.txt"),
                    lambda: write(lay.workspace, "hl.txt", "pwned")):
        with pytest.raises(WorkspaceError, match="hard links"):
            attempt()
    (lay.ws / "hl.txt").unlink()
    lay.outside_untouched()


def test_link_loops_and_link_chains(lay: Layout) -> None:
    (lay.ws / "loop1").symlink_to("loop2")
    (lay.ws / "loop2").symlink_to("loop1")
    with pytest.raises(WorkspaceError, match="too many levels of symbolic links"):
        lay.workspace.open_file("loop1")
    # A chain of links that ends outside is refused however long it is.
    (lay.ws / "c0").symlink_to(lay.outside)
    for i in range(1, 10):
        (lay.ws / f"c{i}").symlink_to(f"c{i - 1}")
    with pytest.raises(WorkspaceError, match="symbolic link that points outside"):
        lay.workspace.open_file("c9/secret.txt")


class _SwapBeforeOpen(Workspace):
    """The real workspace with one interleaving forced: ``swap`` runs after the path was
    resolved and just before the final open (the last moment sandboxed code could act)."""

    def __init__(self, root: Path, swap: Callable[[], None]) -> None:
        super().__init__(root)
        self._swap = swap

    def _open_final(self, res: Any, flags: int, *, directory_ok: bool) -> Any:
        self._swap()
        return super()._open_final(res, flags, directory_ok=directory_ok)


def test_final_name_swapped_for_a_link_after_resolution_is_not_followed(lay: Layout) -> None:
    (lay.ws / "d").mkdir()

    def to_link() -> None:
        (lay.ws / "d/f.txt").unlink(missing_ok=True)
        (lay.ws / "d/f.txt").symlink_to(lay.outside / "secret.txt")

    def to_dangling_link() -> None:
        (lay.ws / "d/f.txt").symlink_to(lay.outside / "created.txt")

    (lay.ws / "d/f.txt").write_text("inside\n")
    swapping = _SwapBeforeOpen(lay.ws, to_link)
    with pytest.raises(WorkspaceError, match="symbolic link"):
        read(swapping, "d/f.txt")
    (lay.ws / "d/f.txt").unlink()
    with pytest.raises(WorkspaceError, match="symbolic link"):  # a new file, made to dangle
        write(_SwapBeforeOpen(lay.ws, to_dangling_link), "d/f.txt", "pwned")
    lay.outside_untouched()


def test_walk_does_not_enter_links(lay: Layout) -> None:
    (lay.ws / "d").mkdir()
    (lay.ws / "d/out").symlink_to(lay.outside)
    (lay.ws / "peer").symlink_to("../run-2")
    fd, _, _ = lay.workspace.open_dir(".")
    seen = [rel + entry.name for rel, entry, _ in walk(fd, recursive=True)]
    assert seen == ["d", "peer", "d/out"]


# --------------------------------------------------------------------------- races


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Let the swapping thread and the tool's worker thread interleave finely."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
exchange_available = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(_LIBC, "renameat2"),
    reason="the race tests swap names atomically with Linux's renameat2(RENAME_EXCHANGE)")


def exchange(a: Path, b: Path) -> None:
    """Swap two names atomically (so the raced name never goes missing)."""
    if _LIBC.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                       _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


class Swapper(threading.Thread):
    """Flips ``path`` between what it is and what ``make_other`` makes (a link, say) with
    atomic exchanges, until stopped: what sandboxed code racing the tools would do. Counts
    the flips; :meth:`finish` stops it and puts the original back."""

    def __init__(self, path: Path, make_other: Callable[[Path], None]) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.other = path.with_name(path.name + ".other")
        make_other(self.other)
        self.stop = threading.Event()
        self.flips = 0

    def run(self) -> None:
        while not self.stop.is_set():
            exchange(self.path, self.other)
            self.flips += 1

    def finish(self) -> None:
        self.stop.set()
        self.join(10)
        if self.flips % 2:
            exchange(self.path, self.other)
        self.other.unlink()


async def race(swapper: Swapper, calls: list[Callable[[], Awaitable[Any]]], rounds: int
               ) -> tuple[list[Any], int]:
    """Make ``rounds`` calls, taking ``calls`` in turn, while ``swapper`` flips; the results
    and how many calls were refused (an error result or ``WorkspaceError``)."""
    results: list[Any] = []
    refused = 0
    swapper.start()
    try:
        for i in range(rounds):
            try:
                result = await calls[i % len(calls)]()
            except WorkspaceError:
                refused += 1
                continue
            results.append(result)
            refused += bool(getattr(result, "is_error", False))
    finally:
        swapper.finish()
    assert swapper.flips > 10
    return results, refused


def tool_call(tool: Any, ctx: RunContext, **arguments: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: tool.run(arguments, ctx)


def link_to(target: Path) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


@exchange_available
@pytest.mark.parametrize("target", ["outside", "peer"])
async def test_race_directory_swapped_for_a_link_while_reading(
        lay: Layout, fast_switching: None, target: str) -> None:
    # A thread swaps the directory `d` for a link to a directory outside (or to another run's
    # workspace) and back, again and again, while read_file, list_files and search_files read
    # through `d`. No read may ever show the secret or name a file outside.
    (lay.ws / "d").mkdir()
    (lay.ws / "d/secret.txt").write_text("inside\n")
    swapper = Swapper(lay.ws / "d", link_to(getattr(lay, target)))
    calls = [tool_call(ReadFileTool(), lay.ctx, path="d/secret.txt"),
             tool_call(ListFilesTool(), lay.ctx, path="d", recursive=True),
             tool_call(ListFilesTool(), lay.ctx, recursive=True),
             tool_call(SearchFilesTool(), lay.ctx, pattern="SECRET|inside", path="d"),
             tool_call(SearchFilesTool(), lay.ctx, pattern="SECRET|inside")]
    results, refused = await race(swapper, calls, 600)
    for result in results:
        assert SECRET not in result.output and "only-outside" not in result.output
    assert any("inside" in r.output for r in results)
    assert refused > 0  # the race was joined, not just watched
    lay.outside_untouched()


@exchange_available
async def test_race_directory_swapped_for_a_link_while_writing(
        lay: Layout, fast_switching: None) -> None:
    # The same swap while write_file creates files (and missing directories) through `d`:
    # nothing may ever be created outside.
    (lay.ws / "d").mkdir()
    swapper = Swapper(lay.ws / "d", link_to(lay.outside))
    calls = [tool_call(WriteFileTool(), lay.ctx, path=path, content="x")
             for path in ("d/w.txt", "d/sub/w.txt", "d/../d/x.txt")]
    results, _ = await race(swapper, calls, 600)
    assert any(not r.is_error for r in results)
    lay.outside_untouched()


@exchange_available
async def test_race_file_swapped_for_links_while_reading_and_writing(
        lay: Layout, fast_switching: None) -> None:
    # The final name `f.txt` flips between a file of the workspace and a symbolic link to the
    # secret outside, then between the file and a hard link of the secret: reads never show
    # the secret and writes never change it.
    (lay.ws / "f.txt").write_text("inside\n")
    secret = lay.outside / "secret.txt"
    for make_other in (link_to(secret), lambda path: os.link(secret, path)):
        swapper = Swapper(lay.ws / "f.txt", make_other)
        calls = [tool_call(ReadFileTool(), lay.ctx, path="f.txt"),
                 tool_call(WriteFileTool(), lay.ctx, path="f.txt", content="inside\n")]
        results, _ = await race(swapper, calls, 600)
        assert all(SECRET not in r.output for r in results)
        lay.outside_untouched()


@exchange_available
async def test_race_through_the_workspace_api_in_threads(lay: Layout,
                                                         fast_switching: None) -> None:
    # The boundary itself from several worker threads at once (as concurrent tool calls run),
    # against a swap of `d` for a link to the other run's workspace.
    (lay.ws / "d").mkdir()
    (lay.ws / "d/secret.txt").write_text("inside\n")
    swapper = Swapper(lay.ws / "d", link_to(lay.peer))

    def many() -> list[str]:
        seen = []
        for i in range(200):
            try:
                seen.append(read(lay.workspace, "d/secret.txt"))
                write(lay.workspace, f"d/n{i % 3}.txt", "x")
            except (WorkspaceError, OSError):
                pass  # refused, or the swap moved a name away mid-walk
        return seen

    async def in_threads() -> list[str]:
        batches = await asyncio.gather(*(asyncio.to_thread(many) for _ in range(3)))
        return [text for batch in batches for text in batch]

    results, _ = await race(swapper, [in_threads], 2)
    assert all(text == "inside\n" for batch in results for text in batch)
    lay.outside_untouched()
