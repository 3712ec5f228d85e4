"""The serving benchmark's requests: vLLM's random dataset (lengths and prompts) and JSONL
files of prompts and chats."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from kimi_modes.bench.serve.datasets import (
    DatasetError,
    length_bounds,
    load_jsonl,
    random_requests,
    sample_lengths,
)
from kimi_modes.simulator.tokenize import count_tokens

# --------------------------------------------------------------------------- dataset maths


def test_length_bounds_are_vllms_floor_and_ceil() -> None:
    assert length_bounds(100, 0.0) == (100, 100)
    assert length_bounds(100, 0.5) == (50, 150)
    assert length_bounds(7, 0.3) == (math.floor(7 * 0.7), math.ceil(7 * 1.3)) == (4, 10)
    assert length_bounds(1, 0.9, at_least=1) == (1, 2)
    for bad in (1.0, -0.1):
        with pytest.raises(DatasetError, match="range-ratio"):
            length_bounds(10, bad)


def test_sampled_lengths_cover_the_range_uniformly_and_repeat_with_the_seed() -> None:
    ins, outs = sample_lengths(20000, input_len=100, output_len=10, range_ratio=0.5, seed=3)
    assert min(ins) == 50 and max(ins) == 150
    assert min(outs) == 5 and max(outs) == 15
    assert abs(statistics.fmean(ins) - 100) < 1.0
    assert abs(statistics.fmean(outs) - 10) < 0.1
    again = sample_lengths(20000, input_len=100, output_len=10, range_ratio=0.5, seed=3)
    assert again == (ins, outs)
    other = sample_lengths(20000, input_len=100, output_len=10, range_ratio=0.5, seed=4)
    assert other != (ins, outs)
    fixed_in, fixed_out = sample_lengths(50, input_len=64, output_len=1, range_ratio=0.0, seed=0)
    assert set(fixed_in) == {64} and set(fixed_out) == {1}


def test_random_prompts_have_their_token_count_for_the_simulated_tokenizer() -> None:
    requests = random_requests(30, input_len=40, output_len=8, range_ratio=0.5, prefix_len=7,
                               seed=1)
    for r in requests:
        assert r.prompt is not None
        assert count_tokens(r.prompt) == r.prompt_len
        assert 7 + 20 <= r.prompt_len <= 7 + 60
        assert 4 <= (r.expected_output_len or 0) <= 12
    prefixes = {" ".join(r.prompt.split()[:7]) for r in requests if r.prompt}
    assert len(prefixes) == 1  # the shared prefix
    assert len({r.prompt for r in requests}) == len(requests)
    with pytest.raises(DatasetError, match="too small"):
        random_requests(3, input_len=1, output_len=4, range_ratio=0.9)


def test_jsonl_takes_prompts_chats_and_request_fields(tmp_path: Path) -> None:
    path = tmp_path / "reqs.jsonl"
    path.write_text(
        '{"prompt": "Write a haiku about rain", "output_len": 32}\n'
        "\n"
        '{"messages": [{"role": "user", "content": "hi there"}], "max_completion_tokens": 16,'
        ' "temperature": 0.6, "prompt_len": 9}\n'
        '{"prompt": "no length", "chat_template_kwargs": {"thinking": false}}\n'
    )
    first, second, third = load_jsonl(path)
    assert (first.prompt, first.expected_output_len, first.body) == (
        "Write a haiku about rain", 32, {})
    assert first.prompt_len == count_tokens("Write a haiku about rain")
    assert second.messages == [{"role": "user", "content": "hi there"}]
    assert (second.expected_output_len, second.prompt_len) == (16, 9)
    assert second.body == {"temperature": 0.6}
    assert third.expected_output_len is None
    cycled = load_jsonl(path, 7)
    assert [r.prompt for r in cycled[:4]] == [first.prompt, None, third.prompt, first.prompt]
    assert len(cycled) == 7


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad.jsonl:1: not valid JSON"),
        ('{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}', "exactly one of"),
        ('{"output_len": 3}', "exactly one of"),
        ('{"prompt": "a", "output_len": 0}', "output_len must be a positive integer"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=message):
        load_jsonl(path)
