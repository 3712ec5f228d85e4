"""The lock files of SQLite stores (runs/_locks.py): a crashed process's runs are marked
interrupted by the next store to open the file, and its lock file is swept. (What every
backend does with several processes is in test_run_processes.py.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from kimi_modes.runs import RunStore

USER = [{"role": "user", "content": "What is 2+2? Use the calculator."}]


#: A process that finishes one run, leaves another running and dies: ``python -c CRASH
#: <location> [lease seconds]``; prints the two run ids.
CRASH = textwrap.dedent("""
    import asyncio, os, sys
    from kimi_modes.runs import RunStore

    async def main():
        lease = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
        store = RunStore(sys.argv[1], delta_interval=0.01, lease_seconds=lease)
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
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", CRASH, str(path)],
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
