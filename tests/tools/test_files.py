"""Workspace file tools: normal use, limits, and the confinement battery (absolute paths
elsewhere, ``..``, links out of the workspace, special files, the repository's own files)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.tools import RunContext, Toolset
from kimi_modes.tools.files import (
    FileLimits,
    ListFilesTool,
    ReadFileTool,
    SearchFilesTool,
    WriteFileTool,
    file_tools,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


@pytest.fixture
def ctx(ws: Path) -> RunContext:
    return RunContext("run-test", ws)


async def call(tool: Any, ctx: RunContext, **arguments: Any) -> tuple[str, bool]:
    result = await tool.run(arguments, ctx)
    return result.output, result.is_error


# --------------------------------------------------------------------------- normal use


async def test_write_then_read_with_line_numbers(ctx: RunContext, ws: Path) -> None:
    out, err = await call(WriteFileTool(), ctx, path="notes/deep/a.txt",
                          content="alpha\nbeta\ngamma\n")
    assert not err, out
    assert "Wrote 17 bytes to notes/deep/a.txt" in out
    assert (ws / "notes/deep/a.txt").read_text() == "alpha\nbeta\ngamma\n"
    out, err = await call(ReadFileTool(), ctx, path="notes/deep/a.txt")
    assert not err
    assert out == "     1\talpha\n     2\tbeta\n     3\tgamma"


async def test_append_and_overwrite(ctx: RunContext, ws: Path) -> None:
    await call(WriteFileTool(), ctx, path="log.txt", content="one\n")
    await call(WriteFileTool(), ctx, path="log.txt", content="two\n", append=True)
    assert (ws / "log.txt").read_text() == "one\ntwo\n"
    await call(WriteFileTool(), ctx, path="log.txt", content="x")
    assert (ws / "log.txt").read_text() == "x"


async def test_absolute_path_inside_workspace_is_fine(ctx: RunContext, ws: Path) -> None:
    (ws / "f.txt").write_text("hello\n")
    out, err = await call(ReadFileTool(), ctx, path=str(ws / "f.txt"))
    assert not err and "hello" in out


async def test_symlink_inside_workspace_is_followed(ctx: RunContext, ws: Path) -> None:
    (ws / "real.txt").write_text("target\n")
    (ws / "alias.txt").symlink_to("real.txt")
    out, err = await call(ReadFileTool(), ctx, path="alias.txt")
    assert not err and "target" in out


async def test_read_offset_and_limit(ctx: RunContext, ws: Path) -> None:
    (ws / "n.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    out, err = await call(ReadFileTool(), ctx, path="n.txt", offset=10, limit=3)
    assert not err
    assert out.splitlines()[:3] == ["    10\tline 10", "    11\tline 11", "    12\tline 12"]
    assert "offset=13" in out
    out, _ = await call(ReadFileTool(), ctx, path="n.txt", offset=500)
    assert "past the end" in out


async def test_read_char_limit_points_to_next_offset(ctx: RunContext, ws: Path) -> None:
    (ws / "big.txt").write_text("".join(f"{i:04d} " + "x" * 90 + "\n" for i in range(1000)))
    tool = ReadFileTool(FileLimits(read_chars=2000, read_lines=10_000))
    result = await tool.run({"path": "big.txt"}, ctx)
    assert not result.is_error
    assert len(result.output) < 2200
    assert result.meta["truncated"]
    shown = result.meta["lines"]
    assert f"offset={shown + 1}" in result.output


async def test_read_one_enormous_line_is_cut_without_loading_it(ctx: RunContext,
                                                                 ws: Path) -> None:
    (ws / "min.js").write_bytes(b"a" * 5_000_000 + b"\nsecond\n")
    out, err = await call(ReadFileTool(FileLimits(line_chars=100)), ctx, path="min.js")
    assert not err
    first, second = out.splitlines()
    assert first.startswith("     1\t" + "a" * 100) and "more on this line" in first
    assert second == "     2\tsecond"


async def test_binary_file_is_described_not_dumped(ctx: RunContext, ws: Path) -> None:
    (ws / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    out, err = await call(ReadFileTool(), ctx, path="img.png")
    assert not err
    assert "binary file (PNG image, 2568 bytes)" in out
    assert "\x00" not in out and len(out) < 300


async def test_empty_file_and_missing_file(ctx: RunContext, ws: Path) -> None:
    (ws / "empty").write_text("")
    out, err = await call(ReadFileTool(), ctx, path="empty")
    assert not err and "empty" in out
    out, err = await call(ReadFileTool(), ctx, path="nope.txt")
    assert err and "no such file" in out and "list_files" in out


async def test_list_files_flat_recursive_glob(ctx: RunContext, ws: Path) -> None:
    (ws / "src/pkg").mkdir(parents=True)
    (ws / "src/pkg/a.py").write_text("print(1)\n")
    (ws / "src/b.py").write_text("")
    (ws / "README.md").write_text("# hi\n")
    out, err = await call(ListFilesTool(), ctx)
    assert not err
    assert out.splitlines() == ["README.md (5 bytes)", "src/"]
    out, _ = await call(ListFilesTool(), ctx, recursive=True)
    assert out.splitlines() == ["README.md (5 bytes)", "src/", "src/b.py (0 bytes)",
                                "src/pkg/", "src/pkg/a.py (9 bytes)"]
    out, _ = await call(ListFilesTool(), ctx, glob="*.py", recursive=True)
    assert out.splitlines() == ["src/b.py (0 bytes)", "src/pkg/a.py (9 bytes)"]
    out, _ = await call(ListFilesTool(), ctx, path="src", glob="pkg/*")
    assert out.splitlines() == ["src/pkg/a.py (9 bytes)"]
    out, _ = await call(ListFilesTool(), ctx, glob="**/*.md")
    assert out.splitlines() == ["README.md (5 bytes)"]


async def test_list_files_is_bounded(ctx: RunContext, ws: Path) -> None:
    for i in range(30):
        (ws / f"f{i:02d}").write_text("")
    result = await ListFilesTool(FileLimits(list_entries=10)).run({}, ctx)
    assert len(result.output.splitlines()) == 11
    assert "stopped at 10 entries" in result.output and result.meta["truncated"]


async def test_list_files_shows_links_without_entering(ctx: RunContext, ws: Path) -> None:
    (ws / "etc").symlink_to("/etc")
    out, err = await call(ListFilesTool(), ctx, recursive=True)
    assert not err
    assert out.splitlines() == ["etc -> /etc (symbolic link)"]


async def test_search_regex_literal_glob_case(ctx: RunContext, ws: Path) -> None:
    (ws / "a.py").write_text("def foo():\n    return 1\n# TODO fix foo\n")
    (ws / "b.txt").write_text("foo(bar)\nFOO\n")
    (ws / ".git").mkdir()
    (ws / ".git/config").write_text("foo\n")
    out, err = await call(SearchFilesTool(), ctx, pattern=r"def \w+\(")
    assert not err and out == "a.py:1: def foo():"
    out, _ = await call(SearchFilesTool(), ctx, pattern="foo(", literal=True)
    assert out.splitlines() == ["a.py:1: def foo():", "b.txt:1: foo(bar)"]
    out, _ = await call(SearchFilesTool(), ctx, pattern="foo", glob="*.txt", ignore_case=True)
    assert out.splitlines() == ["b.txt:1: foo(bar)", "b.txt:2: FOO"]
    out, _ = await call(SearchFilesTool(), ctx, pattern="return", path="a.py")
    assert out == "a.py:2: return 1"
    out, err = await call(SearchFilesTool(), ctx, pattern="nothing-here")
    assert not err and "No matches" in out


async def test_search_bad_regex_is_an_actionable_error(ctx: RunContext) -> None:
    out, err = await call(SearchFilesTool(), ctx, pattern="foo(")
    assert err and "invalid regular expression" in out and "literal=true" in out


async def test_search_limits(ctx: RunContext, ws: Path) -> None:
    (ws / "many.txt").write_text("hit\n" * 50)
    (ws / "large.txt").write_text("hit\n" * 1000)
    (ws / "bin.dat").write_bytes(b"hit\x00hit\n")
    tool = SearchFilesTool(FileLimits(search_matches=20, search_file_bytes=1000))
    result = await tool.run({"pattern": "hit"}, ctx)
    lines = result.output.splitlines()
    assert sum(1 for line in lines if line.startswith("many.txt:")) == 20
    assert not any(line.startswith(("bin.dat", "large.txt:")) for line in lines)
    assert "stopped at 20 matches" in result.output
    assert "skipped files over 1000 bytes: large.txt" in result.output


async def test_write_limit(ctx: RunContext, ws: Path) -> None:
    tool = WriteFileTool(FileLimits(write_bytes=10))
    out, err = await call(tool, ctx, path="x", content="y" * 11)
    assert err and "limit is 10" in out and not (ws / "x").exists()
    await call(tool, ctx, path="x", content="y" * 8)
    out, err = await call(tool, ctx, path="x", content="yyy", append=True)
    assert err and "pass the 10-byte limit" in out
    assert (ws / "x").read_text() == "y" * 8


async def test_tools_through_toolset_schema(ctx: RunContext, ws: Path) -> None:
    toolset = Toolset(file_tools())
    assert toolset.names == ["read_file", "write_file", "list_files", "search_files"]
    result = await toolset.call("write_file", json.dumps({"path": "t.txt", "content": "ok"}),
                                ctx)
    assert not result.is_error
    result = await toolset.call("read_file", json.dumps({"path": "t.txt", "offset": 0}), ctx)
    assert result.is_error and "invalid arguments" in result.output


# --------------------------------------------------------------------------- confinement


OUTSIDE_READS = [
    "/etc/shadow",
    "/etc/passwd",
    "../outside.txt",
    "a/../../outside.txt",
    "./../ws/../outside.txt",
    str(REPO / "pyproject.toml"),
    str(REPO / "src/kimi_modes/tools/workspace.py"),
    "/proc/self/environ",
    "/",
    "..",
]


@pytest.mark.parametrize("path", OUTSIDE_READS)
async def test_reads_outside_are_refused(ctx: RunContext, ws: Path, path: str) -> None:
    (ws.parent / "outside.txt").write_text("secret\n")
    (ws / "a").mkdir()
    for tool in (ReadFileTool(), ListFilesTool(), SearchFilesTool()):
        args: dict[str, Any] = {"path": path}
        if isinstance(tool, SearchFilesTool):
            args["pattern"] = "."
        result = await tool.run(args, ctx)
        assert result.is_error, (tool.name, path, result.output)
        assert "outside the workspace" in result.output
        assert "secret" not in result.output and "root:" not in result.output


TMP_ESCAPE = Path("/tmp/escape-kimi-modes-test.txt")


def _exists(path: Path) -> bool:
    return path.exists()


@pytest.mark.parametrize("path", ["../escape.txt", str(TMP_ESCAPE),
                                  str(REPO / "escape.txt"), "sub/../../escape.txt"])
async def test_writes_outside_are_refused(ctx: RunContext, ws: Path, path: str) -> None:
    out, err = await call(WriteFileTool(), ctx, path=path, content="x")
    assert err and "outside the workspace" in out
    assert not (ws.parent / "escape.txt").exists()
    assert not _exists(TMP_ESCAPE)
    assert not (REPO / "escape.txt").exists()


async def test_symlink_to_etc_made_in_the_workspace_is_refused(ctx: RunContext,
                                                               ws: Path) -> None:
    # What sandboxed code can do: `ln -s /etc etc; ln -s /etc/shadow shadow`.
    (ws / "etc").symlink_to("/etc")
    (ws / "shadow").symlink_to("/etc/shadow")
    (ws / "up").symlink_to("..")
    for path in ("etc/passwd", "shadow", "etc", "up/outside.txt", str(ws / "etc/hostname")):
        for tool, extra in ((ReadFileTool(), {}), (ListFilesTool(), {}),
                            (SearchFilesTool(), {"pattern": "root"})):
            result = await tool.run({"path": path, **extra}, ctx)
            assert result.is_error, (tool.name, path)
            assert "symbolic link that points outside the workspace" in result.output
    out, err = await call(WriteFileTool(), ctx, path="etc/evil.conf", content="x")
    assert err and "symbolic link" in out
    # Searching the workspace does not enter the link either.
    out, err = await call(SearchFilesTool(), ctx, pattern="root")
    assert not err and "No matches" in out


async def test_dangling_symlink_out_is_not_written_through(ctx: RunContext, ws: Path,
                                                          tmp_path: Path) -> None:
    victim = tmp_path / "created-by-link.txt"
    (ws / "trap").symlink_to(victim)
    out, err = await call(WriteFileTool(), ctx, path="trap", content="pwned")
    assert err and "outside the workspace" in out
    assert not victim.exists()


async def test_symlinked_parent_directory_out_is_refused(ctx: RunContext, ws: Path,
                                                         tmp_path: Path) -> None:
    outside = tmp_path / "outside_dir"
    outside.mkdir()
    (ws / "out").symlink_to(outside)
    out, err = await call(WriteFileTool(), ctx, path="out/new/file.txt", content="x")
    assert err and "symbolic link" in out
    assert list(outside.iterdir()) == []


async def test_special_files_are_refused(ctx: RunContext, ws: Path) -> None:
    os.mkfifo(ws / "pipe")
    out, err = await call(ReadFileTool(), ctx, path="pipe")  # must not block
    assert err and "FIFO" in out
    out, err = await call(WriteFileTool(), ctx, path="pipe", content="x")
    assert err and "FIFO" in out
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(ws / "sock"))
        out, err = await call(ReadFileTool(), ctx, path="sock")
        assert err and "socket" in out
    out, err = await call(ReadFileTool(), ctx, path=".")
    assert err and "directory" in out
    out, err = await call(ListFilesTool(), ctx)
    assert "pipe (a FIFO (named pipe))" in out


async def test_hard_link_is_refused(ctx: RunContext, ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "hl-outside.txt"
    outside.write_text("outside\n")
    os.link(outside, ws / "hl.txt")
    out, err = await call(ReadFileTool(), ctx, path="hl.txt")
    assert err and "hard links" in out
    out, err = await call(WriteFileTool(), ctx, path="hl.txt", content="x")
    assert err and "hard links" in out
    assert outside.read_text() == "outside\n"


async def test_nul_and_link_loops(ctx: RunContext, ws: Path) -> None:
    out, err = await call(ReadFileTool(), ctx, path="a\x00b")
    assert err and "NUL" in out
    (ws / "loop1").symlink_to("loop2")
    (ws / "loop2").symlink_to("loop1")
    out, err = await call(ReadFileTool(), ctx, path="loop1")
    assert err


async def test_missing_workspace_is_an_error_not_a_crash(tmp_path: Path) -> None:
    ctx = RunContext("gone", tmp_path / "never-made")
    out, err = await call(ListFilesTool(), ctx)
    assert err and "workspace is not available" in out
