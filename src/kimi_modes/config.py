"""One settings object, read from a TOML file and environment variables.

Precedence, highest first: values passed in code (the CLI's flags), environment variables
(``KIMI_MODES_...``, nested with ``__``: ``KIMI_MODES_SERVER__PORT=9000``), the TOML file
(``--config FILE`` or ``KIMI_MODES_CONFIG``), then the defaults below. With no upstream
configured the gateway runs on the embedded default model.

Example ``kimi-modes.toml``::

    [server]
    host = "0.0.0.0"
    port = 8000
    api_keys = ["sk-local-1"]

    [[upstreams]]
    name = "vllm"
    url = "http://gpu-box:8000/v1"
    kind = "openai_chat"        # openai_chat | kimi_raw | embedded
    dialect = "vllm"            # how it takes the thinking switch (kimi-protocol.md §6)
    family = "k3"               # optional: else read from `model`, else from its /v1/models
    model = "moonshotai/Kimi-K3"
    api_key_env = "VLLM_API_KEY"  # read from the environment at load

    [[upstreams]]               # several models at once: each upstream names its family
    name = "k26"
    url = "http://gpu-box-2:8000/v1"
    model = "moonshotai/Kimi-K2.6"

    [swarm]
    worker_model = "k2.6"       # kimi-k3-swarm: a K3 orchestrator, K2.6 sub-agents

    [modes.thinking]
    temperature = 1.0
    top_p = 0.95
    objective = "interactive"   # sent to a router upstream (router = true)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kimi_modes.endpoint import api_base
from kimi_modes.engines.dialects import DIALECTS
from kimi_modes.protocol.families import Family

EngineKind = Literal["openai_chat", "kimi_raw", "embedded"]

#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
#: An InferenceObjective's name: a Kubernetes object name (RFC 1123 subdomain).
_OBJECTIVE = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


def _objective(description: str) -> Any:
    """A mode's objective setting: the InferenceObjective its requests name to a router."""
    return Field(None, pattern=_OBJECTIVE, description=description)


#: Model-name fragments (lower case, after the last ``/``) that name a family, most specific
#: first: Hugging Face repo names (``moonshotai/Kimi-K2-Instruct-0905``), GGUF and MLX
#: conversions (``Kimi-K2.6-GGUF``) and the gateway's own ids (``kimi-k3-thinking``).
_FAMILY_NAMES: tuple[tuple[str, Family], ...] = (
    ("kimi-k2.7-code", Family.K2_7_CODE),
    ("kimi-k2.6", Family.K2_6),
    ("kimi-k2.5", Family.K2_5),
    ("kimi-k2-thinking", Family.K2_THINKING),
    ("kimi-k2-instruct", Family.K2_INSTRUCT),
    ("kimi-k3", Family.K3),
)


def family_from_model_name(name: str) -> Family | None:
    """The Kimi family a served model name names (``moonshotai/Kimi-K3`` → ``k3``), or
    ``None`` when it names none (a custom ``--served-model-name``)."""
    base = name.rsplit("/", 1)[-1].lower().replace("_", "-")
    return next((f for key, f in _FAMILY_NAMES if base.startswith(key)), None)


