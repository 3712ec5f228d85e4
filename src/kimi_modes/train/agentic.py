"""Agentic rollouts: multi-turn episodes whose tool calls run in our sandboxed tools.

TRL's ``GRPOTrainer`` takes a ``rollout_func(prompts, trainer)`` that returns the token ids
of each prompt and completion (plus ``logprobs``; further keys reach the reward functions).
:class:`AgenticRollout` is one: for each prompt it lets the model write a turn, parses the
turn with our protocol parser (:func:`kimi_modes.protocol.parse.parse_output`, the model's
wire format, not TRL's text heuristics), runs every tool call through a
:class:`~kimi_modes.tools.toolset.Toolset` (by default the ``python`` and ``shell`` tools in
the bubblewrap sandbox, one persistent interpreter and workspace per episode), appends the
results as the chat template renders tool messages, and lets the model go on, until it
answers without a call, ``max_turns`` model turns are used, or the completion budget
(``max_completion_length``) is spent.

The completion is every model turn and tool result in order; ``env_mask`` marks the tool
results' tokens 0 so that only the model's own tokens carry the loss. Each completion's tool
calls and results reach the reward functions as the ``tool_results`` column (JSON text).
Episodes of a batch run one after another (per process).
"""

from __future__ import annotations

import asyncio
import copy
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.protocol.output import ParsedOutput, ToolCall
from kimi_modes.protocol.parse import parse_output
from kimi_modes.tools.base import RunContext, Tool, ToolResult
from kimi_modes.tools.code import code_tools
from kimi_modes.tools.toolset import Toolset


@dataclass(slots=True)
class Episode:
    """One rollout: the prompt's ids, then the model's turns and the tool results."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)  # 1: the model's token, 0: a tool's
    logprobs: list[float] = field(default_factory=list)  # 0.0 on tool tokens
    tool_results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, ids: Sequence[int], *, model: bool, logprobs: Sequence[float] = ()) -> None:
        self.completion_ids += list(ids)
        self.env_mask += [int(model)] * len(ids)
        self.logprobs += list(logprobs) if model else [0.0] * len(ids)


class AgenticRollout:
    """A TRL ``rollout_func`` running multi-turn episodes with sandboxed tools.

    ``tools`` default to :func:`~kimi_modes.tools.code.code_tools` (``python`` and
    ``shell`` in the bubblewrap sandbox). Offer :meth:`declarations` in the prompts (the
    ``tools`` argument of :func:`~kimi_modes.train.tasks.load_dataset`) so the model sees
    them as in serving.
    """

    def __init__(
        self,
        tokenizer: Any,
        family: str,
        tools: Sequence[Tool] | None = None,
        *,
        max_turns: int = 4,
        tool_timeout: float = 30.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.family = family
        self.toolset = Toolset(code_tools() if tools is None else tools,
                               default_timeout=tool_timeout)
        self.max_turns = max_turns

    def declarations(self) -> list[dict[str, Any]]:
        """The tools in OpenAI's shape, for the prompts."""
        return self.toolset.declarations()

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        """TRL's hook: one episode per prompt (TRL has already repeated each prompt G times)."""
        from trl.models.utils import unwrap_model_for_generation

        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        ) as model:
            episodes = [
                self.episode(model, self._prompt_ids(prompt), trainer.generation_config,
                             trainer.max_completion_length)
                for prompt in prompts
            ]
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes],
            "env_mask": [e.env_mask for e in episodes],
            "tool_results": [json.dumps(e.tool_results) for e in episodes],
        }

    def _prompt_ids(self, prompt: Any) -> list[int]:
        text = prompt if isinstance(prompt, str) else self.tokenizer.apply_chat_template(
            prompt, tools=self.declarations(), add_generation_prompt=True, tokenize=False)
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def episode(self, model: Any, prompt_ids: list[int], generation_config: Any,
                budget: int) -> Episode:
        """Run one episode from ``prompt_ids`` with at most ``budget`` completion tokens."""
        episode = Episode(prompt_ids)
        with tempfile.TemporaryDirectory(prefix="kimi-train-") as workspace, \
                asyncio.Runner() as runner:
            ctx = RunContext(f"rollout-{id(episode):x}", Path(workspace))
            try:
                for _turn in range(self.max_turns):
                    left = budget - len(episode.completion_ids)
                    if left <= 0:
                        break
                    ids, logprobs = _generate(model, prompt_ids + episode.completion_ids,
                                              generation_config, left)
                    episode.add(ids, model=True, logprobs=logprobs)
                    text = self.tokenizer.decode(ids, skip_special_tokens=False)
                    parsed = parse_output(text, self.family, tools=self.declarations())
                    if not parsed.tool_calls:
                        break
                    results = [runner.run(self._call(call, ctx)) for call in parsed.tool_calls]
                    episode.tool_results += [
                        {"name": call.name, "arguments": call.arguments,
                         "output": result.output, "is_error": result.is_error}
                        for call, result in zip(parsed.tool_calls, results, strict=True)
                    ]
                    segment = self.tool_segment(parsed, parsed.tool_calls, results)
                    if len(episode.completion_ids) + len(segment) >= budget:
                        break  # no room to show the results and let the model go on
                    episode.add(segment, model=False)
            finally:
                runner.run(ctx.aclose())
        return episode

    async def _call(self, call: ToolCall, ctx: RunContext) -> ToolResult:
        if call.error is not None and call.name not in self.toolset:
            return ToolResult(f"Error: {call.error}", True)
        return await self.toolset.call(call.name, call.arguments, ctx)

    def tool_segment(self, parsed: ParsedOutput, calls: Sequence[ToolCall],
                     results: Sequence[ToolResult]) -> list[int]:
        """The tokens that follow the model's turn: its tool results as tool messages, then
        the next assistant turn's opener, as the model's chat template renders them.

        Taken as the difference between the template's rendering of a conversation with and
        without the tool messages, which must share that prefix (``ValueError`` otherwise).
        """
        before = [{"role": "user", "content": ""}, parsed.to_openai_message()]
        after = before + [
            {"role": "tool", "tool_call_id": call.id, "name": call.name or "",
             "content": result.output}
            for call, result in zip(calls, results, strict=True)
        ]
        tools = self.declarations()
        head = self.tokenizer.apply_chat_template(before, tools=tools, tokenize=False)
        full = self.tokenizer.apply_chat_template(after, tools=tools, tokenize=False,
                                                  add_generation_prompt=True)
        if not full.startswith(head):
            raise ValueError("the chat template is not prefix-preserving: it renders the "
                             "conversation differently once tool results are appended")
        ids: list[int] = self.tokenizer.encode(full[len(head):], add_special_tokens=False)
        return ids


def _generate(model: Any, ids: list[int], generation_config: Any,
              max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Sample one turn; return its token ids and each token's log-probability."""
    import torch

    config = copy.deepcopy(generation_config)
    config.max_new_tokens = max_new_tokens
    config.output_scores = True
    config.return_dict_in_generate = True
    device = next(model.parameters()).device
    inputs = torch.tensor([ids], device=device)
    with torch.no_grad():
        out = model.generate(
            input_ids=inputs, attention_mask=torch.ones_like(inputs), generation_config=config
        )
        scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    new = out.sequences[0, len(ids):].tolist()
    return new, scores[0, : len(new)].tolist()
