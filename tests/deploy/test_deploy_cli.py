"""``kimi-modes deploy`` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

#: The keys the issue fixes, then the ones we add; order included.
STABLE_KEYS = ["fits", "min_gpus", "weights_bytes", "kv_bytes_per_token", "kv_dtype",
               "max_tokens_in_cache", "parallelism", "engine", "reasons", "model",
               "checkpoint", "hardware", "context", "concurrency", "concurrent_sequences",
               "placement"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kimi_modes", "deploy", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_plan_json_keys_are_stable() -> None:
    done = run("plan", "--model", "k2.5", "--gpu", "h200", "--gpus-per-node", "8", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert list(data) == STABLE_KEYS
    assert data["fits"] is True and data["min_gpus"] == 8
    assert data["kv_bytes_per_token"] == 70_272 and data["kv_dtype"] == "bf16"
    assert data["parallelism"] == {"tp": 8, "pp": 1, "dp": 1, "ep": 1, "nodes": 1, "gpus": 8}
    assert data["engine"] == "vllm" and all(isinstance(r, str) for r in data["reasons"])
    assert data["weights_bytes"] == 595_000_000_000


def test_plan_that_does_not_fit_exits_1_with_the_reason() -> None:
    done = run("plan", "-m", "k2.5", "-g", "mi355", "--gpus", "4", "-q", "bf16")
    assert done.returncode == 1
    assert "fits: no" in done.stdout and "477.9 GiB per GPU > 249.2 GiB usable" in done.stdout


def test_plan_on_macs_shows_the_placement_in_json() -> None:
    done = run("plan", "-m", "k2.6", "-g", "m3-ultra-512", "--nodes", "2", "-q", "mlx-3bit",
               "--json")
    assert done.returncode == 0, done.stderr
    placement = json.loads(done.stdout)["placement"]
    assert [(s["start_layer"], s["end_layer"]) for s in placement] == [(0, 31), (31, 61)]


def test_bad_requests_exit_2_with_one_line() -> None:
    for args in (("-m", "k2.5", "-g", "a100"), ("-m", "k2.5", "-g", "h100", "-q", "nvfp4"),
                 ("-m", "k2.5", "-g", "h200", "--kv-dtype", "int8"),
                 ("-m", "k2.5", "-g", "m3-ultra-1024")):
        done = run("plan", *args)
        assert done.returncode == 2, args
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_exo_cards_print_toml() -> None:
    done = run("exo-cards")
    assert done.returncode == 0
    cards = [tomllib.loads(block) for block in done.stdout.split("\n\n") if block.strip()]
    assert len(cards) == 8
    assert {c["n_layers"] for c in cards} == {61}
