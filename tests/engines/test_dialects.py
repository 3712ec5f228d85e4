from typing import Any

import pytest

from kimi_modes.engines.dialects import DIALECTS, merge_into
from kimi_modes.protocol import PromptError


@pytest.mark.parametrize(
    ("dialect", "thinking", "fragment"),
    [
        ("vllm", False, {"chat_template_kwargs": {"thinking": False}}),
        ("sglang", True, {"chat_template_kwargs": {"thinking": True}}),
        ("llama-server", False, {"chat_template_kwargs": {"thinking": False}}),
        ("trtllm", False, {"chat_template_kwargs": {"thinking": False}}),
        ("lmdeploy", False, {"enable_thinking": False}),
        ("exo", False, {"enable_thinking": False}),
        ("moonshot", False, {"thinking": {"type": "disabled"}}),
        ("moonshot", True, {"thinking": {"type": "enabled"}}),
        ("none", False, {}),
    ],
)
def test_each_dialect_writes_the_switch_where_its_engine_reads_it(
    dialect: str, thinking: bool, fragment: dict[str, Any]
) -> None:
    assert DIALECTS[dialect].body_fragment(thinking, "k2.5") == fragment


def test_merge_keeps_other_template_kwargs() -> None:
    body = {"chat_template_kwargs": {"other": 1}, "model": "m"}
    merge_into(body, DIALECTS["vllm"].body_fragment(False, "k2.5"))
    assert body == {"chat_template_kwargs": {"other": 1, "thinking": False}, "model": "m"}


@pytest.mark.parametrize(
    ("family", "thinking", "options", "kwargs"),
    [
        # K3: the effort with thinking on, the family's default when none is asked
        ("k3", True, {}, {"thinking": True, "thinking_effort": "max"}),
        ("k3", True, {"thinking_effort": "low"}, {"thinking": True, "thinking_effort": "low"}),
        ("k3", False, {"thinking_effort": "low"}, {"thinking": False}),
        # K2.6: preserve_thinking with thinking on, off unless asked
        ("k2.6", True, {}, {"thinking": True, "preserve_thinking": False}),
        ("k2.6", True, {"preserve_thinking": True}, {"thinking": True, "preserve_thinking": True}),
        ("k2.6", False, {"preserve_thinking": True}, {"thinking": False}),
        # the families where neither is a per-request switch get neither
        ("k2.7-code", True, {"preserve_thinking": True}, {"thinking": True}),
        ("k2.5", True, {"preserve_thinking": True}, {"thinking": True}),
        ("k2-instruct", False, {}, {"thinking": False}),
    ],
)
@pytest.mark.parametrize("dialect", ["vllm", "sglang"])
def test_effort_and_preserve_thinking_go_with_the_switch_for_the_families_that_have_them(
    dialect: str, family: str, thinking: bool, options: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    fragment = DIALECTS[dialect].body_fragment(thinking, family, **options)
    assert fragment == {"chat_template_kwargs": kwargs}


def test_moonshot_spells_preserve_thinking_as_keep_all() -> None:
    moonshot = DIALECTS["moonshot"]
    assert moonshot.body_fragment(True, "k2.6", preserve_thinking=True) == {
        "thinking": {"type": "enabled", "keep": "all"}
    }
    assert moonshot.body_fragment(True, "k2.6") == {"thinking": {"type": "enabled"}}
    assert moonshot.body_fragment(True, "k3") == {"thinking": {"type": "enabled"}}


@pytest.mark.parametrize(
    ("dialect", "family", "options", "message"),
    [
        ("vllm", "k3", {"thinking_effort": "medium"}, "'medium' is not supported by k3"),
        ("vllm", "k2.5", {"thinking_effort": "low"}, "the k2.5 family takes no thinking_effort"),
        ("exo", "k3", {"thinking_effort": "low"}, "'exo' dialect cannot send thinking_effort"),
        ("exo", "k2.6", {"preserve_thinking": True}, "cannot send preserve_thinking"),
    ],
)
def test_what_cannot_be_sent_is_refused_not_dropped(
    dialect: str, family: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DIALECTS[dialect].body_fragment(True, family, **options)


def test_an_effort_the_family_rejects_is_a_prompt_error() -> None:
    with pytest.raises(PromptError):
        DIALECTS["vllm"].body_fragment(True, "k3", thinking_effort="medium")
