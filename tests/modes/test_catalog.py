import pytest

from kimi_modes.modes import Catalog, Mode, ModeError
from kimi_modes.protocol.families import Family

K25 = Catalog([("default", "k2.5")])
MIXED = Catalog([("k3-a", "k3"), ("k26", "k2.6"), ("k3-b", "k3"), ("code", "k2.7-code"),
                 ("instruct", "k2-instruct")], default="k2.6")


def test_one_model_lists_its_four_modes_then_the_mode_aliases() -> None:
    assert K25.ids == [
        "kimi-k2.5-instant", "kimi-k2.5-thinking", "kimi-k2.5-agent", "kimi-k2.5-swarm",
        "kimi-instant", "kimi-thinking", "kimi-agent", "kimi-swarm",
    ]
    assert K25.resolve("kimi-k2.5-instant").mode is Mode.INSTANT
    assert K25.resolve("kimi-k2.5-thinking").mode is Mode.THINKING
    assert K25.resolve("kimi-k2.5-agent").mode is Mode.AGENT
    assert K25.resolve("kimi-k2.5-swarm").mode is Mode.SWARM
    assert K25.resolve("kimi-swarm").entry.alias_of == "kimi-k2.5-swarm"


def test_each_served_family_gets_its_modes_and_its_upstreams() -> None:
    ids = MIXED.ids
    for mode in Mode:
        assert f"kimi-k3-{mode}" in ids and f"kimi-k2.6-{mode}" in ids
    assert "kimi-k2.7-code-thinking" in ids and "kimi-k2.7-code-instant" not in ids
    assert "kimi-k2-instruct-instant" in ids and "kimi-k2-instruct-thinking" not in ids
    assert "kimi-k2.5-instant" not in ids  # K2.5 is not served here
    k3 = MIXED.resolve("kimi-k3-thinking")
    assert (k3.family, k3.entry.upstreams) == (Family.K3, ("k3-a", "k3-b"))
    assert MIXED.resolve("kimi-k2.6-instant").entry.upstreams == ("k26",)
    # The aliases name the default model, K2.6 here.
    assert MIXED.resolve("kimi-instant").family is Family.K2_6
    assert "family" not in MIXED.entries[0].description


def test_k3_instant_is_thinking_off_and_says_so() -> None:
    resolved = MIXED.resolve("kimi-k3-instant")
    assert resolved.mode is Mode.INSTANT and resolved.thinking is False
    assert "thinking off in the encoder" in resolved.entry.description


def test_a_thinking_only_model_has_no_instant_and_refuses_thinking_off() -> None:
    with pytest.raises(ModeError) as info:
        MIXED.resolve("kimi-k2.7-code-instant")
    assert info.value.status == 404 and "always reasons" in info.value.message
    assert "kimi-k2.7-code-thinking" in info.value.message
    for model in ("kimi-k2.7-code-thinking", "kimi-k2.7-code-agent"):
        with pytest.raises(ModeError) as info:
            MIXED.resolve(model, False)
        assert info.value.status == 400 and info.value.param == "thinking"
    assert MIXED.resolve("kimi-k2.7-code-agent").thinking is True


def test_a_model_that_cannot_reason_refuses_thinking_on() -> None:
    assert MIXED.resolve("kimi-k2-instruct-agent").thinking is False
    with pytest.raises(ModeError) as info:
        MIXED.resolve("kimi-k2-instruct-instant", True)
    assert info.value.status == 400 and "cannot reason" in info.value.message


@pytest.mark.parametrize(("thinking", "mode"), [(None, Mode.THINKING), (True, Mode.THINKING),
                                                (False, Mode.INSTANT)])
def test_the_switch_overrides_the_thinking_model(thinking: bool | None, mode: Mode) -> None:
    resolved = K25.resolve("kimi-k2.5-thinking", thinking)
    assert resolved.mode is mode and resolved.thinking is (mode is Mode.THINKING)


def test_instant_model_can_be_switched_on() -> None:
    assert K25.resolve("kimi-k2.5-instant").thinking is False
    assert K25.resolve("kimi-k2.5-instant", True).mode is Mode.THINKING


def test_agent_keeps_its_mode_whatever_the_switch() -> None:
    for thinking in (None, True, False):
        assert K25.resolve("kimi-k2.5-agent", thinking).mode is Mode.AGENT
    assert K25.resolve("kimi-k2.5-agent").thinking is True
    assert K25.resolve("kimi-k2.5-agent", False).thinking is False


def test_unlisted_aliases_resolve() -> None:
    assert K25.lookup("kimi-k2.5").id == "kimi-k2.5-thinking"
    assert K25.lookup("kimi-k2.5-instruct").id == "kimi-k2.5-instant"
    assert MIXED.lookup("kimi-k2-instruct").id == "kimi-k2-instruct-instant"
    assert MIXED.lookup("kimi-k3").id == "kimi-k3-thinking"


def test_unknown_model_is_404_and_lists_the_ids() -> None:
    with pytest.raises(ModeError) as info:
        K25.resolve("gpt-4o")
    assert info.value.status == 404
    assert "kimi-k2.5-instant" in info.value.message
    assert info.value.param == "model"
    with pytest.raises(ModeError) as info:
        K25.resolve(None)
    assert info.value.status == 400


def test_the_default_model_must_be_served() -> None:
    with pytest.raises(ValueError, match="not served"):
        Catalog([("a", "k2.5")], default="k3")
    with pytest.raises(ValueError, match="at least one"):
        Catalog([])
