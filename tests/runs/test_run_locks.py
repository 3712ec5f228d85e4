"""Several processes on one SQLite runs database (runs/_locks.py): a crashed process's runs
are marked interrupted (at the next open, or by a store already open, on its next beat) and
its lock swept, an open store's runs are left alone, another process follows a run by polling
and cancels it through the database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from kimi_modes.runs import RunStore

USER = [{"role": "user", "content": "What is 2+2? Use the calculator."}]


_CRASH = textwrap.dedent("""
    import asyncio, os, sys
    from kimi_modes.runs import RunStore

    async def main():
        store = RunStore(sys.argv[1], delta_interval=0.01)
        await store.open()
        done = await store.create_run("agent", "m", [{"role": "user", "content": "a"}])
        await store.finish(done.id, "completed", "answer", "fine")
        run = await store.create_run("agent", "m", [{"role": "user", "content": "b"}])
        await store.emit(run.id, "run_started", {})
        await store.emit(run.id, "step", {"step": 1})
        await store.emit(run.id, "message_delta", {"step": 1, "kind": "content", "text": "x"})
        await asyncio.sleep(0.2)
        await store.emit(run.id, "tool_call", {"step": 1, "id": "c", "name": "n",
                                               "arguments": "{}"})
        print(done.id, run.id, flush=True)
        os._exit(0)  # no close(): a crash

    asyncio.run(main())
""")


async def test_a_crashed_process_leaves_its_runs_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _CRASH, str(path)],
                                   capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    done_id, run_id = proc.stdout.split()
    async with RunStore(path) as store:
        done = await store.get(done_id)
        assert done is not None and done.status == "completed" and done.final_answer == "fine"
        record = await store.get(run_id)
        assert record is not None and record.status == "interrupted"
        assert record.finished_at is not None
        events = await store.events(run_id)
        assert [e.type for e in events] == ["run_started", "step", "message_delta",
                                            "tool_call", "finished"]
    # The dead process's lock file was swept; ours went with close().
    assert list((tmp_path / "runs.sqlite3.stores").glob("*.lock")) == []


async def test_runs_of_another_open_store_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path, lease_seconds=0.3) as gateway:
        run = await gateway.create_run("agent", "m", USER)
        await gateway.emit(run.id, "run_started", {})
        async with RunStore(path, lease_seconds=0.3) as terminal:  # e.g. `kimi-modes run`
            assert await terminal.status(run.id) == "running"
            await asyncio.sleep(0.5)  # a few beats of both: the open owner is left alone
            assert await terminal.status(run.id) == "running"
        await gateway.emit(run.id, "step", {"step": 1})
        assert await gateway.finish(run.id, "completed", "answer", "ok")


async def test_another_process_cancels_a_run_through_the_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path, lease_seconds=0.3) as gateway:
        run = await gateway.create_run("agent", "m", USER)
        await gateway.emit(run.id, "run_started", {})
        cancelled = asyncio.Event()
        gateway.register_cancel(run.id, cancelled.set)
        async with RunStore(path, poll_interval=0.05) as terminal:
            assert await terminal.cancel(run.id) is True
            # The owner acts on the request on its next beat.
            await asyncio.wait_for(cancelled.wait(), 30)
            await gateway.finish(run.id, "cancelled", "cancelled")
            assert await terminal.wait(run.id, 30) is True
            assert await terminal.status(run.id) == "cancelled"
            assert await terminal.cancel(run.id) is False


async def test_a_crash_is_noticed_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path, lease_seconds=0.3, poll_interval=0.05) as survivor:
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", _CRASH, str(path)],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        done_id, run_id = proc.stdout.split()
        assert await survivor.wait(run_id, 30) is True
        record = await survivor.get(run_id)
        assert record is not None and record.status == "interrupted"
        assert (await survivor.status(done_id)) == "completed"


async def test_another_process_follows_a_run_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path) as owner, RunStore(path, poll_interval=0.05) as watcher:
        run = await owner.create_run("agent", "m", USER)
        await owner.emit(run.id, "run_started", {})
        async def follow() -> list[str]:
            async with await watcher.subscribe(run.id) as sub:
                return [event.type async for event in sub]

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        await owner.emit(run.id, "step", {"step": 1})
        await owner.finish(run.id, "completed", "answer", "ok")
        seen = await asyncio.wait_for(task, 30)  # a hang guard, generous under load
    assert seen == ["run_started", "step", "finished"]
