"""A tiny Kimi-shaped model (DeepseekV3: MLA, a dense layer, then MoE) and a character tokenizer.

Built in memory; nothing is downloaded. Used by the training tests (tests/train).
"""

from __future__ import annotations

import string
from typing import Any

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
