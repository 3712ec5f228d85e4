"""A tiny Kimi-shaped model (DeepseekV3: MLA, a dense layer, then MoE) and a character tokenizer.

Built in memory; nothing is downloaded. The training tests run on CPU with one thread.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest

# The README's test command installs the `train` extra: without it these imports fail the
# run loudly rather than leaving the training tests out.
import torch
import transformers

CHAT_TEMPLATE = (
    "{% if tools %}<|im_system|>tools {{ tools | tojson }}<|im_end|>{% endif %}"
    "{% for m in messages %}<|im_{{ m['role'] }}|>{{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_assistant|>{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "[BOS]", "[EOS]", "<|im_end|>", "<|im_system|>", "<|im_user|>",
            "<|im_assistant|>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
            "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_tokenizer() -> Any:
    """A character-level fast tokenizer with Kimi's turn markers as special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = list(string.ascii_letters + string.digits + string.punctuation + " \n")
    vocab = {token: index for index, token in enumerate(SPECIALS + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="[BOS]",
        eos_token="[EOS]",
        additional_special_tokens=SPECIALS[4:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_config(vocab_size: int, initializer_range: float = 0.02) -> Any:
    return transformers.DeepseekV3Config(
        initializer_range=initializer_range,
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        first_k_dense_replace=1,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
    )


def make_model(seed: int = 0, initializer_range: float = 0.02) -> Any:
    """A tiny ``DeepseekV3ForCausalLM`` (2 heads, layer 0 dense, layer 1 MoE), float32."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    config = make_config(len(tokenizer), initializer_range)
    model = transformers.DeepseekV3ForCausalLM(config)
    return model.float()


@pytest.fixture
def tokenizer() -> Any:
    return make_tokenizer()


@pytest.fixture
def tiny_model() -> Any:
    return make_model()


@pytest.fixture
def lively_model() -> Any:
    """The tiny model with larger initial weights, so that its samples are not uniform and
    a few RL steps move them."""
    return make_model(initializer_range=0.3)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """The tiny model and its tokenizer saved as a transformers checkpoint directory."""
    directory = tmp_path / "tiny-kimi"
    make_model().save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory
