from pathlib import Path

import pytest

from kimi_modes.config import ConfigError, load_settings
from kimi_modes.protocol.families import Family


def test_defaults_use_the_embedded_engine_and_the_familys_sampling() -> None:
    settings = load_settings()
    assert settings.server.port == 8000
    assert [u.kind for u in settings.effective_upstreams()] == ["embedded"]
    # unset: the router fills in each family's recommended values (tests/modes/test_router.py)
    assert (settings.modes.thinking.temperature, settings.modes.thinking.top_p) == (None, None)
    assert (settings.modes.instant.temperature, settings.modes.instant.top_p) == (None, None)


def test_toml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.toml"
    path.write_text(
        '[server]\nport = 9001\napi_keys = ["sk-1"]\n'
        '[[upstreams]]\nname = "a"\nurl = "http://h:1/v1/"\ndialect = "sglang"\n'
        '[modes.instant]\ntemperature = 0.3\n'
    )
    monkeypatch.setenv("KIMI_MODES_SERVER__HOST", "0.0.0.0")
    settings = load_settings(path)
    assert settings.server.port == 9001
    assert settings.server.host == "0.0.0.0"
    assert settings.server.api_keys[0].get_secret_value() == "sk-1"
    assert settings.upstreams[0].url == "http://h:1/v1"
    assert settings.upstreams[0].dialect == "sglang"
    assert settings.modes.instant.temperature == 0.3
    assert settings.modes.instant.top_p is None


@pytest.mark.parametrize("how", ["toml", "env"])
def test_operator_api_keys_are_secrets_beside_the_api_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    assert load_settings().server.operator_api_keys == []
    path = tmp_path / "k.toml"
    if how == "toml":
        path.write_text('[server]\napi_keys = ["sk-1"]\noperator_api_keys = ["sk-op"]\n')
    else:
        path.write_text('[server]\napi_keys = ["sk-1"]\n')
        monkeypatch.setenv("KIMI_MODES_SERVER__OPERATOR_API_KEYS", '["sk-op"]')
    server = load_settings(path).server
    assert [k.get_secret_value() for k in server.operator_api_keys] == ["sk-op"]
    assert [k.get_secret_value() for k in server.api_keys] == ["sk-1"]
    assert "sk-op" not in repr(server)


@pytest.mark.parametrize("how", ["toml", "env"])
def test_a_partial_mode_table_leaves_the_other_fields_to_the_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = tmp_path / "k.toml"
    if how == "toml":
        path.write_text(
            '[modes.thinking]\ntemperature = 0.8\n[modes.instant]\nmax_tokens = 512\n'
        )
    else:
        path.write_text("")
        monkeypatch.setenv("KIMI_MODES_MODES__THINKING__TEMPERATURE", "0.8")
        monkeypatch.setenv("KIMI_MODES_MODES__INSTANT__MAX_TOKENS", "512")
    modes = load_settings(path).modes
    assert (modes.thinking.temperature, modes.thinking.top_p) == (0.8, None)
    assert (modes.instant.temperature, modes.instant.top_p) == (None, None)
    assert modes.instant.max_tokens == 512


def test_api_key_env_reads_the_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[[upstreams]]\nname = "a"\nurl = "http://h/v1"\napi_key_env = "MY_KEY"\n')
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    upstream = load_settings(path).upstreams[0]
    assert upstream.api_key is not None
    assert upstream.api_key.get_secret_value() == "sk-from-env"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ConfigError, match=r"api_key_env.*'MY_KEY'.*not set"):
        load_settings(path)


def test_a_key_from_api_key_env_stays_out_of_dumps_and_survives_revalidation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``serve`` validates the loaded settings again after applying its flags.
    path = tmp_path / "k.toml"
    path.write_text('[[upstreams]]\nname = "a"\nurl = "http://h/v1"\napi_key_env = "MY_KEY"\n')
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    settings = load_settings(path)
    dumped = settings.model_dump()
    assert dumped["upstreams"][0]["api_key"] is None
    assert "sk-from-env" not in settings.model_dump_json()
    again = type(settings).model_validate(dumped).upstreams[0]
    assert again.api_key is not None and again.api_key.get_secret_value() == "sk-from-env"


def test_api_key_and_api_key_env_exclude_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.toml"
    path.write_text(
        '[[upstreams]]\nname = "a"\nurl = "http://h/v1"\napi_key = "sk-1"\n'
        'api_key_env = "MY_KEY"\n'
    )
    monkeypatch.setenv("MY_KEY", "sk-2")
    with pytest.raises(ConfigError, match="both api_key and api_key_env"):
        load_settings(path)


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.toml"
    path.write_text("[server]\nport = 9100\n")
    monkeypatch.setenv("KIMI_MODES_CONFIG", str(path))
    assert load_settings().server.port == 9100


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[upstreams]]\nname = "a"\nkind = "openai_chat"\n', "needs a url"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x/v1"\ndialect = "nope"\n', "unknown dialect"),
        ('[server]\nport = "many"\n', "server.port"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x"\n[[upstreams]]\nname = "a"\nurl = "http://y"\n',
         "unique"),
        ('[modes.thinking]\nupstream = "ghost"\n[[upstreams]]\nname = "a"\nurl = "http://x"\n',
         "ghost"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x"\nkind = "kimi_raw"\nrouter = true\n',
         "router = true needs kind openai_chat"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x"\nrouter = true\n'
         'metrics_url = "http://x/metrics"\n', "metrics_url would never be read"),
        ('[modes.instant]\nobjective = "Not A Name"\n', "modes.instant.objective"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x"\nsession_header = "x session"\n',
         "session_header"),
        ("[server\n", "cannot read"),
        ("[bogus]\nx = 1\n", "bogus"),
    ],
)
def test_bad_configuration_says_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(path)


