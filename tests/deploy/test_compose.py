"""The one-node Compose file: valid against the Compose specification's JSON schema, GPUs
assigned without overlap, the gateway's generated config loadable, and the same services
started as processes (the simulated engine standing in for each engine: Docker is not
available here) answering a swarm request through the gateway on the orchestrator and a
worker."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from kimi_modes.config import load_settings
from kimi_modes.deploy.compose import compose, dump
from kimi_modes.deploy.models import model
from kimi_modes.deploy.render import RenderError, Target, checkpoint_for

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())


def _target(key: str, engine: str, tp: int, **kw: Any) -> Target:
    m = model(key)
    return Target(m, checkpoint_for(engine, m), tp=tp, **kw)  # type: ignore[arg-type]


CASES = [("vllm", "k2.5", 4, 1), ("sglang", "k2-thinking", 2, 3), ("trtllm", "k2-instruct", 4, 1),
         ("lmdeploy", "k2-instruct", 8, 0), ("llama.cpp", "k2.5", 1, 7),
         ("ktransformers", "k2.5", 2, 1)]


@pytest.mark.parametrize(("engine", "key", "tp", "workers"), CASES)
def test_compose_file_is_valid_and_assigns_each_gpu_once(
        engine: str, key: str, tp: int, workers: int, tmp_path: Path) -> None:
    document = compose(engine, _target(key, engine, tp, gpus_per_node=8), workers)
    reloaded = yaml.safe_load(dump(document))
    jsonschema.Draft202012Validator(SCHEMA).validate(reloaded)
    assert "version" not in reloaded
    engines = [name for name in reloaded["services"] if name != "gateway"]
    assert engines == ["orchestrator", *(f"worker-{i}" for i in range(1, workers + 1))]
    ids = [i for name in engines for d in
           reloaded["services"][name]["deploy"]["resources"]["reservations"]["devices"]
           for i in d["device_ids"]]
    assert sorted(ids, key=int) == [str(i) for i in range(tp * (workers + 1))]
    for name in engines:
        assert reloaded["services"][name]["healthcheck"]["test"][0] == "CMD-SHELL"
        assert "models:/models" in reloaded["services"][name]["volumes"]
    gw = reloaded["services"]["gateway"]
    assert set(gw["depends_on"]) == set(engines)
    path = tmp_path / "kimi-modes.toml"
    path.write_text(reloaded["configs"]["gateway"]["content"])
    settings = load_settings(path)
    assert [u.name for u in settings.upstreams] == engines
    assert settings.swarm.orchestrator_upstreams == ["orchestrator"]
    assert settings.swarm.worker_upstreams == (engines[1:] or ["orchestrator"])
    assert settings.upstreams[0].url == f"http://orchestrator:{_port(reloaded, engine)}/v1"


def _port(document: dict[str, Any], engine: str) -> int:
    args = document["services"]["orchestrator"]["command"]
    flag = "--port" if "--port" in args else "--server-port"
    return int(args[args.index(flag) + 1]) if flag in args else 8000


def test_trtllm_yaml_travels_as_a_compose_config() -> None:
    document = compose("trtllm", _target("k2-instruct", "trtllm", 8), 0)
    mount, = document["services"]["orchestrator"]["configs"]
    assert mount["target"] == "/config/trtllm.yaml"
    assert "tensor_parallel_size: 8" in document["configs"][mount["source"]]["content"]


def test_too_many_replicas_or_a_multi_node_replica_is_refused() -> None:
    with pytest.raises(RenderError, match="GPUs, but the node has 8"):
        compose("vllm", _target("k2.5", "vllm", 8), 1)
    with pytest.raises(RenderError, match="Kubernetes"):
        compose("vllm", _target("k2.5", "vllm", 8, pp=2), 0)
    with pytest.raises(RenderError, match="Kubernetes dynamo stack"):
        compose("dynamo", _target("k2.5", "dynamo", 8), 0)


def test_a_k3_stack_gets_a_gateway_config_that_loads_with_its_family() -> None:
    target = _target("k3", "vllm", 8)
    config = tomllib.loads(compose("vllm", target, 0)["configs"]["gateway"]["content"])
    assert {u["family"] for u in config["upstreams"]} == {"k3"}


ORCH = {"tool": "spawn_subagents"}
SUB = {"system": "sub-agent of an agent swarm"}
RULES = [
    {"match": {**ORCH, "after_tool": True}, "reply": {"content": "Merged."}},
    {"match": {**ORCH, "after_tool": False},
     "reply": {"tool_calls": [{"name": "spawn_subagents",
                               "arguments": {"tasks": ["Topic 1", "Topic 2"]}}]}},
    {"match": SUB, "reply": {"content": "Done."}},
]


@pytest.mark.slow
def test_the_compose_services_as_processes_serve_a_swarm_through_the_gateway(
        tmp_path: Path, start_simulator: Callable[..., Any],
        start_gateway: Callable[..., Any]) -> None:
    target = _target("k2.5", "vllm", 4, gpus_per_node=8)
    document = compose("vllm", target, 1)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}))
    sims = {}
    for name, service in document["services"].items():
        if name == "gateway":
            continue
        served = service["command"][service["command"].index("--served-model-name") + 1]
        sims[name] = start_simulator("--ttft", "0", "--tpot", "0", "--model", served,
                                     "--family", target.model.family, "--script", str(script))
    document = compose("vllm", target, 1, url=lambda service, port: sims[service].v1)
    gw = start_gateway(document["configs"]["gateway"]["content"])
    models = httpx.get(gw.v1 + "/models", timeout=10).json()["data"]
    assert "kimi-k2.5-swarm" in {m["id"] for m in models}
    reply = httpx.post(gw.v1 + "/chat/completions", timeout=120, json={
        "model": "kimi-k2.5-swarm", "messages": [{"role": "user", "content": "Two topics."}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "Merged."
    stats = {name: httpx.get(sim.url + "/sim/stats", timeout=5).json()
             for name, sim in sims.items()}
    chat = "/v1/chat/completions"
    assert stats["orchestrator"]["by_path"].get(chat, 0) >= 2  # the fan-out, the merge
    assert stats["worker-1"]["by_path"].get(chat, 0) >= 2  # one per sub-agent
