"""The gateway answers as its published OpenAPI document says: schemathesis generates valid
and invalid requests for every operation of ``GET /openapi.json`` (the chat APIs, the models,
health, metrics, the runs API) against a real gateway with API keys, Agent and Swarm modes and
the simulated engine upstream. No answer may be a server error, every status and media type
must be documented, every body must match its schema, and every 4xx must carry the error body
of the API the route belongs to (Anthropic's on ``/v1/messages``, OpenAI's elsewhere: the
check is in tests/e2e/openapi_hooks.py).

Schemathesis runs as its own command (``python -m schemathesis.cli run``), the way CI would run
it against a deployed gateway, with a bounded number of examples per operation."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

KEY = "sk-openapi"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "errors_in_the_api_shape")
CONFIG = f"""
seed = 20260101
hooks = "openapi_hooks"
headers = {{ Authorization = "Bearer {KEY}" }}
request-timeout = 60
workers = 1
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large", "large_base_example"]

[generation]
mode = "all"
max-examples = 30

[phases.stateful]
enabled = false

[checks]
enabled = false
""" + "".join(f"{name}.enabled = true\n" for name in CHECKS)


def test_the_gateway_answers_as_its_openapi_document_says(
        tmp_path: Path, start_simulator: Callable[..., Any], start_gateway: Callable[..., Any],
        upstream_toml: Callable[..., str]) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway(f'[server]\napi_keys = ["{KEY}"]\n'
                       + upstream_toml(sim.v1, extra="read_timeout = 30\n")
                       + "[agent]\nmax_time = 30\n[swarm]\ncooldown = 1.0\n")
    runs = []
    for model in ("kimi-k2.5-agent", "kimi-k2.5-swarm"):  # runs for /v1/runs to find
        answer = httpx.post(gw.v1 + "/chat/completions", headers=AUTH, timeout=60, json={
            "model": model, "messages": [{"role": "user", "content": "Say hello."}]})
        assert answer.status_code == 200, answer.text
        runs.append("run_" + answer.json()["id"].removeprefix("chatcmpl-"))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    here = str(Path(__file__).parent)
    env = {**os.environ, "OPENAPI_RUN_IDS": ",".join(runs), "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         gw.url + "/openapi.json", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-20000:] + "\n--- gateway log ---\n" + gw.output()[-5000:]