@pytest.mark.parametrize("family", list(Family))
def test_every_protocol_family_is_accepted(tmp_path: Path, family: Family) -> None:
    path = tmp_path / "k.toml"
    path.write_text(f'[[upstreams]]\nname = "a"\nurl = "http://x/v1"\nfamily = "{family}"\n')
    upstream = load_settings(path).upstreams[0]
    assert upstream.family is family
    assert upstream.family == family.value


def test_an_unknown_family_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[[upstreams]]\nname = "a"\nurl = "http://x/v1"\nfamily = "k4"\n')
    with pytest.raises(ConfigError, match=r"family.*'k2-instruct'.*'k3'"):
        load_settings(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_the_store_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = load_settings().store
    assert default.url is None and default.lease_seconds == 15.0
    path = tmp_path / "k.toml"
    path.write_text('[store]\nurl = "postgresql://kimi@db:5432/runs"\nlease_seconds = 5\n')
    settings = load_settings(path)
    assert settings.store.url == "postgresql://kimi@db:5432/runs"
    assert settings.store.lease_seconds == 5.0
    monkeypatch.setenv("KIMI_MODES_STORE__LEASE_SECONDS", "7.5")
    assert load_settings(path).store.lease_seconds == 7.5
    path.write_text('[store]\nurl = "sqlite:///tmp/runs.db"\n')
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings(path)


def test_a_router_upstream_and_the_objective_of_each_mode(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text(
        '[[upstreams]]\nname = "gie"\nurl = "http://gateway/v1"\nrouter = true\n'
        'session_header = "x-dynamo-session-id"\n'
        '[modes.instant]\nobjective = "sheddable"\n[modes.thinking]\nobjective = "critical"\n'
        '[agent]\nobjective = "agent"\n'
        '[swarm]\nobjective = "critical"\nsubagent_objective = "batch.sheddable"\n')
    settings = load_settings(path)
    upstream = settings.upstreams[0]
    assert upstream.router and upstream.session_header == "x-dynamo-session-id"
    assert upstream.metrics_url is None
    assert (settings.modes.instant.objective, settings.modes.thinking.objective,
            settings.agent.objective, settings.swarm.objective,
            settings.swarm.subagent_objective) == (
        "sheddable", "critical", "agent", "critical", "batch.sheddable")
    plain = load_settings(tmp_path / "k.toml", upstreams=[{"name": "a", "url": "http://x"}])
    assert not plain.upstreams[0].router and plain.upstreams[0].session_header == "x-session-id"


@pytest.mark.parametrize(("model", "family"), [
    ("moonshotai/Kimi-K3", "k3"), ("moonshotai/Kimi-K2.6", "k2.6"),
    ("moonshotai/Kimi-K2.7-Code", "k2.7-code"), ("moonshotai/Kimi-K2-Instruct-0905", "k2-instruct"),
    ("moonshotai/Kimi-K2-Thinking", "k2-thinking"), ("unsloth/Kimi-K2.5-GGUF", "k2.5"),
    ("kimi-k3-thinking", "k3"), ("my-served-name", None)])
def test_the_family_is_read_from_the_model_name(model: str, family: str | None) -> None:
    from kimi_modes.config import family_from_model_name

    assert family_from_model_name(model) == family
    upstream = load_settings(None, upstreams=[{"url": "http://x/v1", "model": model}]).upstreams[0]
    assert upstream.family == family
    assert upstream.served_family == (family or "k2.5")


def test_a_configured_family_wins_over_the_model_name() -> None:
    upstream = load_settings(None, upstreams=[{"url": "http://x/v1", "family": "k2.6",
                                               "model": "moonshotai/Kimi-K3"}]).upstreams[0]
    assert upstream.family == "k2.6"


@pytest.mark.parametrize(("text", "cores", "expected"), [
    ("", 8, 1),  # the embedded model: loaded once per process
    ('[[upstreams]]\nname = "a"\nkind = "openai_chat"\nurl = "http://e/v1"\n', 8, 1),  # SQLite
    ('[[upstreams]]\nname = "a"\nkind = "openai_chat"\nurl = "http://e/v1"\n'
     '[store]\nurl = "postgresql://db/runs"\n', 8, 8),
    ('[store]\nurl = "postgresql://db/runs"\n', 8, 1),  # PostgreSQL, but embedded
    ('[server]\nworkers = 3\n', 8, 3),
    ('[server]\nworkers = 0\n', 6, 6),
])
def test_how_many_workers_serve_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       text: str, cores: int, expected: int) -> None:
    monkeypatch.delenv("KIMI_MODES_STORE__URL", raising=False)
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_settings(path).worker_count(cores) == expected


def test_the_gateway_wide_caps_are_divided_between_the_workers(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[upstreams]]\nname = "a"\nkind = "openai_chat"\nurl = "http://e/v1"\n'
                    'max_concurrency = 9\n[[upstreams]]\nname = "b"\nkind = "openai_chat"\n'
                    'url = "http://f/v1"\n[swarm]\nmax_concurrent_subagents = 3\n')
    settings = load_settings(path)
    shared = settings.shared_by(2)
    assert [u.max_concurrency for u in shared.upstreams] == [4, None]
    assert shared.swarm.max_concurrent_subagents == 1
    assert settings.shared_by(4).swarm.max_concurrent_subagents == 1  # never below one
    assert settings.upstreams[0].max_concurrency == 9  # the settings given are unchanged
    assert settings.shared_by(1) is settings
