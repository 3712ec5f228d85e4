"""The planner against the published minimums, one refusal and hand-worked cases.

Units: weights in bytes as published (decimal GB), device memory in GiB (see hardware.py).
vLLM and ATOM give the KV cache ``memory × 0.90 − 10 GiB − weights per GPU`` per GPU.
"""

from __future__ import annotations

import pytest

from kimi_modes.deploy.hardware import accelerator
from kimi_modes.deploy.models import MODELS, kv_bytes_per_token, model
from kimi_modes.deploy.planner import Parallelism, Plan, PlanError, Request, plan

GIB = 1 << 30


def layout(p: Plan) -> tuple[int, int, int, int, int, int]:
    par = p.parallelism
    return par.tp, par.pp, par.dp, par.ep, par.nodes, par.gpus


# --- KV per token -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k2-instruct", "k2-instruct-0905", "k2-thinking", "k2.5",
                                 "k2.6", "k2.7-code"])
def test_k2x_kv_per_token_is_61_x_576_x_2(key: str) -> None:
    """MLA: (kv_lora_rank 512 + qk_rope_head_dim 64) × 61 layers × 2 B = 70,272 B in BF16;
    FP8 KV is half of it."""
    arch = model(key).architecture
    assert kv_bytes_per_token(arch, 2) == 61 * 576 * 2 == 70_272
    assert kv_bytes_per_token(arch, 1) == 35_136


def test_plan_reports_the_kv_dtype_it_used() -> None:
    bf16 = plan(Request("k2.5", accelerator("h200"), kv_dtype="bf16"))
    fp8 = plan(Request("k2.5", accelerator("h200"), kv_dtype="fp8"))
    assert (bf16.kv_dtype, bf16.kv_bytes_per_token) == ("bf16", 70_272)
    assert (fp8.kv_dtype, fp8.kv_bytes_per_token) == ("fp8", 35_136)
    assert fp8.max_tokens_in_cache == pytest.approx(2 * bf16.max_tokens_in_cache, abs=1)


def test_k3_kv_is_flagged_as_an_estimate() -> None:
    p = plan(Request("k3", accelerator("gb300"), nodes=2))
    assert any(r.startswith("estimate:") and "layer count" in r for r in p.reasons)
    assert any("1.56 TB" in r and "unverified" in r for r in p.reasons)


# --- the published minimums -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["k2.5", "k2.6"])
def test_k25_k26_int4_on_8_h200_at_tp8(key: str) -> None:
    """~595 GB / 8 = 69.3 GiB per GPU ≤ 141 × 0.9 − 10 = 116.9; 4 GPUs would need 138.5."""
    p = plan(Request(key, accelerator("h200")))
    assert p.fits and p.min_gpus == 8
    assert p.parallelism == Parallelism(tp=8, pp=1, dp=1, ep=1, nodes=1, gpus=8)
    assert p.engine == "vllm"
    # vLLM's K2-Thinking TP8 log on H200: 715,072 tokens; our rule lands within 2 %.
    assert p.max_tokens_in_cache == pytest.approx(715_072, rel=0.02)


def test_k2_instruct_fp8_needs_16_h200() -> None:
    """1.03 TB / 8 = 119.9 GiB > 116.9 usable; / 16 = 60.0 GiB fits: TP8 × PP2 on 2 nodes."""
    one_node = plan(Request("k2-instruct", accelerator("h200")))
    assert not one_node.fits and one_node.min_gpus == 16
    assert any("119.9 GiB per GPU > 116.9 GiB usable" in r for r in one_node.reasons)
    two_nodes = plan(Request("k2-instruct", accelerator("h200"), nodes=2))
    assert two_nodes.fits and two_nodes.min_gpus == 16
    assert layout(two_nodes) == (8, 2, 1, 1, 2, 16)


def test_k25_w4a8_on_4_mi355x_tp4_atom() -> None:
    """ATOM keeps W4A8's experts as FP8: 1,038.1 GB = 966.8 GiB / 4 = 241.7 GiB per GPU of
    288 × 0.9 − 10 = 249.2, leaving 7.5 GiB = 229,250 FP8 tokens (35,136 B each): one 128K
    sequence."""
    p = plan(Request("k2.5", accelerator("mi355x"), gpus_per_node=4, checkpoint="w4a8",
                     context=131_072))
    assert p.fits and p.min_gpus == 4
    assert layout(p) == (4, 1, 1, 1, 1, 4)
    assert (p.engine, p.kv_dtype, p.max_tokens_in_cache) == ("atom", "fp8", 229_250)


