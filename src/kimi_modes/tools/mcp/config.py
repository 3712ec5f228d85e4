"""The MCP servers file: the standard ``{"mcpServers": {...}}`` JSON, parsed and checked.

Accepted shape (the one Claude Desktop, Cursor, VS Code and most MCP clients share)::

    {"mcpServers": {
        "files": {"command": "npx",
                  "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"],
                  "env": {"LOG_LEVEL": "warn"}, "cwd": "/srv"},
        "time":  {"type": "stdio", "command": "python", "args": ["-m", "mcp_server_time"]},
        "docs":  {"type": "http", "url": "https://mcp.example.com/mcp",
                  "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}
    }}

- ``type`` is ``"stdio"``, ``"http"`` or ``"streamable-http"`` (also ``"streamableHttp"``); left
  out, it is ``stdio`` when there is a ``command`` and ``http`` when there is a ``url``.
- stdio: ``command`` (required), ``args`` (list of strings), ``env`` (string to string, added
  to the small safe environment the SDK passes on: ``HOME``, ``PATH``, ``USER``, ...), ``cwd``
  (a relative one is taken from the config file's directory).
- http: ``url`` (``http://`` or ``https://``), ``headers`` (string to string).
- ``"disabled": true`` leaves a server out. ``startTimeout`` / ``callTimeout`` (seconds, ours)
  override the manager's defaults for that server. Other keys other clients use
  (``autoApprove``, ``description``, ...) are ignored.
- ``${VAR}`` and ``${VAR:-default}`` in ``command``, ``args``, ``env``, ``cwd``, ``url`` and
  ``headers`` are replaced from the gateway's environment; a variable that is not set and has
  no default is an error.

Every problem raises :class:`McpConfigError` whose message names the file, the server and the
key at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "McpConfigError",
    "McpServerConfig",
    "load_mcp_config",
    "mcp_tool_name",
    "parse_mcp_config",
    "server_prefix",
]

McpTransport = Literal["stdio", "http"]

_TYPES: dict[str, McpTransport] = {
    "stdio": "stdio",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class McpConfigError(ValueError):
    """The MCP servers file is unreadable or malformed; the message says where and why."""


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """One server from the file, checked and with ``${VAR}`` references expanded.

    ``transport`` is ``"stdio"`` (``command``, ``args``, ``env``, ``cwd`` set) or ``"http"``
    (streamable HTTP; ``url`` and ``headers`` set). ``start_timeout`` and ``call_timeout`` are
    per-server overrides in seconds, ``None`` for the manager's defaults.
    """

    name: str
    transport: McpTransport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float | None = None
    call_timeout: float | None = None

    @classmethod
    def stdio(cls, name: str, command: str, args: list[str] | tuple[str, ...] = (),
              **options: Any) -> McpServerConfig:
        """A stdio server, built in code rather than read from a file."""
        return cls(name=name, transport="stdio", command=command, args=tuple(args), **options)

    @classmethod
    def http(cls, name: str, url: str, **options: Any) -> McpServerConfig:
        """A streamable-HTTP server, built in code rather than read from a file."""
        return cls(name=name, transport="http", url=url, **options)


def load_mcp_config(path: str | os.PathLike[str]) -> list[McpServerConfig]:
    """The enabled servers of the JSON file at ``path``, in file order.

    Raises :class:`McpConfigError` if the file cannot be read, is not JSON, or any entry is
    malformed (the whole file is refused: a half-read config would hide the operator's mistake).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"MCP config {source}: cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise McpConfigError(f"MCP config {source}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"MCP config {source}: not valid JSON: {exc.msg} "
                             f"at line {exc.lineno} column {exc.colno}") from exc
    return parse_mcp_config(data, source=str(source), base_dir=source.resolve().parent)


