"""--from-runs: runs written to a real run store become GSPO rows, checked by their task."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.bench.agents.tasks import load_tasks
from kimi_modes.runs import RunStore
from kimi_modes.train.from_runs import RunFilter, read_trajectories, trajectory_rows
from kimi_modes.train.rewards import TaskCheck
from kimi_modes.train.tasks import scenario_path

SALES = load_tasks(scenario_path("sales"))[0]  # "How much is the Team plan for 25 seats?"


async def _record(store: RunStore, mode: str, owner: str, messages: list[dict[str, Any]],
                  answer: str, status: str = "completed") -> str:
    """One run as the agent loop stores it: a step with a python call and its result, then
    the answer."""
    run = await store.create_run(mode, "kimi-k2-agent", messages, owner=owner)
    await store.emit(run.id, "run_started", {})
    await store.emit(run.id, "step", {"step": 1})
    await store.emit(run.id, "message_delta", {"step": 1, "kind": "content", "text": "Let me"})
    await store.emit(run.id, "tool_call", {"step": 1, "id": "c1", "name": "python",
                                           "arguments": {"code": "print(25*10)"}})
    await store.emit(run.id, "tool_result", {"step": 1, "id": "c1", "output": "250\n",
                                             "is_error": False, "duration": 0.1})
    await store.emit(run.id, "step", {"step": 2})
    await store.emit(run.id, "message_delta", {"step": 2, "kind": "content", "text": answer})
    await store.finish(run.id, status, "answer", {"role": "assistant", "content": answer})
    return run.id


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs.sqlite3"

    async def fill() -> None:
        async with RunStore(path) as store:
            await _record(store, "agent", "alice", SALES.messages, "The Team plan is 250.")
            await _record(store, "swarm", "bob", [{"role": "user", "content": "Plan a trip"}],
                          "Day 1: Rome")
            await _record(store, "agent", "alice", [{"role": "user", "content": "Crash"}],
                          "", status="failed")

    asyncio.run(fill())
    return path


def test_runs_are_read_with_their_steps_by_filter(store_file: Path) -> None:
    every = read_trajectories(store_file, RunFilter(status=None))
    assert len(every) == 3
    completed = read_trajectories(store_file)
    assert [t.mode for t in completed] == ["swarm", "agent"]  # newest first
    alice = read_trajectories(store_file, RunFilter(mode="agent", owner="alice"))
    assert len(alice) == 1 and alice[0].messages == SALES.messages
    assert alice[0].final_answer == "The Team plan is 250."
    call = alice[0].steps[0]["tool_calls"][0]
    assert (call["name"], call["result"]["output"]) == ("python", "250\n")
    assert read_trajectories(store_file, RunFilter(owner="carol")) == []
    with pytest.raises(FileNotFoundError):
        read_trajectories(store_file.with_name("none.sqlite3"))


def test_a_run_takes_its_tasks_checkers_and_becomes_a_prompt(
    store_file: Path, tokenizer: Any
) -> None:
    rows = trajectory_rows(read_trajectories(store_file), tokenizer, tasks=[SALES])
    by_answer = {row["reference"]: row for row in rows}
    sales, trip = by_answer["The Team plan is 250."], by_answer["Day 1: Rome"]
    assert sales["prompt"].endswith("<|im_user|>How much is the Team plan for 25 seats?"
                                    "<|im_end|><|im_assistant|>")
    assert json.loads(sales["check"]) == [{"regex": "(?i)team"}]
    assert json.loads(trip["check"]) == []  # no task: a reward function of your own scores it
    assert json.loads(sales["trajectory"])[0]["tool_calls"][0]["name"] == "python"
    # The task's checker scores completions of the run's prompt.
    reward = TaskCheck(tokenizer, "k2-instruct")
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in ("Team: 250", "no")]
    assert reward(completion_ids=ids, check=[sales["check"]] * 2) == [1.0, 0.0]
    assert reward(completion_ids=ids[:1], check=[trip["check"]]) == [None]


def test_cli_trains_on_stored_runs(store_file: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "run", "--model", str(tiny_model_dir),
         "--output", str(tmp_path / "out"), "--from-runs", str(store_file),
         "--runs-mode", "agent", "--scenario", "sales", "--max-steps", "1",
         "--num-generations", "2", "--gradient-accumulation-steps", "1",
         "--max-completion-length", "4", "--cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "task_check" in done.stdout and "adapter saved" in done.stdout
    empty = subprocess.run(
        [sys.executable, "-m", "kimi_modes", "train", "run", "--model", str(tiny_model_dir),
         "--output", str(tmp_path / "out2"), "--from-runs", str(store_file),
         "--runs-owner", "nobody", "--cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert empty.returncode == 2 and "no runs in" in empty.stderr