def test_k3_on_8_gb300() -> None:
    """~1.56 TB = 1,452.9 GiB / 8 = 181.6 GiB per GPU ≤ 288 × 0.9 − 10 = 249.2 (4 would need
    363.2): TP8 over two NVL4 trays, FP8 KV at the full 1M context."""
    p = plan(Request("k3", accelerator("gb300"), nodes=2))
    assert p.fits and p.min_gpus == 8
    assert layout(p) == (8, 1, 1, 1, 2, 8)
    assert p.context == 1_048_576 and p.kv_dtype == "fp8"


def test_k3_on_32_h100() -> None:
    """1,452.9 GiB over H100s at 80 × 0.9 − 10 = 62 GiB each needs 24 by bytes, but replicas
    come in powers of two: 16 leave 90.8 GiB per GPU (too much), 32 leave 45.4: TP8 × PP4.
    The recipe's Hopper profile runs --max-model-len 32768."""
    p = plan(Request("k3", accelerator("h100"), nodes=4, context=32_768))
    assert p.fits and p.min_gpus == 32
    assert layout(p) == (8, 4, 1, 1, 4, 32)
    assert not plan(Request("k3", accelerator("h100"), nodes=3, context=32_768)).fits


def test_k3_on_16_b200_at_tp8_pp2() -> None:
    """8 B200 leave 180 × 0.9 − 10 = 152 GiB for 181.6 GiB of weights per GPU; 16 take 90.8:
    TP8 within a node × PP2 across two, as the recipe's multi_node_tp_pp profile."""
    p = plan(Request("k3", accelerator("b200"), nodes=2))
    assert p.fits and p.min_gpus == 16
    assert layout(p) == (8, 2, 1, 1, 2, 16)


def test_bf16_k25_on_4_mi355x_is_refused_with_the_arithmetic() -> None:
    """2,052.8 GB = 1,911.8 GiB / 4 = 477.9 GiB per GPU > 249.2 usable; 8 MI355X (239.0 GiB
    each) is the least that holds it."""
    p = plan(Request("k2.5", accelerator("mi355x"), gpus_per_node=4, checkpoint="bf16"))
    assert not p.fits
    assert p.min_gpus == 8
    assert p.max_tokens_in_cache == 0 and p.concurrent_sequences == 0
    refusal = p.reasons[-1]
    assert refusal.startswith("does not fit on 1 × 4 MI355X")
    for figure in ("1,911.8 GiB / 4 GPUs", "477.9 GiB per GPU", "249.2 GiB usable",
                   "288 × 0.90 − 10"):
        assert figure in refusal
    assert any("2,052.8 GB" in r for r in p.reasons)


# --- hand-worked cases ----------------------------------------------------------------------


