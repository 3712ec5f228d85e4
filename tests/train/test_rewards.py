"""Rewards: Kimi wire-format scoring through our parser, task checks, user reward files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kimi_modes.train.rewards import AnswerFormat, TaskCheck, ToolCallValidity, load_reward_file
from kimi_modes.train.tasks import SCENARIOS, load_dataset, scenario_path

TOOLS = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            },
        }
    ]
)


def _call(arguments: str) -> str:
    return (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.lookup_order:0"
        f"<|tool_call_argument_begin|>{arguments}<|tool_call_end|><|tool_calls_section_end|>"
    )


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def test_tool_call_validity_scores_what_our_parser_validates(tokenizer: Any) -> None:
    texts = [_call('{"order_id": "A1"}'), _call('{"order": 1}'), "no call at all", _call("{")]
    reward = ToolCallValidity(tokenizer, "k2-instruct")
    assert reward(completion_ids=_ids(tokenizer, texts), tools=[TOOLS] * 4) == [1.0, 0, 0, 0]
    assert reward(completion_ids=_ids(tokenizer, texts[:1]), tools=[""]) == [None]


def test_answer_format_wants_content_or_valid_calls(tokenizer: Any) -> None:
    texts = ["Your order shipped.", "   ", _call('{"order_id": "A1"}'), _call('{"x": 1}')]
    reward = AnswerFormat(tokenizer, "k2-instruct")
    assert reward(completion_ids=_ids(tokenizer, texts), tools=[TOOLS] * 4) == [1, 0, 1, 0]


def test_task_check_runs_the_bench_checkers(tokenizer: Any) -> None:
    check = json.dumps([{"regex": "(?i)refund"}])
    reward = TaskCheck(tokenizer, "k2-instruct")
    texts = ["We issued a Refund.", "Sorry, no."]
    assert reward(completion_ids=_ids(tokenizer, texts), check=[check, check]) == [1.0, 0.0]


def test_reward_file_declares_functions_weights_and_aggregation(tmp_path: Path) -> None:
    path = tmp_path / "my_rewards.py"
    path.write_text(
        "def short(completions, **_):\n    return [1.0 / (1 + len(c)) for c in completions]\n"
        "REWARDS = [short]\nWEIGHTS = [2.0]\nAGGREGATION = 'normalize_then_sum'\n"
    )
    rewards = load_reward_file(path)
    assert rewards.funcs[0](completions=["abc"]) == [0.25]
    assert rewards.resolved_weights() == [2.0]
    assert rewards.aggregation == "normalize_then_sum"
    path.write_text("REWARDS = []\n")
    with pytest.raises(ValueError, match="REWARDS"):
        load_reward_file(path)


@pytest.mark.parametrize("name", SCENARIOS)
def test_seed_scenarios_become_rows_with_tools_in_the_prompt(name: str, tokenizer: Any) -> None:
    dataset = load_dataset([scenario_path(name)], tokenizer)
    assert len(dataset) == 3
    row = dataset[0]
    tools = json.loads(row["tools"])
    assert tools and tools[0]["function"]["name"] in row["prompt"]
    assert row["prompt"].endswith("<|im_assistant|>")
    assert json.loads(row["check"])