class ServerSettings(BaseModel):
    """Where the gateway listens and who may call it."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: Bearer keys (``Authorization: Bearer KEY`` or Anthropic's ``x-api-key``). Empty (and no
    #: operator keys): no auth, and every caller sees every run. Each key sees only its own runs.
    api_keys: list[SecretStr] = Field(default_factory=list)
    #: Keys that are accepted like ``api_keys`` and see (list, read, watch, cancel, resume)
    #: every key's runs.
    operator_api_keys: list[SecretStr] = Field(default_factory=list)
    log_level: str = "info"
    #: Gateway processes sharing the port (0: one per core; unset: see
    #: :meth:`Settings.worker_count`). They share the run store and the memories in it, sum
    #: their /metrics, and split the gateway-wide caps between them (docs/scaling.md, "Many
    #: processes").
    workers: int | None = Field(None, ge=0)
    #: Largest request body accepted, in bytes; enforced while the body is read (chunked
    #: uploads included), so a larger one never sits in memory whole.
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    #: Seconds a connection may take to send a request's complete header block (counted from
    #: the connection, or from the first byte of a later request on it); then it is closed.
    header_timeout: float = Field(10.0, gt=0)
    #: Seconds a request's whole body may take to arrive once its headers have; then 408.
    body_timeout: float = Field(60.0, gt=0)
    #: Browser origins allowed to call the API (CORS), e.g. ``["https://app.example"]``;
    #: ``["*"]`` allows any. Empty: no CORS headers at all (browsers refuse cross-origin calls).
    cors_allow_origins: list[str] = Field(default_factory=list)


class UpstreamSettings(BaseModel):
    """One engine the gateway talks to."""

    name: str = "default"
    kind: EngineKind = "openai_chat"
    #: Base URL including ``/v1`` (``http://host:8000/v1``). Not used by ``embedded``.
    url: str | None = None
    #: How the upstream takes the thinking switch; see :mod:`kimi_modes.engines.dialects`.
    dialect: str = "vllm"
    #: The Kimi family served (:class:`~kimi_modes.protocol.Family`: every family protocol
    #: knows). When unset: the family ``model`` names (:func:`family_from_model_name`), else
    #: the one the upstream's ``/v1/models`` id names (read at start-up), else ``k2.5``
    #: (:attr:`served_family`); an embedded upstream reads it from the GGUF's metadata.
    family: Family | None = None
    #: The upstream's model name; when unset it is read from the upstream's ``/v1/models``.
    model: str | None = None
    #: Sent as ``Authorization: Bearer``. Prefer ``api_key_env`` to keep it out of the file.
    api_key: SecretStr | None = None
    #: The name of an environment variable holding the API key, read when the settings are
    #: loaded (an error if it is not set) into ``api_key``. Excludes an ``api_key`` in the
    #: file; a dump of the settings leaves the key out, so validating the dump again reads the
    #: variable again.
    api_key_env: str | None = None
    #: False when the engine was started without a reasoning parser: reasoning then arrives
    #: in the content, and we split it ourselves.
    reasoning_parser: bool = True
    connect_timeout: float = Field(10.0, gt=0)
    #: Longest silence allowed between two pieces of a response (first token included).
    read_timeout: float = Field(300.0, gt=0)
    #: ``embedded`` only: a GGUF path (default: the bundled SmolLM2-135M-Instruct).
    model_path: str | None = None
    #: ``embedded`` only: a llama.cpp LoRA adapter GGUF for that model (``train export``).
    adapter: str | None = None
    n_ctx: int = Field(4096, gt=0)
    n_threads: int | None = None
    #: At most this many requests in flight to this upstream from the swarm's engine pools
    #: (more wait in a queue); None: no cap.
    max_concurrency: int | None = Field(None, ge=1)
    #: Its Prometheus metrics (queue depth for load-aware routing). Default: the URL's host
    #: with ``/metrics`` (vLLM, SGLang and the simulated engine serve it there); ``""``: none.
    #: Never read for a router.
    metrics_url: str | None = None
    #: The URL is a router in front of many replicas (llm-d / Inference Gateway, vLLM Router,
    #: SGLang Model Gateway, Dynamo): the swarm's pools do not balance on top of it, and each
    #: request carries its session id and its mode's objective (docs/scaling.md).
    router: bool = False
    #: The header a router reads the session id from (Dynamo's default:
    #: ``x-dynamo-session-id``; production-stack: whatever its ``--session-key`` names).
    session_header: str = Field("x-session-id", pattern=_HEADER_NAME)

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        if value not in DIALECTS:
            raise ValueError(f"unknown dialect {value!r}; choose one of {sorted(DIALECTS)}")
        return value

    @model_validator(mode="after")
    def _family_from_model(self) -> UpstreamSettings:
        if self.family is None and self.model:
            self.family = family_from_model_name(self.model)
        return self

    @property
    def served_family(self) -> Family:
        """The family served: the configured or detected one, else ``k2.5``."""
        return self.family or Family.K2_5

    @model_validator(mode="after")
    def _url_when_remote(self) -> UpstreamSettings:
        if self.kind != "embedded" and not self.url:
            raise ValueError(f"upstream {self.name!r} of kind {self.kind!r} needs a url")
        if self.adapter and self.kind != "embedded":
            raise ValueError(f"upstream {self.name!r}: adapter needs kind embedded")
        if self.router and self.kind != "openai_chat":
            raise ValueError(f"upstream {self.name!r}: router = true needs kind openai_chat")
        if self.router and self.metrics_url:
            raise ValueError(f"upstream {self.name!r} is a router, which balances its own "
                             "replicas: its metrics_url would never be read; remove it")
        if self.url:
            self.url = api_base(self.url)
        return self

    @field_serializer("api_key", mode="wrap")
    def _dump_key(self, value: SecretStr | None, handler: SerializerFunctionWrapHandler) -> Any:
        # A key read from api_key_env is not part of the configuration's data: leaving it out
        # keeps the secret out of dumps, and lets a dump validate again (not "sets both").
        return None if self.api_key_env is not None else handler(value)

    @model_validator(mode="before")
    @classmethod
    def _one_key_source(cls, data: Any) -> Any:
        # Checked on the raw input only: once read, the key from api_key_env sits in api_key,
        # and validating those settings again must not count it as a second source.
        if isinstance(data, dict) and data.get("api_key") is not None and data.get(
            "api_key_env"
        ) is not None:
            raise ValueError(
                f"upstream {data.get('name', 'default')!r} sets both api_key and api_key_env; "
                "keep one"
            )
        return data

    @model_validator(mode="after")
    def _key_from_environment(self) -> UpstreamSettings:
        if self.api_key_env is None:
            return self
        value = os.environ.get(self.api_key_env, "").strip()
        if not value:
            raise ValueError(
                f"upstream {self.name!r}: api_key_env names the environment variable "
                f"{self.api_key_env!r}, which is not set (or empty); export it or remove "
                "api_key_env"
            )
        self.api_key = SecretStr(value)
        return self


class ModeSettings(BaseModel):
    """``[modes.thinking]`` / ``[modes.instant]``: sampling defaults of one mode and which
    upstream serves it.

    ``temperature`` and ``top_p`` unset (the default) mean each served model family's
    recommended values for the mode (``protocol.families``: K2.5 and later 1.0 / 0.6 with
    top_p 0.95; K2-Instruct 0.6 and K2-Thinking 1.0 without top_p); a value set here applies
    to every family. Per field, so a table that sets only ``temperature`` keeps the family's
    ``top_p``.
    """

    temperature: float | None = None
    top_p: float | None = None
    #: Name of the upstream that serves this mode; default: the first one.
    upstream: str | None = None
    max_tokens: int | None = None
    #: Sent to a router upstream as the mode's priority class (an InferenceObjective's name,
    #: ``x-gateway-inference-objective``); ``None``: none sent.
    objective: str | None = _objective("the InferenceObjective of this mode's requests")


class ModesSettings(BaseModel):
    thinking: ModeSettings = Field(default_factory=ModeSettings)
    instant: ModeSettings = Field(default_factory=ModeSettings)


class AgentSettings(BaseModel):
    """Agent mode: budgets (server-wide ceilings; a request may only tighten them), where runs
    and workspaces live, and which tools exist."""

    max_steps: int = Field(50, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_time: float = Field(900.0, gt=0)
    #: Which upstream runs the agent's model calls (default: the first).
    upstream: str | None = None
    #: SQLite file holding every run (``~`` expands); unused when ``[store] url`` is set.
    runs_db: str = "~/.kimi-modes/runs.sqlite3"
    #: Each run gets a fresh directory under here: its only writable place.
    workspaces: str = "~/.kimi-modes/workspaces"
    #: Run python/shell without bubblewrap when it is missing. Unsafe: only on a machine (or
    #: container) you are willing to hand to the model.
    allow_unsandboxed: bool = False
    tool_timeout: float = Field(120.0, gt=0)
    tool_output_limit: int = Field(16_000, ge=256)
    #: A standard ``{"mcpServers": {...}}`` JSON file.
    mcp_config: str | None = None
    #: Let web_fetch reach private, loopback and link-local addresses.
    web_allow_private: bool = False
    #: A SearXNG instance (``http://host:8080``) for web_search; none: the tool is absent.
    searxng_url: str | None = None
    #: The model's context window in tokens (default: the family's).
    context_window: int | None = Field(None, ge=1024)
    #: Tool results kept whole when older ones are compacted.
    keep_tool_results: int = Field(3, ge=0)
    #: The InferenceObjective an Agent run's model calls name to a router upstream.
    objective: str | None = _objective("the InferenceObjective of Agent mode's requests")


class StoreSettings(BaseModel):
    """``[store]``: where runs are kept (docs/scaling.md). Unset ``url``: the SQLite file
    ``agent.runs_db`` (embedded, one machine). ``url = "postgresql://..."``: a PostgreSQL
    database shared by several gateway processes or replicas (``pip install
    'kimi-modes[postgres]'``)."""

    url: str | None = None
    #: Seconds after a gateway stops renewing its lease (it died) before the others mark its
    #: runs interrupted; it renews every third of this.
    lease_seconds: float = Field(15.0, gt=0)
    #: The most entries the reasoning memory keeps in the store (the reasoning of tool-call
    #: turns, restored for clients that drop it); the oldest are evicted.
    reasoning_entries: int = Field(10_000, ge=1)
    #: The most entries the transcript memory keeps (the hidden steps of Agent runs paused
    #: on client tool calls); the oldest are evicted.
    transcript_entries: int = Field(2_000, ge=1)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("store.url is a postgresql:// URL (unset: the SQLite file "
                             "agent.runs_db)")
        return value


class SwarmSettings(BaseModel):
    """Swarm mode: one orchestrator (Thinking) fanning out to sub-agents (Instant by default),
    spread over a pool of upstreams. ``kimi-<model>-swarm`` runs its orchestrator on that
    model. Budgets are server-wide ceilings (a request may only tighten them)."""

    #: Upstreams of the orchestrator's model calls, for each model they serve (default: the
    #: agent's upstream for that model).
    orchestrator_upstreams: list[str] = Field(default_factory=list)
    #: The model sub-agents run on (a family, e.g. ``"k2.6"``; default: the orchestrator's).
    worker_model: Family | None = None
    #: Upstreams the sub-agents' model calls are spread over, for each model they serve
    #: (default: every upstream serving the sub-agents' model).
    worker_upstreams: list[str] = Field(default_factory=list)
    #: Start a fan-out's sub-agents in a ramp, as kimi-code does: ``launch_burst`` at once,
    #: then one more every ``launch_interval`` seconds (off: all at once, up to the cap).
    launch_ramp: bool = False
    launch_burst: int = Field(5, ge=1)
    launch_interval: float = Field(0.7, gt=0)
    #: At most this many sub-agents in one fan-out (AgentSwarm's own limit is 128).
    #: The mode sub-agents run in.
    subagent_mode: Literal["instant", "thinking"] = "instant"
    max_subagents_per_fanout: int = Field(128, ge=1)
    max_subagents_per_run: int = Field(128, ge=1)
    #: Sub-agents running at once over the whole gateway; the rest wait in a queue.
    max_concurrent_subagents: int = Field(64, ge=1)
    orchestrator_max_steps: int = Field(15, ge=1)
    orchestrator_max_time: float = Field(3600.0, gt=0)
    subagent_max_steps: int = Field(100, ge=1)
    #: Seconds one sub-agent may run (from the moment it gets a slot).
    subagent_timeout: float = Field(900.0, gt=0)
    #: Retries of a model step whose stream broke mid-way (sent to another upstream).
    step_retries: int = Field(3, ge=0)
    #: Engine-pool tuning (docs/pool.md).
    max_attempts: int = Field(6, ge=1)
    failure_threshold: int = Field(3, ge=1)
    cooldown: float = Field(2.0, gt=0)
    metrics_interval: float = Field(1.0, gt=0)
    #: The InferenceObjective the orchestrator's model calls name to a router upstream.
    objective: str | None = _objective("the InferenceObjective of the orchestrator's requests")
    #: The InferenceObjective the sub-agents' model calls name to a router upstream.
    subagent_objective: str | None = _objective(
        "the InferenceObjective of the sub-agents' requests")


class Settings(BaseSettings):
    """Everything the gateway is configured with. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="KIMI_MODES_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    #: The model the mode aliases (``kimi-instant``...) name; default: the first upstream's.
    default_model: Family | None = None
    modes: ModesSettings = Field(default_factory=ModesSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    swarm: SwarmSettings = Field(default_factory=SwarmSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)

    @model_validator(mode="after")
    def _check_upstreams(self) -> Settings:
        names = [u.name for u in self.upstreams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"upstream names must be unique; repeated: {duplicates}")
        wanted_by = {
            "modes.thinking": self.modes.thinking.upstream,
            "modes.instant": self.modes.instant.upstream,
            "agent": self.agent.upstream,
        }
        for mode_name, wanted in wanted_by.items():
            if wanted is not None and wanted not in names and not (
                wanted == "embedded" and not self.upstreams
            ):
                raise ValueError(
                    f"{mode_name}.upstream is {wanted!r}, but the upstreams are {names}"
                )
        known = names or ["embedded"]
        for key in ("orchestrator_upstreams", "worker_upstreams"):
            unknown = [n for n in getattr(self.swarm, key) if n not in known]
            if unknown:
                raise ValueError(f"swarm.{key} names {unknown}, but the upstreams are {known}")
        return self

    def worker_count(self, cores: int) -> int:
        """How many gateway processes ``serve`` starts on a machine with ``cores`` cores:
        ``server.workers`` when set (0: one per core); unset, one per core when the run store
        is PostgreSQL and no upstream runs inside the gateway (an embedded model would be
        loaded once per process), else one. SQLite serves several workers safely, but a run
        is cancelled and watched across processes only at the owner's next beat or poll, so
        several workers on it are asked for, not assumed."""
        if self.server.workers is not None:
            return self.server.workers or max(1, cores)
        in_process = any(u.kind == "embedded" for u in self.effective_upstreams())
        return max(1, cores) if self.store.url and not in_process else 1

    def shared_by(self, processes: int) -> Settings:
        """These settings for one of ``processes`` gateway processes on one machine: the
        gateway-wide caps (each upstream's ``max_concurrency``, the swarm's
        ``max_concurrent_subagents``) divided between them, rounded down and at least 1, so
        the processes together stay within each cap (a cap below ``processes`` is then
        exceeded: each process keeps 1)."""
        if processes <= 1:
            return self
        upstreams = [u.model_copy(update={"max_concurrency": max(1, u.max_concurrency
                                                                  // processes)})
                     if u.max_concurrency else u for u in self.upstreams]
        swarm = self.swarm.model_copy(update={"max_concurrent_subagents": max(
            1, self.swarm.max_concurrent_subagents // processes)})
        return self.model_copy(update={"upstreams": upstreams, "swarm": swarm})

    def effective_upstreams(self) -> list[UpstreamSettings]:
        """The configured upstreams, or the embedded default when there are none."""
        return list(self.upstreams) or [UpstreamSettings(name="embedded", kind="embedded")]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file comes from model_config["toml_file"], set by load_settings() on a
        # subclass made for that one file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


class ConfigError(ValueError):
    """The configuration is unusable; the message says which setting and why."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings from ``config_file`` (or ``$KIMI_MODES_CONFIG``), the environment
    and ``overrides`` (highest precedence). Raises :class:`ConfigError` with a readable
    message when the file is missing or a value is invalid."""
    from pydantic import ValidationError

    path_text = config_file if config_file is not None else os.environ.get("KIMI_MODES_CONFIG")
    path = Path(path_text) if path_text else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    settings_cls: type[Settings] = Settings
    if path is not None:
        settings_cls = type(
            "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
        )
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        where = f" in {str(path)!r}" if path else ""
        raise ConfigError(f"invalid configuration{where}: {problems}") from None
    except Exception as exc:  # a TOML syntax error surfaces here
        raise ConfigError(f"cannot read configuration {str(path)!r}: {exc}") from None
