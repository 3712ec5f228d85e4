"""Several processes on one runs database, on both backends: a crashed process's runs are
marked interrupted by a store that is already open (within the lease, no restart), an open
store's runs are left alone, another process follows a run as it happens and cancels it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from test_run_locks import CRASH

from kimi_modes.runs import RunStore

USER = [{"role": "user", "content": "What is 2+2? Use the calculator."}]


async def test_a_crash_is_noticed_within_the_lease(location: str) -> None:
    async with RunStore(location, lease_seconds=1.0, poll_interval=0.05) as survivor:
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", CRASH, location, "1.0"],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        done_id, run_id = proc.stdout.split()
        died = time.monotonic()
        assert await survivor.wait(run_id, 30) is True
        # The lease (1 s) plus a beat (1/3 s), with room for a loaded machine.
        assert time.monotonic() - died < 10
        record = await survivor.get(run_id)
        assert record is not None and record.status == "interrupted"
        assert record.stop_reason == "interrupted" and record.finished_at is not None
        events = await survivor.events(run_id)
        assert [e.type for e in events] == ["run_started", "step", "message_delta",
                                            "tool_call", "finished"]
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        # Nothing finished is lost.
        done = await survivor.get(done_id)
        assert done is not None and done.status == "completed" and done.final_answer == "fine"


async def test_runs_of_another_open_store_are_left_alone(location: str) -> None:
    async with RunStore(location, lease_seconds=0.3) as gateway:
        run = await gateway.create_run("agent", "m", USER)
        await gateway.emit(run.id, "run_started", {})
        async with RunStore(location, lease_seconds=0.3) as terminal:  # `kimi-modes run`
            assert await terminal.status(run.id) == "running"
            await asyncio.sleep(1.0)  # several beats of both: the live owner is left alone
            assert await terminal.status(run.id) == "running"
        await gateway.emit(run.id, "step", {"step": 1})
        assert await gateway.finish(run.id, "completed", "answer", "ok")
        record = await gateway.get(run.id)
        assert record is not None and record.status == "completed"


async def test_another_process_follows_a_run_as_it_happens(location: str) -> None:
    async with RunStore(location) as owner, RunStore(location, poll_interval=0.05) as watcher:
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
        # Re-attaching after a seq (Last-Event-ID) from the other process is exact.
        async with await watcher.subscribe(run.id, after_seq=1) as sub:
            assert [e.seq async for e in sub] == [2, 3]


async def test_another_process_cancels_a_run(location: str) -> None:
    async with RunStore(location, lease_seconds=0.3) as gateway:
        run = await gateway.create_run("agent", "m", USER)
        await gateway.emit(run.id, "run_started", {})
        cancelled = asyncio.Event()
        gateway.register_cancel(run.id, cancelled.set)
        async with RunStore(location, poll_interval=0.05) as terminal:
            assert await terminal.cancel(run.id) is True
            await asyncio.wait_for(cancelled.wait(), 30)
            await gateway.finish(run.id, "cancelled", "cancelled")
            assert await terminal.wait(run.id, 30) is True
            assert await terminal.status(run.id) == "cancelled"
            assert await terminal.cancel(run.id) is False
