"""Regenerate the vendored schemas of this folder (see README.md for sources and versions).

    python tests/deploy/schemas/vendor_schemas.py COMPOSE_JSON K8S_DIR \
        LWS_YAML POOL_YAML LLMISVC_YAML

COMPOSE_JSON is copied as it is. From K8S_DIR (kubernetes-validate's
``v1.NN.0-local-strict`` folder) only the definitions the kinds in ``K8S_KINDS`` reach are
kept, in one file. From each CRD only the ``openAPIV3Schema`` of its storage version is kept.
Everything but the compose schema loses its ``description`` texts (they are most of the bytes
and no validator reads them).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
K8S_KINDS = {
    "Deployment": "io.k8s.api.apps.v1.Deployment",
    "Service": "io.k8s.api.core.v1.Service",
    "ConfigMap": "io.k8s.api.core.v1.ConfigMap",
    "Secret": "io.k8s.api.core.v1.Secret",
    "PersistentVolumeClaim": "io.k8s.api.core.v1.PersistentVolumeClaim",
}
_REF_PREFIX = "/api/_definitions.json#/$defs/"


def _strip(node: Any) -> Any:
    """``node`` without ``description`` keys, with the bundle's refs made local."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX):
                value = "#/$defs/" + value[len(_REF_PREFIX):]
            out[key] = _strip(value)
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def kubernetes(folder: Path) -> dict[str, Any]:
    defs = json.loads((folder / "_definitions.json").read_text())["$defs"]
    wanted, todo = set(), list(K8S_KINDS.values())
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(_refs(defs[name]))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "kinds": K8S_KINDS,
            "$defs": {name: _strip(defs[name]) for name in sorted(wanted)}}


def crd(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    return {"apiVersion": f"{spec['group']}/{version['name']}", "kind": spec["names"]["kind"],
            "schema": _strip(version["schema"]["openAPIV3Schema"])}


def main(compose: str, k8s: str, *crds: str) -> None:
    shutil.copyfile(compose, HERE / "compose-spec.json")
    (HERE / "kubernetes-strict.json").write_text(
        json.dumps(kubernetes(Path(k8s)), separators=(",", ":"), sort_keys=True))
    for path in crds:
        data = crd(Path(path))
        name = data["kind"].lower() + ".json"
        (HERE / name).write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
