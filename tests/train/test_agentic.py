"""Agentic rollouts on the tiny model: its tool call runs in the bubblewrap sandbox and the
result is in the next turn; the rollout drives a GSPO step through TRL's rollout hook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import GenerationConfig

from kimi_modes.train.agentic import AgenticRollout
from kimi_modes.train.gspo import train_gspo
from kimi_modes.train.presets import KIMI
from kimi_modes.train.rewards import Rewards, ToolCallValidity

FAMILY = "k2-instruct"
CALL = ('<|tool_calls_section_begin|><|tool_call_begin|>functions.python:0'
        '<|tool_call_argument_begin|>{"code": "print(6*7)"}<|tool_call_end|>'
        '<|tool_calls_section_end|>')

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def _prompt(tokenizer: Any, rollout: AgenticRollout) -> str:
    messages = [{"role": "user", "content": "Compute"}]
    text: str = tokenizer.apply_chat_template(
        messages, tools=rollout.declarations(), add_generation_prompt=True, tokenize=False)
    return text


def _teach_the_call(model: Any, tokenizer: Any, prompt: str) -> None:
    """Supervised steps until the tiny model writes CALL after ``prompt`` (a real model that
    learned one tool call, so that the rollout sees the model's own tokens)."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    target = [*tokenizer.encode(CALL, add_special_tokens=False), tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + target])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.eval()


def test_an_episode_runs_the_models_call_in_the_sandbox(tiny_model: Any, tokenizer: Any) -> None:
    rollout = AgenticRollout(tokenizer, FAMILY, max_turns=2)
    assert [d["function"]["name"] for d in rollout.declarations()] == ["python", "shell"]
    prompt = _prompt(tokenizer, rollout)
    _teach_the_call(tiny_model, tokenizer, prompt)
    greedy = GenerationConfig(do_sample=False, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    episode = rollout.episode(tiny_model, prompt_ids, greedy, 100)

    assert episode.tool_results[0]["name"] == "python"
    assert episode.tool_results[0]["output"].strip() == "42"  # 6*7 ran in the sandbox
    assert not episode.tool_results[0]["is_error"]
    text = tokenizer.decode(episode.completion_ids, skip_special_tokens=False)
    assert text.startswith(CALL)
    # The result follows the model's turn as a tool message, then the model goes on.
    first_tool = episode.env_mask.index(0)
    model_again = episode.env_mask.index(1, first_tool)
    shown = tokenizer.decode(episode.completion_ids[first_tool:model_again])
    assert shown == "<|im_tool|>42<|im_end|><|im_assistant|>"
    assert len(episode.logprobs) == len(episode.completion_ids) == len(episode.env_mask)
    assert all(lp == 0.0 for lp, m in zip(episode.logprobs, episode.env_mask, strict=True)
               if m == 0)
    assert all(lp <= 0.0 for lp in episode.logprobs)


def test_the_rollout_drives_a_gspo_step(tiny_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    rollout = AgenticRollout(tokenizer, FAMILY, max_turns=2)
    prompt = _prompt(tokenizer, rollout)
    _teach_the_call(tiny_model, tokenizer, prompt)
    tiny_model.train()
    seen: list[str] = []

    def ran_code(tool_results: list[str], **_: Any) -> list[float]:
        seen.extend(tool_results)
        return [float(any(r["output"].strip() == "42" for r in json.loads(results)))
                for results in tool_results]

    tools = json.dumps(rollout.declarations())
    steps = train_gspo(
        tiny_model, tokenizer,
        Dataset.from_list([{"prompt": prompt, "tools": tools}] * 2),
        Rewards([ran_code, ToolCallValidity(tokenizer, FAMILY)]),
        KIMI.with_(num_generations=2, per_device_train_batch_size=2,
                   gradient_accumulation_steps=1, minibatches_per_generation=1,
                   max_completion_length=120, max_steps=1, lora_rank=2, lora_alpha=4),
        tmp_path / "adapter",
        rollout=rollout, use_cpu=True, disable_tqdm=True,
    )
    assert len(steps) == 1 and seen  # TRL passed the episodes' tool results to the reward
    assert steps[0].rewards["ran_code"] > 0
