"""One node as a Docker Compose file: the gateway, the orchestrator engine and N worker engines.

Each engine is its own service (``orchestrator``, ``worker-1`` … ``worker-N``) holding its own
GPUs (``deploy.resources.reservations.devices`` with ``device_ids``), so one ``worker`` service
with ``--scale`` cannot express it. Every engine has a health check on its ``/health`` (or
``/v1/models``), a long ``start_period`` for loading the weights, and the ``models`` volume
for the weights; the gateway waits for them to be healthy, reads the configuration generated
for exactly these services (:mod:`.gateway`, passed inline as a Compose ``config``) and keeps
its run store on the ``runs`` volume. The file follows the Compose specification (no
``version`` key); tests validate it against the specification's JSON schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from kimi_modes.deploy import gateway
from kimi_modes.deploy.render import MODELS_DIR, Launch, RenderError, Target, launch

#: The gateway image; built from a kimi-modes checkout by the ``build`` entry (no image is
#: published).
GATEWAY_IMAGE = "kimi-modes:local"
GATEWAY_DOCKERFILE = """FROM python:3.12-slim
COPY . /src
RUN pip install --no-cache-dir /src
"""
CONFIG_PATH = "/etc/kimi-modes/kimi-modes.toml"
#: Loading ~600 GB of weights takes a while: health checks start counting after this.
START_PERIOD = "3600s"


def healthcheck(port: int, path: str) -> dict[str, Any]:
    """A health check that GETs ``http://localhost:PORT/PATH`` with curl, or Python where the
    image has no curl."""
    url = f"http://localhost:{port}{path}"
    probe = (f"curl -fsS -o /dev/null {url} || python3 -c "
             f"\"import urllib.request; urllib.request.urlopen('{url}', timeout=5)\"")
    return {"test": ["CMD-SHELL", probe], "interval": "30s", "timeout": "10s",
            "retries": 5, "start_period": START_PERIOD}


def _devices(first: int, count: int) -> dict[str, Any]:
    return {"resources": {"reservations": {"devices": [
        {"driver": "nvidia", "device_ids": [str(i) for i in range(first, first + count)],
         "capabilities": ["gpu"]}]}}}


def _engine_service(command: Launch, gpus: tuple[int, int]) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": command.image,
        "entrypoint": list(command.program),
        "command": list(command.args),
        "ipc": "host",  # NCCL and the engines' shared memory between ranks
        "volumes": [f"models:{MODELS_DIR}"],
        "healthcheck": healthcheck(_http_port(command), command.health_path),
        "restart": "unless-stopped",
        "deploy": _devices(*gpus),
    }
    if command.env:
        service["environment"] = dict(command.env)
    if command.files:
        service["configs"] = [{"source": _config_name(name), "target": f"/config/{name}"}
                              for name in command.files]
    return service


def _http_port(command: Launch) -> int:
    if command.port is None:
        raise RenderError(f"{command.engine} serves no HTTP of its own")
    return command.port


def _config_name(file_name: str) -> str:
    return "engine-" + file_name.replace(".", "-").replace("/", "-").lower()


def _name(index: int) -> str:
    return "orchestrator" if index == 0 else f"worker-{index}"


def compose(engine: str, target: Target, workers: int, *, gateway_port: int = 8000,
            source: str = ".", url: Callable[[str, int], str] | None = None) -> dict[str, Any]:
    """The Compose file (as a dict) for ``engine`` serving ``target`` as one orchestrator and
    ``workers`` workers on one node of ``target.gpus_per_node`` GPUs, ``tp × pp`` each, GPUs
    assigned in order. ``source``: the kimi-modes checkout the gateway image is built from.
    ``url(service, port)`` gives the gateway's URL of an engine (default
    ``http://SERVICE:PORT/v1``, the Compose network's name for it).

    :class:`RenderError` when the replicas need more GPUs than the node has, or the replica
    spans several nodes (use the Kubernetes manifests)."""
    if workers < 0:
        raise RenderError("workers must be 0 or more")
    if engine in ("dynamo", "exo"):
        raise RenderError(f"{engine} is not a Compose stack here: Dynamo needs its frontend, "
                          "etcd and NATS (use the Kubernetes dynamo stack); exo runs on Macs")
    if target.nodes > 1:
        raise RenderError(f"one replica spans {target.nodes} nodes: Compose runs one node; "
                          "render Kubernetes manifests instead")
    per_replica = target.tp * target.pp
    if per_replica * (workers + 1) > target.gpus_per_node:
        raise RenderError(
            f"1 + {workers} replicas × {per_replica} GPUs = {per_replica * (workers + 1)} "
            f"GPUs, but the node has {target.gpus_per_node}")
    locate = url or (lambda service, port: f"http://{service}:{port}/v1")
    services: dict[str, Any] = {}
    upstreams = []
    configs: dict[str, Any] = {}
    for index in range(workers + 1):
        command = launch(engine, target)
        name = _name(index)
        services[name] = _engine_service(
            command, (index * per_replica, per_replica))
        for file_name, content in command.files.items():
            configs[_config_name(file_name)] = {"content": content}
        upstreams.append(gateway.Upstream(name, locate(name, _http_port(command)), command.dialect,
                                          target.model.family, target.served_name))
    settings = gateway.settings(upstreams[:1], upstreams[1:])
    configs["gateway"] = {"content": gateway.toml(settings)}
    services["gateway"] = {
        "image": GATEWAY_IMAGE,
        "build": {"context": source, "dockerfile_inline": GATEWAY_DOCKERFILE},
        "command": ["kimi-modes", "serve", "--config", CONFIG_PATH],
        "ports": [f"{gateway_port}:{gateway.GATEWAY_PORT}"],
        "configs": [{"source": "gateway", "target": CONFIG_PATH}],
        "volumes": [f"runs:{gateway.DATA_DIR}"],
        "depends_on": {name: {"condition": "service_healthy"} for name in services},
        "healthcheck": {**healthcheck(gateway.GATEWAY_PORT, "/health"),
                        "start_period": "30s"},
        "restart": "unless-stopped",
    }
    return {"name": "kimi-modes", "services": services, "volumes": {"models": {}, "runs": {}},
            "configs": configs}


def dump(document: dict[str, Any]) -> str:
    """A Compose (or Kubernetes) document as YAML, keys in the order built."""
    text: str = yaml.safe_dump(document, sort_keys=False, width=100)
    return text
