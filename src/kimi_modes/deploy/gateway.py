"""The gateway's configuration for a rendered stack (Compose or Kubernetes), as TOML.

A stack is one orchestrator engine and N worker engines (or one router in front of a pool):
the generated ``kimi-modes.toml`` names each as an ``[[upstreams]]`` entry, points the
orchestrator, Thinking and Agent at the first and spreads the swarm's sub-agents over the
workers. It is what :func:`kimi_modes.config.load_settings` reads; keys the installed gateway
does not know yet (``router`` on an upstream) are written only when its settings have them
(see :func:`supports`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from kimi_modes.config import Settings, UpstreamSettings
from kimi_modes.deploy.render import RenderError
from kimi_modes.protocol.families import family_info

#: Where the gateway keeps its run store and workspaces inside a container (a volume).
DATA_DIR = "/data"
#: The gateway's port inside its container.
GATEWAY_PORT = 8000


@dataclass(frozen=True)
class Upstream:
    """One engine (or router) the gateway talks to: its name, base URL (with ``/v1``), the
    dialect of its thinking switch, the family and the served model name. ``router``: the
    URL is a router in front of many replicas (llm-d, KServe, Dynamo)."""

    name: str
    url: str
    dialect: str
    family: str
    model: str
    router: bool = False


def supports(key: str) -> bool:
    """Whether the gateway's settings know ``key``: ``"router"`` (an upstream's) or
    ``"store"`` (a top-level table)."""
    if key == "router":
        return "router" in UpstreamSettings.model_fields
    return key in Settings.model_fields


def _families() -> tuple[str, ...]:
    return get_args(UpstreamSettings.model_fields["family"].annotation)


def settings(orchestrator: Sequence[Upstream], workers: Sequence[Upstream]) -> dict[str, Any]:
    """The configuration as a dict: ``orchestrator`` serves the orchestrator, Thinking,
    Instant and Agent; the swarm's sub-agents go to ``workers`` (the orchestrator's own
    upstreams when empty, as with a router). The shared run store's URL is a secret, so it
    is not written here: Kubernetes passes it as ``KIMI_MODES_STORE__URL``.
    :class:`RenderError` for a family the gateway's settings do not accept."""
    known = _families()
    upstreams = []
    for up in (*orchestrator, *workers):
        if up.family not in known:
            raise RenderError(f"the gateway's settings take the families {', '.join(known)}, "
                              f"not {up.family!r}")
        entry: dict[str, Any] = {"name": up.name, "kind": "openai_chat", "url": up.url,
                                 "dialect": up.dialect, "family": up.family,
                                 "model": up.model}
        if up.router and supports("router"):
            entry["router"] = True
        upstreams.append(entry)
    first = orchestrator[0]
    info = family_info(first.family)
    modes: dict[str, Any] = {}
    for mode, sampling in (("thinking", info.thinking_sampling),
                           ("instant", info.instant_sampling)):
        if sampling is not None:
            modes[mode] = {"upstream": first.name, "temperature": sampling.temperature,
                           **({"top_p": sampling.top_p} if sampling.top_p is not None else {})}
    config: dict[str, Any] = {
        "server": {"host": "0.0.0.0", "port": GATEWAY_PORT},
        "upstreams": upstreams,
        "modes": modes,
        "agent": {"upstream": first.name, "runs_db": f"{DATA_DIR}/runs.sqlite3",
                  "workspaces": f"{DATA_DIR}/workspaces"},
        "swarm": {"orchestrator_upstreams": [u.name for u in orchestrator],
                  "worker_upstreams": [u.name for u in (workers or orchestrator)]},
    }
    return config


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _table(lines: list[str], name: str, table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in table.items() if isinstance(v, dict)}
    if scalars:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_value(v)}" for k, v in scalars.items())
        lines.append("")
    for key, sub in nested.items():
        _table(lines, f"{name}.{key}", sub)


def toml(config: Mapping[str, Any]) -> str:
    """``config`` (as :func:`settings` returns it: tables of scalars and lists, and the
    ``upstreams`` array of tables) as TOML text."""
    lines = ["# kimi-modes gateway configuration, generated by `kimi-modes deploy render`.", ""]
    for name, value in config.items():
        if name == "upstreams":
            for entry in value:
                lines.append("[[upstreams]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in entry.items())
                lines.append("")
        else:
            _table(lines, name, value)
    return "\n".join(lines)
