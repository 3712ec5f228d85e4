"""The finding, end to end: a gateway started the way process managers start it, holding an
inheritable descriptor of the directory with its configuration (``flock DIR kimi-modes serve``
does that, as does a shell's ``exec 3<DIR``), runs an agent whose sandboxed python reads
through every descriptor number. ``serve`` runs uvloop, which ignores ``close_fds``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

SECRET = "upstream-key-4f1c9a"
PROBE = r'''
import json, os
seen = {}
for name in sorted(os.listdir("/proc/self/fd"), key=int):
    try:
        seen[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        seen[name] = "gone"
found = []
for fd in range(3, 256):
    try:
        found.append(open("kimi.toml", opener=lambda p, f: os.open(p, f, dir_fd=fd)).read())
    except OSError:
        pass
print(json.dumps({"fds": seen, "found": found}))
'''
RULES = [
    {"name": "probe", "match": {"user": "(?i)probe", "step": 0},
     "reply": {"tool_calls": [{"name": "python", "arguments": {"code": PROBE}}]}},
    {"name": "done", "match": {"after_tool": True}, "reply": {"content": "done"}},
]


def test_sandboxed_code_cannot_use_the_gateways_inherited_descriptors(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any], upstream_toml: Callable[..., str]) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "kimi.toml").write_text(f'# api_key = "{SECRET}"\n')
    (config_dir / "kimi.toml").chmod(0o644)  # readable by the sandbox's host user, as the
    for folder in (tmp_path, config_dir):    # gateway's own files are when it is not root
        folder.chmod(0o755)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sim = start_simulator("--ttft", "0", "--tpot", "0.002", "--script", str(script))
    fd = os.open(config_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        gw = start_gateway(upstream_toml(sim.v1) + "[agent]\nmax_time = 120\n",
                           pass_fds=(fd,))
    finally:
        os.close(fd)
    # The gateway still holds the descriptor (a lock through it would stay held), sealed.
    with open(f"/proc/{gw.process.pid}/fdinfo/{fd}") as info:
        flags = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
    assert flags & os.O_CLOEXEC

    client = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0, timeout=60)
    answer = client.chat.completions.create(
        model="kimi-k2.5-agent", messages=[{"role": "user", "content": "probe the sandbox"}])
    assert answer.choices[0].message.content is not None
    run = httpx.get(gw.v1 + "/runs").json()["data"][0]
    detail = httpx.get(gw.v1 + f"/runs/{run['id']}").json()
    output = next(call["result"]["output"] for step in detail["steps"]
                  for call in step["tool_calls"] if call["name"] == "python")
    report = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    assert SECRET not in output
    assert report["found"] == []
    extra = {n: target for n, target in report["fds"].items() if int(n) > 2}
    assert str(config_dir) not in json.dumps(extra)
    assert len(extra) <= 3, extra  # its listing, and the two pipes to its supervisor
