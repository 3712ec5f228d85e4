import pytest

from kimi_modes.modes import Mode, ModeError, resolve_mode
from kimi_modes.modes.catalog import MODELS, lookup_model


def test_every_listed_model_resolves_to_its_mode() -> None:
    assert [m.id for m in MODELS] == [
        "kimi-k2.5-instant",
        "kimi-k2.5-thinking",
        "kimi-k2.5-agent",
        "kimi-k2.5-swarm",
    ]
    assert resolve_mode("kimi-k2.5-instant").mode is Mode.INSTANT
    assert resolve_mode("kimi-k2.5-thinking").mode is Mode.THINKING
    assert resolve_mode("kimi-k2.5-agent").mode is Mode.AGENT
    assert resolve_mode("kimi-k2.5-swarm").mode is Mode.SWARM


@pytest.mark.parametrize(("thinking", "mode"), [(None, Mode.THINKING), (True, Mode.THINKING),
                                                (False, Mode.INSTANT)])
def test_the_switch_overrides_the_thinking_model(thinking: bool | None, mode: Mode) -> None:
    resolved = resolve_mode("kimi-k2.5-thinking", thinking)
    assert resolved.mode is mode and resolved.thinking is (mode is Mode.THINKING)


def test_instant_model_can_be_switched_on() -> None:
    assert resolve_mode("kimi-k2.5-instant").thinking is False
    assert resolve_mode("kimi-k2.5-instant", True).mode is Mode.THINKING


def test_agent_keeps_its_mode_whatever_the_switch() -> None:
    for thinking in (None, True, False):
        assert resolve_mode("kimi-k2.5-agent", thinking).mode is Mode.AGENT
    assert resolve_mode("kimi-k2.5-agent").thinking is True
    assert resolve_mode("kimi-k2.5-agent", False).thinking is False


def test_alias_resolves() -> None:
    assert lookup_model("kimi-k2.5").id == "kimi-k2.5-thinking"


def test_unknown_model_is_404_and_lists_the_ids() -> None:
    with pytest.raises(ModeError) as info:
        resolve_mode("gpt-4o")
    assert info.value.status == 404
    assert "kimi-k2.5-instant" in info.value.message
    assert info.value.param == "model"
