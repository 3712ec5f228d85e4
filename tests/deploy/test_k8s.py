"""Kubernetes manifests per stack, validated against the Kubernetes OpenAPI schemas
(kubernetes-validate's strict JSON schemas) and the CRDs' own schemas (LeaderWorkerSet,
InferencePool, LLMInferenceService), made strict as the API server's field validation is; the
gateway's generated configuration loads; the upstream is the router where there is one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kimi_modes.config import load_settings
from kimi_modes.deploy.compose import dump
from kimi_modes.deploy.k8s import STACKS, manifests
from kimi_modes.deploy.models import model
from kimi_modes.deploy.render import RenderError, Target, checkpoint_for

SCHEMAS = Path(__file__).parent / "schemas"
_K8S = json.loads((SCHEMAS / "kubernetes-strict.json").read_text())


def _strict(node: Any) -> Any:
    """A CRD schema as the API server enforces it with strict field validation: an object
    with ``properties`` and no ``additionalProperties`` or preserve-unknown-fields marker
    takes no other keys."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _crd(name: str) -> tuple[str, dict[str, Any]]:
    data = json.loads((SCHEMAS / f"{name}.json").read_text())
    return data["kind"], {"apiVersion": data["apiVersion"], "schema": _strict(data["schema"])}


CRDS = dict(_crd(name) for name in ("leaderworkerset", "inferencepool", "llminferenceservice"))

# The outer shape of ai-dynamo 1.6.1's example DGD (dynamo/profiler/templates/dgd/vllm/agg.yaml):
# the CRD is not vendored (see schemas/README.md).
DGD_COMPONENT_KEYS = {"name", "type", "replicas", "podTemplate"}


def _validate(obj: dict[str, Any]) -> None:
    kind = obj["kind"]
    if kind in _K8S["kinds"]:
        schema = {"$ref": f"#/$defs/{_K8S['kinds'][kind]}", "$defs": _K8S["$defs"]}
    elif kind in CRDS:
        assert obj["apiVersion"] == CRDS[kind]["apiVersion"]
        schema = CRDS[kind]["schema"]
    else:
        assert kind == "DynamoGraphDeployment" and obj["apiVersion"] == "nvidia.com/v1beta1"
        for component in obj["spec"]["components"]:
            assert set(component) == DGD_COMPONENT_KEYS
            pod = {"$ref": "#/$defs/io.k8s.api.core.v1.PodSpec", "$defs": _K8S["$defs"]}
            jsonschema.Draft202012Validator(pod).validate(component["podTemplate"]["spec"])
        return
    jsonschema.Draft202012Validator(schema).validate(obj)


def _target(key: str = "k2.5", tp: int = 8, pp: int = 1) -> Target:
    m = model(key)
    return Target(m, checkpoint_for("vllm", m), tp=tp, pp=pp)


def _config(objects: list[dict[str, Any]], tmp_path: Path) -> Any:
    config_map, = (o for o in objects if o["kind"] == "ConfigMap")
    path = tmp_path / "kimi-modes.toml"
    path.write_text(config_map["data"]["kimi-modes.toml"])
    return load_settings(path)


CASES = [(stack, engine, pp) for stack in STACKS
         for engine, pp in (("vllm", 1), ("vllm", 2), ("sglang", 2))
         if not (stack == "dynamo" and pp > 1) and (stack in ("lws", "llm-d") or engine == "vllm")]


@pytest.mark.parametrize(("stack", "engine", "pp"), CASES)
def test_every_stack_validates(stack: str, engine: str, pp: int, tmp_path: Path) -> None:
    objects = manifests(engine, _target(pp=pp), 2, stack=stack)  # type: ignore[arg-type]
    reloaded = list(yaml.safe_load_all("---\n".join(dump(o) for o in objects)))
    for obj in reloaded:
        _validate(obj)
    settings = _config(reloaded, tmp_path)
    routed = stack != "lws"
    assert [u.name for u in settings.upstreams] == (
        ["router"] if routed else ["orchestrator", "worker-1", "worker-2"])
    deployment, = (o for o in reloaded if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_the_strict_schemas_catch_a_misspelt_field() -> None:
    objects = manifests("vllm", _target(pp=2), 0, stack="lws")
    lws = next(o for o in objects if o["kind"] == "LeaderWorkerSet")
    lws["spec"]["leaderWorkerTemplate"]["sizes"] = 2
    with pytest.raises(jsonschema.ValidationError, match="sizes"):
        _validate(lws)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(jsonschema.ValidationError, match="readinesProbe"):
        _validate(deployment)


def test_lws_spans_nodes_with_a_leader_and_headless_workers() -> None:
    objects = manifests("vllm", _target(pp=2), 1, stack="lws")
    lws = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    assert [o["spec"]["replicas"] for o in lws] == [1, 1]
    template = lws[0]["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert "--headless" in worker["args"] and "--headless" not in leader["args"]
    assert "startupProbe" in leader and "readinessProbe" not in worker
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == "8"
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert {"kimi-orchestrator-0", "kimi-worker-0", "kimi-modes"} <= services


def test_routed_stacks_point_the_gateway_at_the_router(tmp_path: Path) -> None:
    objects = manifests("vllm", _target(), 3, stack="llm-d",
                        router_url="http://gw.inference.svc/v1")
    settings = _config(objects, tmp_path)
    assert [u.url for u in settings.upstreams] == ["http://gw.inference.svc/v1"]
    assert settings.swarm.worker_upstreams == ["router"]
    pool, = (o for o in objects if o["kind"] == "InferencePool")
    lws, = (o for o in objects if o["kind"] == "LeaderWorkerSet")
    assert lws["spec"]["replicas"] == 4
    labels = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"]["llm-d.ai/inference-serving"] == labels[
        "llm-d.ai/inference-serving"]
    kserve, = (o for o in manifests("vllm", _target(), 1, stack="kserve")
               if o["kind"] == "LLMInferenceService")
    extra = kserve["spec"]["template"]["containers"][0]["env"][0]
    assert extra["name"] == "VLLM_ADDITIONAL_ARGS" and "--tool-call-parser kimi_k2" in extra[
        "value"]


def test_the_gateway_runs_one_replica_on_sqlite_unless_it_has_the_shared_store() -> None:
    from kimi_modes.deploy.gateway import supports
    objects = manifests("vllm", _target(), 0, store_url="postgresql://u:p@db/kimi",
                        gateway_replicas=3)
    deployment, = (o for o in objects if o["kind"] == "Deployment")
    secret, = (o for o in objects if o["kind"] == "Secret")
    if supports("store"):
        assert deployment["spec"]["replicas"] == 3
        assert secret["stringData"]["KIMI_MODES_STORE__URL"] == "postgresql://u:p@db/kimi"
    else:
        assert deployment["spec"]["replicas"] == 1
        assert "KIMI_MODES_STORE__URL" not in secret["stringData"]
        assert any(o["metadata"]["name"] == "kimi-modes-runs" for o in objects)


def test_stacks_refuse_engines_they_do_not_run() -> None:
    with pytest.raises(RenderError, match="vllm or sglang"):
        manifests("trtllm", _target(), 1, stack="lws")
    with pytest.raises(RenderError, match="one worker per node"):
        manifests("vllm", _target(pp=2), 1, stack="dynamo")
