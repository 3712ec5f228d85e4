"""The confinement boundary itself (:mod:`kimi_modes.tools.workspace`): resolving a path a
model gave inside a run's workspace and opening it without following links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kimi_modes.tools import RunContext
from kimi_modes.tools.workspace import WorkspaceError, confine, open_file


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


@pytest.fixture
def ctx(ws: Path) -> RunContext:
    return RunContext("run-test", ws)


def test_link_swapped_in_after_the_check_is_not_followed(ctx: RunContext, ws: Path) -> None:
    # The race the component-wise O_NOFOLLOW open defends against: the check saw a plain
    # directory, the open finds a link. Simulated by opening a resolved target by hand.
    (ws / "d").mkdir()
    (ws / "d/f.txt").write_text("inside\n")
    target = confine(ctx, "d/f.txt")
    (ws / "d/f.txt").unlink()
    (ws / "d").rmdir()
    (ws / "d").symlink_to("/etc")
    with pytest.raises(WorkspaceError, match="symbolic link"):
        open_file(target, os.O_RDONLY)
    (ws / "d").unlink()
    (ws / "d").mkdir()
    (ws / "d/f.txt").symlink_to("/etc/passwd")
    with pytest.raises(WorkspaceError, match=r"not a regular file|symbolic link"):
        open_file(target, os.O_RDONLY)
