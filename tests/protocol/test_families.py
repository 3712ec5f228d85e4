from __future__ import annotations

import pytest

from kimi_modes.protocol import (
    Family,
    PromptError,
    family_info,
    format_output,
    parse_output,
    render_prompt,
)
from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.families import Sampling


def test_families_are_str_enums() -> None:
    assert isinstance(Family.K2_5, str) and str(Family.K2_5) == "k2.5"
    assert Family("k2.5") is Family.K2_5
    assert [f.value for f in Family] == [
        "k2-instruct", "k2-thinking", "k2.5", "k2.6", "k2.7-code", "k3"
    ]  # fmt: skip


def test_family_facts() -> None:
    k25 = family_info("k2.5")
    assert (k25.name, k25.context_window, k25.thinking) == (Family.K2_5, 262144, "switchable")
    assert k25.default_sampling() == Sampling(temperature=1.0, top_p=0.95)
    assert k25.default_sampling(thinking=False) == Sampling(temperature=0.6, top_p=0.95)
    instruct = family_info(Family.K2_INSTRUCT)
    assert (instruct.context_window, instruct.thinking) == (131072, "none")
    assert instruct.default_sampling(thinking=True) == Sampling(temperature=0.6)
    thinking = family_info("k2-thinking")
    assert (thinking.context_window, thinking.thinking) == (262144, "always")
    assert thinking.default_sampling(thinking=False) == Sampling(temperature=1.0)


@pytest.mark.parametrize(
    ("family", "switch", "thinks"),
    [
        ("k2.5", None, True),
        ("k2.5", True, True),
        ("k2.5", False, False),
        ("k2-thinking", False, True),
        ("k2-instruct", True, False),
        ("k2.6", None, True),
        ("k2.6", False, False),
        ("k2.7-code", False, True),
        ("k3", None, True),
        ("k3", False, False),
    ],
)
def test_thinks(family: str, switch: bool | None, thinks: bool) -> None:
    assert family_info(family).thinks(switch) is thinks


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown Kimi model family 'K2\.5'; known: 'k2-instruct'"
    ):
        family_info("K2.5")


def test_k26_k27_k3_facts() -> None:
    k26, k27, k3 = family_info("k2.6"), family_info("k2.7-code"), family_info("k3")
    assert (k26.wire_format, k26.thinking, k26.preserve_thinking) == (
        "k2",
        "switchable",
        "switchable",
    )
    assert k26.default_sampling() == Sampling(temperature=1.0, top_p=0.95)
    assert k26.default_sampling(thinking=False) == Sampling(temperature=0.6, top_p=0.95)
    assert (k27.wire_format, k27.thinking, k27.preserve_thinking) == ("k2", "always", "always")
    assert (k3.wire_format, k3.context_window, k3.thinking) == ("xtml", 1048576, "switchable")
    assert k3.stop_strings == ("<|end_of_msg|>", "[EOS]")
    assert family_info("k2.5").stop_strings == T.STOP_STRINGS == ("<|im_end|>", "[EOS]")
    assert [family_info(f).engine_parser for f in ("k2.5", "k2.6", "k2.7-code", "k3")] == [
        "kimi_k2", "kimi_k2", "kimi_k2", "kimi_k3"
    ]  # fmt: skip


@pytest.mark.parametrize("family", list(Family))
def test_reasoning_markers_are_what_the_renderer_and_formatter_write(family: Family) -> None:
    info = family_info(family)
    if info.thinking == "none":
        return
    chat = {"messages": [{"role": "user", "content": "Hi"}]}
    prompt = render_prompt(chat, family, thinking=True)
    out = format_output(family, reasoning="Hmm.", content="Hello", thinking=True)
    if info.think_prefill:
        assert prompt.endswith(info.reasoning_begin)
        assert out.startswith("Hmm." + info.reasoning_end)
    else:
        assert out.startswith(info.reasoning_begin + "Hmm." + info.reasoning_end)
    assert parse_output(out, family, thinking=True).reasoning_content == "Hmm."


@pytest.mark.parametrize(
    ("family", "thinking", "preserve", "preserves"),
    [
        ("k2.5", True, True, False),
        ("k2.6", None, None, False),
        ("k2.6", True, True, True),
        ("k2.6", False, True, False),
        ("k2.7-code", False, False, True),
        ("k3", None, None, True),
        ("k3", False, None, False),
    ],
)
def test_preserves_thinking(
    family: str, thinking: bool | None, preserve: bool | None, preserves: bool
) -> None:
    assert family_info(family).preserves_thinking(thinking, preserve) is preserves


def test_thinking_effort() -> None:
    k3 = family_info("k3")
    assert k3.thinking_effort(None, None) == "max"
    assert k3.thinking_effort(True, "low") == "low"
    assert k3.thinking_effort(False, "high") is None
    with pytest.raises(PromptError, match=r"'medium' is not supported by k3; use one of low"):
        k3.thinking_effort(True, "medium")
    assert family_info("k2.6").thinking_effort(True, None) is None
    with pytest.raises(PromptError, match=r"the k2\.6 family takes no thinking_effort"):
        family_info("k2.6").thinking_effort(True, "high")