def test_k25_int4_on_4_mi300x() -> None:
    """595 GB / 4 = 148.75e9 B = 138.53 GiB per GPU; 192 × 0.9 − 10 = 162.8 GiB usable;
    162.8 − 138.53 = 24.27 GiB for KV = 24.27 × 2^30 / 70,272 = 370,775 BF16 tokens:
    two 128K sequences, one at 256K."""
    p = plan(Request("k2.5", accelerator("mi300x"), gpus_per_node=4, context=131_072))
    expected = int((192 * 0.9 - 10 - 595e9 / 4 / GIB) * GIB // 70_272)
    assert expected == 370_775
    assert p.fits and p.min_gpus == 4 and layout(p) == (4, 1, 1, 1, 1, 4)
    assert (p.max_tokens_in_cache, p.concurrent_sequences) == (370_775, 2)


def test_k25_on_two_h200_nodes_runs_two_replicas() -> None:
    """One replica is TP8 (727,820 tokens: 116.9 − 69.26 = 47.64 GiB / 70,272 B); two nodes
    hold two replicas (DP2): 1,455,640 tokens, 2 × 2 sequences of 262,144."""
    p = plan(Request("k2.5", accelerator("h200"), nodes=2))
    assert p.fits and p.min_gpus == 8
    assert layout(p) == (8, 1, 2, 1, 2, 16)
    assert (p.max_tokens_in_cache, p.concurrent_sequences) == (2 * 727_820, 4)


def test_concurrency_sets_the_minimum() -> None:
    """K2.6 on H200, 8 sequences of 262,144 wanted. A TP8 replica holds 727,557 tokens = 2
    sequences (four of them: 32 GPUs). One TP8×PP2 replica does better: 595.1 GB / 16 =
    34.6 GiB per GPU leaves 116.9 − 34.6 = 82.3 GiB, and each GPU caches only its stage's 31
    layers (31 × 1,152 B per token): 2,473,220 tokens = 9 sequences, so 16 GPUs."""
    p = plan(Request("k2.6", accelerator("h200"), concurrency=8))
    assert not p.fits and p.min_gpus == 16 and p.concurrent_sequences == 2
    expected = int((141 * 0.9 - 10 - 595_148_192_736 / 16 / GIB) * GIB // (31 * 1_152))
    two = plan(Request("k2.6", accelerator("h200"), nodes=2, concurrency=8))
    assert two.fits and layout(two) == (8, 2, 1, 1, 2, 16)
    assert (two.max_tokens_in_cache, two.concurrent_sequences) == (expected, 9)
    assert expected == 2_473_220


def test_llama_cpp_gguf_on_one_4090_and_ram() -> None:
    """UD-TQ1_0 240 GB = 223.52 GiB; pool (24 − 2) + (256 − 16) = 262 GiB; 38.48 GiB left =
    588,006 tokens at 70,272 B. The quant plus one 16K sequence fits in RAM alone: 0 GPUs."""
    p = plan(Request("k2.5", accelerator("rtx4090"), gpus_per_node=1, cpu_ram_gib=256,
                     checkpoint="gguf-ud-tq1_0", context=16_384))
    assert p.engine == "llama.cpp" and p.fits
    assert p.max_tokens_in_cache == 588_006 and p.min_gpus == 0
    small = plan(Request("k2.5", accelerator("rtx4090"), gpus_per_node=1, cpu_ram_gib=128,
                         checkpoint="gguf-ud-tq1_0", context=16_384))
    assert not small.fits


# --- the engines' rules -----------------------------------------------------------------


def test_sglang_spans_nodes_with_tp_and_trtllm_adds_ep() -> None:
    """SGLang runs K2-Instruct FP8 on 16 H200 as TP16 (Moonshot's --tp 16 --nnodes 2).
    TensorRT-LLM gives KV 0.9 × what loading leaves, so FP8 fits 8 H200 (0.9 × (141 − 10 −
    119.9) = 10.0 GiB); BF16 (1,911.8 GiB / 16 = 119.5 per GPU) needs TP16 with EP8."""
    sglang = plan(Request("k2-instruct", accelerator("h200"), nodes=2, engine="sglang"))
    assert layout(sglang) == (16, 1, 1, 1, 2, 16)
    trt_fp8 = plan(Request("k2-instruct", accelerator("h200"), engine="trtllm"))
    assert trt_fp8.fits and layout(trt_fp8) == (8, 1, 1, 8, 1, 8)
    trt = plan(Request("k2-instruct", accelerator("h200"), nodes=2, engine="trtllm",
                       checkpoint="bf16"))
    assert trt.fits and layout(trt) == (16, 1, 1, 8, 2, 16)


def test_sglang_on_amd_caps_tp_at_4() -> None:
    """AITER MLA needs 16 heads per GPU: BF16 K2.5 cannot be laid out by SGLang on MI355X."""
    p = plan(Request("k2.5", accelerator("mi355x"), checkpoint="bf16", engine="sglang"))
    assert not p.fits and p.min_gpus is None


def test_atom_stays_on_one_node() -> None:
    p = plan(Request("k2.5", accelerator("mi355x"), gpus_per_node=4, nodes=2,
                     checkpoint="w4a8", engine="atom"))
    assert layout(p)[:2] == (4, 1) and p.parallelism.dp == 2


@pytest.mark.parametrize(("request_", "message"), [
    (Request("k2.5", accelerator("h100"), checkpoint="nvfp4"), "blackwell"),
    (Request("k2.5", accelerator("h200"), checkpoint="w4a8"), "does not run on H200"),
    (Request("k2.5", accelerator("mi355x"), checkpoint="bf16", engine="atom"),
     "does not load bf16"),
    (Request("k2.5", accelerator("h200"), engine="atom"), "ATOM does not run on H200"),
    (Request("k9", accelerator("h200")), "unknown model"),
    (Request("k2.5", accelerator("h200"), checkpoint="q2"), "no checkpoint 'q2'"),
    (Request("k2.5", accelerator("h200"), context=10**7), "at most 262,144"),
])
def test_requests_that_cannot_be_planned(request_: Request, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan(request_)


def test_every_checkpoint_has_a_source() -> None:
    for m in MODELS.values():
        assert m.checkpoints[0].format not in ("gguf", "mlx", "bf16")
        for c in m.checkpoints:
            assert c.source and c.weights_bytes > 0