def parse_mcp_config(
    data: Any,
    *,
    source: str = "MCP config",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[McpServerConfig]:
    """The enabled servers of an already-decoded ``{"mcpServers": {...}}`` document.

    ``source`` prefixes error messages; a relative ``cwd`` is resolved against ``base_dir``
    when given; ``environ`` (default ``os.environ``) supplies ``${VAR}`` values.
    Raises :class:`McpConfigError`.
    """
    env = os.environ if environ is None else environ
    where = source if source.startswith("MCP config") else f"MCP config {source}"
    if not isinstance(data, dict):
        raise McpConfigError(f"{where}: the top level must be a JSON object like "
                             f'{{"mcpServers": {{...}}}}, not {_json_type(data)}')
    if "mcpServers" not in data:
        keys = ", ".join(repr(k) for k in data) or "none"
        raise McpConfigError(f'{where}: no "mcpServers" object (top-level keys: {keys})')
    servers = data["mcpServers"]
    if not isinstance(servers, dict):
        raise McpConfigError(f'{where}: "mcpServers" must be an object mapping names to servers, '
                             f"not {_json_type(servers)}")
    out: list[McpServerConfig] = []
    prefixes: dict[str, str] = {}
    for name, entry in servers.items():
        here = f"{where}: server {name!r}"
        if not name or not name.strip():
            raise McpConfigError(f"{where}: a server has an empty name")
        config = _parse_server(name, entry, here, base_dir, env)
        if config is None:
            continue
        prefix = server_prefix(name)
        if prefix in prefixes:
            raise McpConfigError(f"{here}: its tool prefix {prefix!r} is the same as server "
                                 f"{prefixes[prefix]!r}'s; rename one of them")
        prefixes[prefix] = name
        out.append(config)
    return out


def server_prefix(name: str) -> str:
    """The namespace a server's tools get: its name with characters outside ``[A-Za-z0-9_-]``
    replaced by ``_`` and cut to 40 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40]


def mcp_tool_name(server: str, tool: str) -> str:
    """The name a server's tool gets: ``server__tool`` with characters outside
    ``[A-Za-z0-9_-]`` replaced by ``_``; a longer name than 64 characters is cut and given a
    short hash of the original so that it stays unique."""
    name = f"{server_prefix(server)}__{re.sub(r'[^A-Za-z0-9_-]', '_', tool)}"
    if len(name) > 64:
        digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


def _parse_server(name: str, entry: Any, here: str, base_dir: Path | None,
                  env: Mapping[str, str]) -> McpServerConfig | None:
    if not isinstance(entry, dict):
        raise McpConfigError(f"{here}: must be an object, not {_json_type(entry)}")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise McpConfigError(f'{here}: "disabled" must be true or false')
    if disabled:
        return None
    transport = _transport(entry, here)
    timeouts = {key: _seconds(entry, key, here) for key in ("startTimeout", "callTimeout")}

    def text(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise McpConfigError(f'{here}: "{key}" must be a string, not {_json_type(value)}')
        return _expand(value, env, f'{here}: "{key}"')

    def table(key: str) -> dict[str, str]:
        value = entry.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise McpConfigError(f'{here}: "{key}" must be an object of strings, '
                                 f"not {_json_type(value)}")
        return {str(k): text(f"{key}.{k}", v) for k, v in value.items()}

    if transport == "stdio":
        for key in ("url", "headers"):
            if key in entry:
                raise McpConfigError(f'{here}: "{key}" is for HTTP servers, but this one is stdio '
                                     '(it has a "command" or "type": "stdio")')
        if "command" not in entry:
            raise McpConfigError(f'{here}: a stdio server needs a "command"')
        command = text("command", entry["command"]).strip()
        if not command:
            raise McpConfigError(f'{here}: "command" is empty')
        raw_args = entry.get("args", [])
        if raw_args is None:
            raw_args = []
        if not isinstance(raw_args, list):
            raise McpConfigError(f'{here}: "args" must be a list of strings, '
                                 f"not {_json_type(raw_args)}")
        args = tuple(text(f"args[{i}]", a) for i, a in enumerate(raw_args))
        cwd: str | None = None
        if entry.get("cwd") is not None:
            cwd = text("cwd", entry["cwd"])
            if base_dir is not None and not os.path.isabs(cwd):
                cwd = str(base_dir / cwd)
        return McpServerConfig(name=name, transport="stdio", command=command, args=args,
                               env=table("env"), cwd=cwd, start_timeout=timeouts["startTimeout"],
                               call_timeout=timeouts["callTimeout"])
    for key in ("command", "args", "env", "cwd"):
        if key in entry:
            raise McpConfigError(f'{here}: "{key}" is for stdio servers, but this one is HTTP '
                                 '(it has a "url" or an HTTP "type")')
    if "url" not in entry:
        raise McpConfigError(f'{here}: an HTTP server needs a "url"')
    url = text("url", entry["url"]).strip()
    if not re.match(r"^https?://[^/\s]+", url):
        raise McpConfigError(f'{here}: "url" must be an http:// or https:// URL, not {url!r}')
    return McpServerConfig(name=name, transport="http", url=url, headers=table("headers"),
                           start_timeout=timeouts["startTimeout"],
                           call_timeout=timeouts["callTimeout"])


def _transport(entry: dict[str, Any], here: str) -> McpTransport:
    kind = entry.get("type", entry.get("transport"))
    if kind is None:
        if "command" in entry and "url" in entry:
            raise McpConfigError(f'{here}: has both "command" (stdio) and "url" (HTTP); '
                                 'keep one, or say which with "type"')
        if "command" in entry:
            return "stdio"
        if "url" in entry:
            return "http"
        raise McpConfigError(f'{here}: needs a "command" (stdio server) or a "url" (HTTP server)')
    if not isinstance(kind, str):
        raise McpConfigError(f'{here}: "type" must be a string, not {_json_type(kind)}')
    found = _TYPES.get(kind.lower())
    if found is None:
        hint = (" (the old SSE transport is not supported; most servers also serve streamable "
                "HTTP, often at /mcp)") if kind.lower() == "sse" else ""
        raise McpConfigError(f'{here}: unknown "type" {kind!r}; use "stdio", "http" or '
                             f'"streamable-http"{hint}')
    return found


def _seconds(entry: dict[str, Any], key: str, here: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise McpConfigError(f'{here}: "{key}" must be a positive number of seconds, not {value!r}')
    return float(value)


def _expand(value: str, env: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise McpConfigError(f"{where}: environment variable {name} is not set "
                             f"(write ${{{name}:-default}} to give a default)")

    return _VAR.sub(replace, value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
