"""Reward functions for GSPO, in TRL's calling convention, and how several combine.

A reward function is called by TRL's ``GRPOTrainer`` as
``f(prompts=..., completions=..., completion_ids=..., **dataset_columns)`` and returns one
float per completion (``None``: not applicable to that row). Several rewards combine by
weight, either summed then normalised per group (``sum_then_normalize``, the weighted sum) or
normalised each then summed (``normalize_then_sum``); TRL logs each one as
``rewards/<name>/mean``.

The Kimi rewards read the completion's tokens with special tokens kept (TRL's decoded text
drops them, and with them Kimi's tool-call markers) and score them with our parser
(:func:`kimi_modes.protocol.parse.parse_output`, which validates each call against the row's
``tools`` with :func:`kimi_modes.protocol.schema.validate_tool_call`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kimi_modes.bench.agents.check import parse_checkers, run_checkers
from kimi_modes.protocol.output import ParsedOutput
from kimi_modes.protocol.parse import parse_output

RewardFunc = Callable[..., list[float | None]]
Aggregation = Literal["sum_then_normalize", "normalize_then_sum"]


@dataclass(frozen=True, slots=True)
class Rewards:
    """The reward functions of a run, their weights (default 1 each) and how they combine."""

    funcs: list[RewardFunc]
    weights: list[float] = field(default_factory=list)
    aggregation: Aggregation = "sum_then_normalize"

    def resolved_weights(self) -> list[float]:
        """One weight per function (1.0 where none was given)."""
        if self.weights and len(self.weights) != len(self.funcs):
            raise ValueError(f"{len(self.weights)} weights for {len(self.funcs)} reward functions")
        return self.weights or [1.0] * len(self.funcs)


class _KimiReward:
    """Shared part of the Kimi rewards: decode with special tokens, parse per family."""

    __name__ = "kimi"

    def __init__(self, tokenizer: Any, family: str, *, thinking: bool | None = None) -> None:
        self.tokenizer = tokenizer
        self.family = family
        self.thinking = thinking

    def _parse(self, ids: Sequence[int], tools: list[Any] | None) -> ParsedOutput:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False)
        return parse_output(text, self.family, thinking=self.thinking, tools=tools)

    def __call__(
        self, completion_ids: Sequence[Sequence[int]], **columns: Any
    ) -> list[float | None]:
        tools = columns.get("tools") or [""] * len(completion_ids)
        checks = columns.get("check") or [""] * len(completion_ids)
        scores = []
        for ids, row_tools, row_check in zip(completion_ids, tools, checks, strict=True):
            declared = _json_list(row_tools)
            scores.append(self.score(self._parse(ids, declared), declared, _json_list(row_check)))
        return scores

    def score(
        self, parsed: ParsedOutput, tools: list[Any] | None, check: list[Any] | None
    ) -> float | None:
        """The reward of one parsed completion given the row's ``tools`` and ``check``."""
        raise NotImplementedError


def _json_list(value: Any) -> list[Any] | None:
    """A dataset cell holding a JSON list (as text, or already decoded); ``None`` if empty."""
    decoded = json.loads(value) if isinstance(value, str) and value else value
    return list(decoded) if decoded else None


class ToolCallValidity(_KimiReward):
    """Share of the completion's tool calls that parse and validate against the row's tools.

    0.0 for a completion with no call; ``None`` (not scored) on a row without tools.
    """

    __name__ = "tool_call_validity"

    def score(
        self, parsed: ParsedOutput, tools: list[Any] | None, check: list[Any] | None
    ) -> float | None:
        if not tools:
            return None
        calls = parsed.tool_calls
        return sum(call.valid for call in calls) / len(calls) if calls else 0.0


class AnswerFormat(_KimiReward):
    """1.0 when the completion is a usable Kimi answer: tool calls that all validate, or
    (without calls) non-blank content outside the reasoning; else 0.0.
    """

    __name__ = "answer_format"

    def score(
        self, parsed: ParsedOutput, tools: list[Any] | None, check: list[Any] | None
    ) -> float | None:
        if parsed.tool_calls:
            return float(all(call.valid for call in parsed.tool_calls))
        return float(bool(parsed.content and parsed.content.strip()))


class TaskCheck(_KimiReward):
    """1.0 when the completion's content passes the row's ``bench agents`` checkers, else 0.0;
    ``None`` on a row without checkers. Checkers run as ``bench agents`` runs them
    (``python`` checkers in a subprocess, with their timeout).
    """

    __name__ = "task_check"

    def score(
        self, parsed: ParsedOutput, tools: list[Any] | None, check: list[Any] | None
    ) -> float | None:
        if not check:
            return None
        checkers = [c for spec in check for c in parse_checkers(spec)]
        result = asyncio.run(run_checkers(checkers, parsed.content or ""))
        return float(result.passed)


def load_reward_file(path: Path) -> Rewards:
    """The rewards a user's Python file declares.

    The file defines ``REWARDS`` (a list of callables in TRL's convention), optionally
    ``WEIGHTS`` (a list of floats) and ``AGGREGATION`` (``"sum_then_normalize"`` or
    ``"normalize_then_sum"``). The file runs as ordinary Python: only load files you trust.
    """
    spec = importlib.util.spec_from_file_location(f"kimi_modes_rewards_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    namespace: Mapping[str, Any] = vars(module)
    funcs = namespace.get("REWARDS")
    if not isinstance(funcs, list) or not funcs or not all(callable(f) for f in funcs):
        raise ValueError(f"{path}: define REWARDS = [reward_function, ...]")
    weights = [float(w) for w in namespace.get("WEIGHTS", [])]
    aggregation = namespace.get("AGGREGATION", "sum_then_normalize")
    if aggregation not in ("sum_then_normalize", "normalize_then_sum"):
        raise ValueError(f"{path}: AGGREGATION must be sum_then_normalize or normalize_then_sum")
    rewards = Rewards(list(funcs), weights, aggregation)
    rewards.resolved_weights()
    return rewards
