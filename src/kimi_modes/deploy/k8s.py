"""A cluster as Kubernetes manifests: the gateway and the engines, per stack.

The gateway is always the same four objects plus its store: a ConfigMap with the
configuration generated for the stack (:mod:`.gateway`), a Secret with its API key (and the
shared run store's URL), a Deployment with readiness and liveness probes on ``/health``, and a
Service. With the shared PostgreSQL store (``KIMI_MODES_STORE__URL``, where the gateway's
settings have ``[store]``) it runs ``gateway_replicas`` replicas; without it one replica on a
PersistentVolumeClaim holding the SQLite store.

The engines, by ``stack``:

* ``lws``: vLLM or SGLang, each replica a LeaderWorkerSet group of ``target.nodes`` pods
  (leader = node 0 serving HTTP, workers headless); one LeaderWorkerSet for the orchestrator
  and one of N groups for the workers, a Service per group's leader, and the gateway's own
  pool spreading sub-agents over them.
* ``llm-d``: one LeaderWorkerSet of 1 + N groups labelled for an ``InferencePool``
  (``inference.networking.k8s.io/v1``) whose endpoint picker (llm-d's router, installed with
  its Helm chart) picks the replica; the gateway has one upstream, the inference gateway, with
  ``router = true``.
* ``kserve``: one ``LLMInferenceService`` (``serving.kserve.io/v1alpha2``) with
  ``router: {scheduler, route, gateway}`` (KServe creates the pool, picker and route).
* ``dynamo``: one ``DynamoGraphDeployment`` (``nvidia.com/v1beta1``): Dynamo's frontend with
  its KV router and 1 + N vLLM workers.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from kimi_modes.deploy import gateway, render
from kimi_modes.deploy.render import MODELS_DIR, Launch, RenderError, Target

Stack = Literal["lws", "llm-d", "kserve", "dynamo"]
STACKS: tuple[Stack, ...] = ("lws", "llm-d", "kserve", "dynamo")
APP = "kimi-modes"
#: Port of llm-d's endpoint picker (Envoy ext-proc), as the GIE protocol fixes it.
EPP_PORT = 9002
#: How long an engine may take to load its weights before its startup probe gives up.
STARTUP_SECONDS = 3600

Manifest = dict[str, Any]


def _meta(name: str, component: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": {"app.kubernetes.io/name": APP,
                                     "app.kubernetes.io/component": component, **labels}}


def _probe(path: str, port: int, *, period: int = 10, failures: int = 3) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
            "failureThreshold": failures}


def _port(command: Launch) -> int:
    if command.port is None:
        raise RenderError(f"{command.engine} has no HTTP port to probe")
    return command.port


def engine_pod(command: Launch, target: Target, *, worker: bool = False,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod template running ``command`` (its node-0 form, or the other nodes' form with
    ``worker``): the GPUs of one node (or the replica's, if fewer), the weights volume,
    ``/dev/shm`` in memory, and on node 0 startup/readiness probes on its health path."""
    gpus = min(target.tp * target.pp, target.gpus_per_node)
    args = command.worker_args if worker and command.worker_args is not None else command.args
    container: dict[str, Any] = {
        "name": "engine", "image": command.image, "command": list(command.program),
        "args": list(args),
        "env": [{"name": k, "value": v} for k, v in command.env.items()],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)},
                      "requests": {"nvidia.com/gpu": str(gpus)}},
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if not worker:
        port = _port(command)
        container["ports"] = [{"name": "http", "containerPort": port}]
        container["startupProbe"] = _probe(command.health_path, port, period=30,
                                           failures=STARTUP_SECONDS // 30)
        container["readinessProbe"] = _probe(command.health_path, port)
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": APP, **(labels or {})}},
        "spec": {"containers": [container], "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": "kimi-models"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}}]},
    }


def leader_worker_set(name: str, command: Launch, target: Target, replicas: int,
                      labels: dict[str, str] | None = None) -> Manifest:
    """A LeaderWorkerSet of ``replicas`` groups, each one replica over ``target.nodes`` pods
    (``RecreateGroupOnPodRestart``: a lost rank restarts its group)."""
    template: dict[str, Any] = {
        "size": target.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
        "workerTemplate": engine_pod(command, target, worker=target.nodes > 1, labels=labels),
    }
    if target.nodes > 1:
        template["leaderTemplate"] = engine_pod(command, target, labels=labels)
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": _meta(name, "engine"),
            "spec": {"replicas": replicas, "leaderWorkerTemplate": template}}


