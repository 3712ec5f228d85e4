"""exo's placement rules, rewritten in deploy/exo.py, against exo's own expectations and the
Kimi cards."""

from __future__ import annotations

import tomllib

import pytest

from kimi_modes.deploy import exo
from kimi_modes.deploy.hardware import accelerator
from kimi_modes.deploy.models import model
from kimi_modes.deploy.planner import Request, plan

GIB = 1 << 30
K26_3BIT = exo.card(model("k2.6"), model("k2.6").checkpoint("mlx-3bit"))


@pytest.mark.parametrize(("layers", "memory", "expected"), [
    # exo-explore/exo src/exo/master/tests/test_placement_utils.py, memory as integers.
    (12, [1, 1, 1, 1], [3, 3, 3, 3]),
    (12, [1, 1, 2], [3, 3, 6]),
    (20, [78, 1, 1], [18, 1, 1]),
    (10, [1], [10]),
    (3, [33, 33, 34], [1, 1, 1]),
    # Two equal Macs: 30.5 each, the spare layer to the first.
    (61, [512, 512], [31, 30]),
    # 512 + 256: 40.67 and 20.33, the spare layer by largest remainder.
    (61, [512, 256], [41, 20]),
])
def test_layers_in_proportion_to_memory(layers: int, memory: list[int],
                                        expected: list[int]) -> None:
    assert exo.allocate_layers(layers, memory) == expected


def test_fewer_layers_than_machines_is_refused() -> None:
    with pytest.raises(exo.PlacementError, match="one layer each"):
        exo.allocate_layers(2, [1, 1, 1])


def test_k26_3bit_over_two_m3_ultra_512() -> None:
    """470,628,683,776 B over 2 × (512 − 16) GiB: layers 0-30 and 31-60, each Mac holding
    storage × its layers // 61 bytes."""
    avail = (512 - 16) * GIB
    macs = [exo.Machine("a", avail), exo.Machine("b", avail)]
    placement = exo.place(K26_3BIT, macs, min_nodes=2)
    spans = [(s.machine, s.start_layer, s.end_layer) for s in placement.shards]
    assert spans == [("a", 0, 31), ("b", 31, 61)]
    assert [s.bytes_needed for s in placement.shards] == [
        470_628_683_776 * 31 // 61, 470_628_683_776 * 30 // 61]
    # Left to itself exo takes the fewest machines: one 512 GB Mac holds the card.
    assert len(exo.place(K26_3BIT, macs).shards) == 1


def test_the_set_with_most_memory_is_chosen_and_order_is_kept() -> None:
    macs = [exo.Machine("small", 100 * GIB), exo.Machine("big", 400 * GIB),
            exo.Machine("mid", 300 * GIB)]
    chosen = exo.choose_machines(K26_3BIT, macs)
    assert [m.name for m in chosen] == ["big", "mid"]


def test_not_enough_memory_names_the_sizes() -> None:
    macs = [exo.Machine("a", 112 * GIB), exo.Machine("b", 112 * GIB)]
    with pytest.raises(exo.PlacementError, match=r"needs 470\.6 GB"):
        exo.place(K26_3BIT, macs)


def test_tensor_sharding_needs_divisible_heads() -> None:
    macs = [exo.Machine(str(i), 200 * GIB) for i in range(3)]
    with pytest.raises(exo.PlacementError, match="divisible by 3"):
        exo.place(K26_3BIT, macs, sharding="tensor", min_nodes=3)
    four = exo.place(K26_3BIT, [*macs, exo.Machine("3", 200 * GIB)], sharding="tensor",
                     min_nodes=4)
    assert {(s.start_layer, s.end_layer) for s in four.shards} == {(0, 61)}


def test_cards_match_exo_and_parse_as_toml() -> None:
    cards = {c.model_id: c for c in exo.cards()}
    # The storage sizes of exo's bundled Kimi cards (resources/inference_model_cards/).
    assert cards["mlx-community/Kimi-K2-Instruct-4bit"].storage_size == 620_622_774_272
    assert cards["mlx-community/Kimi-K2-Thinking"].storage_size == 706_522_120_192
    assert cards["mlx-community/Kimi-K2.5"].storage_size == 662_498_705_408
    assert cards["mlx-community/Kimi-K2.6-mlx-DQ3_K_M-q8"].storage_size == 470_628_683_776
    assert cards["moonshotai/Kimi-K2.7-Code"].storage_size == 595_204_986_173
    for card in cards.values():
        parsed = tomllib.loads(card.toml())
        assert parsed["n_layers"] == 61 and parsed["hidden_size"] == 7168
        assert parsed["num_key_value_heads"] == 64 and parsed["supports_tensor"] is True
        assert parsed["storage_size"]["in_bytes"] == card.storage_size
    assert tomllib.loads(cards["mlx-community/Kimi-K2.6-mlx-DQ3_K_M-q8"].toml())[
        "quantization"] == "3bit"


def test_plan_on_two_macs_carries_the_placement() -> None:
    p = plan(Request("k2.6", accelerator("m3-ultra-512"), nodes=2, checkpoint="mlx-3bit"))
    assert p.fits and p.engine == "exo" and p.min_gpus == 1
    assert p.placement is not None
    assert [(s["start_layer"], s["end_layer"]) for s in p.placement] == [(0, 31), (31, 61)]
    assert (p.parallelism.pp, p.parallelism.nodes) == (2, 2)


def test_plan_on_macs_that_cannot_hold_the_card() -> None:
    p = plan(Request("k2.5", accelerator("m4-max-128"), nodes=2, checkpoint="mlx-4bit"))
    assert not p.fits and p.placement is None
    assert any("does not fit" in r and "GB" in r for r in p.reasons)
    # (128 − 16) GiB each: 662.5 GB = 617 GiB by bytes needs 6 of them, and 6 serve 8K...
    short = plan(Request("k2.5", accelerator("m4-max-128"), nodes=2, checkpoint="mlx-4bit",
                         context=8_192))
    assert short.min_gpus == 6
    # ...but the first of 6 holds 11 layers = 111.3 of its 112 GiB: too little for 262,144
    # tokens of its layers' KV, so the full context needs 7.
    assert p.min_gpus == 7


def test_apple_default_checkpoint_is_an_mlx_card() -> None:
    p = plan(Request("k2.6", accelerator("apple-512")))
    assert p.checkpoint == "mlx-community/Kimi-K2.6-mlx-DQ3_K_M-q8" and p.fits