def leader_service(lws: str, group: int, port: int) -> Manifest:
    """A Service in front of group ``group``'s leader (node 0) of LeaderWorkerSet ``lws``."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(f"{lws}-{group}", "engine"),
            "spec": {"selector": {"leaderworkerset.sigs.k8s.io/name": lws,
                                  "leaderworkerset.sigs.k8s.io/group-index": str(group),
                                  "leaderworkerset.sigs.k8s.io/worker-index": "0"},
                     "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def models_claim(target: Target) -> Manifest:
    """The weights' volume, shared by every engine pod (ReadWriteMany; filled by the first
    engine that downloads them). Sized at the checkpoint plus a tenth."""
    size = -(-target.checkpoint.weights_bytes * 11 // 10 // 10**9)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta("kimi-models", "weights"),
            "spec": {"accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": f"{size}G"}}}}


def gateway_objects(upstreams: tuple[list[gateway.Upstream], list[gateway.Upstream]], *,
                    replicas: int, image: str, api_key: str | None = None,
                    store_url: str | None = None) -> list[Manifest]:
    """ConfigMap, Secret, (PVC,) Deployment and Service of the gateway. ``api_key``: the
    gateway's key (a fresh random one when ``None``); ``store_url``: the shared run store
    (``postgresql://...``), used only where the gateway has ``[store]``, and then
    ``replicas`` apply; otherwise one replica on a PVC."""
    config = gateway.toml(gateway.settings(*upstreams))
    shared = store_url is not None and gateway.supports("store")
    secret: dict[str, str] = {"KIMI_MODES_SERVER__API_KEYS":
                              f'["{api_key or secrets.token_urlsafe(32)}"]'}
    if shared:
        assert store_url is not None
        secret["KIMI_MODES_STORE__URL"] = store_url
    data_volume: dict[str, Any] = (
        {"name": "data", "emptyDir": {}} if shared
        else {"name": "data", "persistentVolumeClaim": {"claimName": "kimi-modes-runs"}})
    port = gateway.GATEWAY_PORT
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "gateway"}
    deployment: Manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(APP, "gateway"),
        "spec": {
            "replicas": replicas if shared else 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{
                    "name": "gateway", "image": image,
                    "command": ["kimi-modes", "serve", "--config",
                                "/etc/kimi-modes/kimi-modes.toml"],
                    "ports": [{"name": "http", "containerPort": port}],
                    "envFrom": [{"secretRef": {"name": APP}}],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/kimi-modes"},
                                     {"name": "data", "mountPath": gateway.DATA_DIR}],
                    "readinessProbe": _probe("/health", port),
                    "livenessProbe": _probe("/health", port, period=20),
                }],
                "volumes": [{"name": "config", "configMap": {"name": APP}}, data_volume],
            }},
        },
    }
    if not shared:
        deployment["spec"]["strategy"] = {"type": "Recreate"}  # one writer of the SQLite file
    objects: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(APP, "gateway"),
         "data": {"kimi-modes.toml": config}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(APP, "gateway"),
         "type": "Opaque", "stringData": secret},
    ]
    if not shared:
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": _meta("kimi-modes-runs", "gateway"),
                        "spec": {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": "20Gi"}}}})
    objects += [deployment, {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(APP, "gateway"),
        "spec": {"selector": labels, "ports": [{"name": "http", "port": port,
                                                "targetPort": port}]}}]
    return objects


def _upstream(name: str, url: str, command: Launch, target: Target,
              router: bool = False) -> gateway.Upstream:
    return gateway.Upstream(name, url, command.dialect, target.model.family,
                            target.served_name, router=router)


def _lws_stack(engine: str, target: Target, workers: int) -> tuple[
        list[Manifest], tuple[list[gateway.Upstream], list[gateway.Upstream]]]:
    command = render.launch(engine, target)
    port = _port(command)
    objects = [leader_worker_set("kimi-orchestrator", command, target, 1),
               leader_service("kimi-orchestrator", 0, port)]
    orchestrator = [_upstream("orchestrator", f"http://kimi-orchestrator-0:{port}/v1",
                              command, target)]
    pool = []
    if workers:
        objects.append(leader_worker_set("kimi-worker", command, target, workers))
        for group in range(workers):
            objects.append(leader_service("kimi-worker", group, port))
            pool.append(_upstream(f"worker-{group + 1}",
                                  f"http://kimi-worker-{group}:{port}/v1", command, target))
    return objects, (orchestrator, pool)


def _llm_d_stack(engine: str, target: Target, workers: int, router_url: str) -> tuple[
        list[Manifest], tuple[list[gateway.Upstream], list[gateway.Upstream]]]:
    command = render.launch(engine, target)
    pool_label = {"llm-d.ai/inference-serving": "kimi"}
    pool = {
        "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
        "metadata": _meta("kimi", "router"),
        "spec": {"selector": {"matchLabels": {**pool_label,
                                              "leaderworkerset.sigs.k8s.io/worker-index": "0"}},
                 "targetPorts": [{"number": _port(command)}],
                 "endpointPickerRef": {"name": "kimi-epp", "port": {"number": EPP_PORT}}},
    }
    objects = [leader_worker_set("kimi", command, target, workers + 1, labels=pool_label), pool]
    return objects, ([_upstream("router", router_url, command, target, router=True)], [])


def _kserve_stack(target: Target, workers: int, router_url: str) -> tuple[
        list[Manifest], tuple[list[gateway.Upstream], list[gateway.Upstream]]]:
    command = render.launch("vllm", target)
    gpus = min(target.tp * target.pp, target.gpus_per_node)
    container = {"name": "main", "env": [
        {"name": "VLLM_ADDITIONAL_ARGS", "value": " ".join(render.vllm_model_flags(target))}],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)},
                      "requests": {"nvidia.com/gpu": str(gpus)}}}
    spec: dict[str, Any] = {
        "model": {"uri": f"hf://{target.checkpoint.repo}", "name": target.served_name},
        "replicas": workers + 1,
        "parallelism": {"tensor": target.tp, "pipeline": target.pp},
        "router": {"scheduler": {}, "route": {}, "gateway": {}},
        "template": {"containers": [container]},
    }
    if target.nodes > 1:
        spec["worker"] = {"containers": [container]}
    service = {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
               "metadata": _meta("kimi", "engine"), "spec": spec}
    return [service], ([_upstream("router", router_url, command, target, router=True)], [])


def _dynamo_stack(target: Target, workers: int) -> tuple[
        list[Manifest], tuple[list[gateway.Upstream], list[gateway.Upstream]]]:
    if target.nodes > 1:
        raise RenderError("the Dynamo stack here runs one worker per node; render a "
                          "multi-node Dynamo graph from Dynamo's own recipes")
    frontend = render.dynamo_frontend()
    worker = render.launch("dynamo", target)
    graph = {
        "apiVersion": "nvidia.com/v1beta1", "kind": "DynamoGraphDeployment",
        "metadata": _meta("kimi", "engine"),
        "spec": {"components": [
            {"name": "Frontend", "type": "frontend", "replicas": 1,
             "podTemplate": {"spec": {"containers": [{
                 "name": "main", "image": frontend.image, "command": list(frontend.program),
                 "args": list(frontend.args)}]}}},
            {"name": "VllmWorker", "type": "worker", "replicas": workers + 1,
             "podTemplate": engine_pod_spec(worker, target)},
        ]},
    }
    url = f"http://kimi-frontend:{_port(frontend)}/v1"
    return [graph], ([_upstream("router", url, worker, target, router=True)], [])


def engine_pod_spec(command: Launch, target: Target) -> dict[str, Any]:
    """A pod template for a Dynamo worker: as :func:`engine_pod` without the HTTP probes
    (Dynamo workers serve no HTTP; the operator adds its own health checks)."""
    pod = engine_pod(command, target, worker=True)
    pod["spec"]["containers"][0]["name"] = "main"
    return {"spec": pod["spec"]}


def manifests(engine: str, target: Target, workers: int, *, stack: Stack = "lws",
              gateway_image: str = "kimi-modes:local", gateway_replicas: int = 2,
              router_url: str | None = None, api_key: str | None = None,
              store_url: str | None = None) -> list[Manifest]:
    """Every object of ``stack`` serving ``target`` on ``engine`` as 1 + ``workers`` replicas,
    plus the gateway pointed at it. ``router_url``: where the llm-d or KServe router answers
    (default: ``http://kimi-inference-gateway/v1``, the Gateway you route to the pool).
    :class:`RenderError` for a stack that cannot take this engine or layout."""
    if workers < 0:
        raise RenderError("workers must be 0 or more")
    router = router_url or "http://kimi-inference-gateway/v1"
    if stack in ("lws", "llm-d") and engine not in ("vllm", "sglang"):
        raise RenderError(f"the {stack} stack runs vllm or sglang, not {engine}")
    if stack == "lws":
        objects, upstreams = _lws_stack(engine, target, workers)
    elif stack == "llm-d":
        objects, upstreams = _llm_d_stack(engine, target, workers, router)
    elif stack == "kserve":
        objects, upstreams = _kserve_stack(target, workers, router)
    elif stack == "dynamo":
        objects, upstreams = _dynamo_stack(target, workers)
    else:
        raise RenderError(f"unknown stack {stack!r} (known: {', '.join(STACKS)})")
    return [models_claim(target), *objects,
            *gateway_objects(upstreams, replicas=gateway_replicas, image=gateway_image,
                             api_key=api_key, store_url=store_url)]

