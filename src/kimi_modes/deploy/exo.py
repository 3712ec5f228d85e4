"""exo on Apple machines: model cards for the Kimi MLX checkpoints and layer placement.

The placement follows exo's own rules (exo-explore/exo ``src/exo/master/placement.py`` and
``placement_utils.py``, read at b5375f8), written afresh here:

* a set of machines qualifies when the sum of their available memory covers the card's
  ``storage_size``; among the qualifying sets exo takes the fewest machines, and among those
  the one with the most memory (``min_nodes`` can force more machines);
* **pipeline** sharding gives each machine a run of layers in proportion to its memory:
  floor every share, hand the leftover layers out by largest remainder (ties to the earlier
  machine), then make sure each machine has at least one layer by taking from the largest;
  each machine must then hold ``storage_size × its layers // n_layers`` bytes;
* **tensor** sharding needs ``hidden_size`` and ``num_key_value_heads`` divisible by the
  number of machines (Kimi: 1, 2, 4 or 8), and every machine holds all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kimi_modes.deploy.models import MODELS, Checkpoint, Model

Sharding = Literal["pipeline", "tensor"]


class PlacementError(ValueError):
    """The machines cannot hold the card the way exo would place it; the message says why."""


@dataclass(frozen=True)
class Card:
    """The fields of an exo model card that placement reads (and that a new card needs)."""

    model_id: str
    storage_size: int
    n_layers: int
    hidden_size: int
    num_key_value_heads: int
    supports_tensor: bool
    base_model: str
    quantization: str
    context_length: int

    def toml(self) -> str:
        """The card as exo's ``resources/inference_model_cards/*.toml`` entry (the placement
        fields, family and context; sampling defaults are not ours to state)."""
        return (
            f'model_id = "{self.model_id}"\n'
            f"n_layers = {self.n_layers}\n"
            f"hidden_size = {self.hidden_size}\n"
            f"num_key_value_heads = {self.num_key_value_heads}\n"
            f"supports_tensor = {'true' if self.supports_tensor else 'false'}\n"
            'tasks = ["TextGeneration"]\n'
            'family = "kimi"\n'
            f'quantization = "{self.quantization}"\n'
            f'base_model = "{self.base_model}"\n'
            f"context_length = {self.context_length}\n"
            'backends = ["MlxMetal", "MlxCuda", "MlxCpu"]\n'
            "[storage_size]\n"
            f"in_bytes = {self.storage_size}\n"
        )


#: ``base_model`` as exo's Kimi cards spell it.
_BASE_MODEL = {"k2-instruct": "Kimi K2", "k2-instruct-0905": "Kimi K2", "k2-thinking": "Kimi K2",
               "k2.5": "Kimi K2.5", "k2.6": "Kimi K2.6", "k2.7-code": "Kimi K2.7 Code"}


def card(model: Model, checkpoint: Checkpoint) -> Card:
    """The exo card for an MLX ``checkpoint`` of ``model``.

    All Kimi cards in exo share 61 layers, hidden 7168, 64 key-value heads (MLA's 64 heads)
    and ``supports_tensor = true``.
    """
    if checkpoint.format != "mlx":
        raise ValueError(f"{checkpoint.repo} is {checkpoint.format}, not an MLX checkpoint")
    arch = model.architecture
    if arch.n_layers is None:
        raise ValueError(f"{model.name} has no published layer count")
    return Card(
        model_id=checkpoint.repo, storage_size=checkpoint.weights_bytes,
        n_layers=arch.n_layers, hidden_size=arch.hidden_size,
        num_key_value_heads=arch.attention_heads, supports_tensor=True,
        base_model=_BASE_MODEL.get(model.key, model.name),
        quantization=checkpoint.quantization,
        context_length=arch.context_length,
    )


def cards() -> list[Card]:
    """Every Kimi MLX card we know (exo's bundled ones and the seed notes' inferencerlabs)."""
    return [card(m, c) for m in MODELS.values() for c in m.checkpoints if c.format == "mlx"]


@dataclass(frozen=True)
class Machine:
    """One Mac: a name and the memory exo would see as ``ram_available``, in bytes."""

    name: str
    ram_available: int


@dataclass(frozen=True)
class Shard:
    """Layers ``[start_layer, end_layer)`` on ``machine``, and the bytes they need."""

    machine: str
    rank: int
    start_layer: int
    end_layer: int
    bytes_needed: int
    ram_available: int

    @property
    def layers(self) -> int:
        return self.end_layer - self.start_layer


@dataclass(frozen=True)
class Placement:
    """Where each layer goes; ``shards`` in pipeline order."""

    model_id: str
    sharding: Sharding
    shards: tuple[Shard, ...]


def allocate_layers(total_layers: int, memory: list[int]) -> list[int]:
    """Layers per machine in proportion to ``memory``, at least one each (exo's rule)."""
    n = len(memory)
    if n == 0:
        raise PlacementError("no machines to place layers on")
    if total_layers < n:
        raise PlacementError(f"{total_layers} layers cannot give {n} machines one layer each")
    total = sum(memory)
    if total <= 0:
        raise PlacementError("the machines have no memory available")
    exact = [m * total_layers / total for m in memory]
    layers = [int(x) for x in exact]
    by_remainder = sorted(range(n), key=lambda i: exact[i] - layers[i], reverse=True)
    for i in by_remainder[: total_layers - sum(layers)]:
        layers[i] += 1
    for i in range(n):
        if layers[i] == 0:
            largest = max(range(n), key=lambda j: layers[j])
            layers[largest] -= 1
            layers[i] = 1
    return layers


def choose_machines(card: Card, machines: list[Machine], min_nodes: int = 1) -> list[Machine]:
    """The machines exo would use: the fewest (at least ``min_nodes``) whose memory covers the
    card, the set with the most memory among those, in the order given."""
    for k in range(max(min_nodes, 1), len(machines) + 1):
        largest = sorted(machines, key=lambda m: m.ram_available, reverse=True)[:k]
        if sum(m.ram_available for m in largest) >= card.storage_size:
            chosen = {id(m) for m in largest}
            return [m for m in machines if id(m) in chosen]
    have = sum(m.ram_available for m in machines)
    raise PlacementError(
        f"{card.model_id} needs {card.storage_size / 1e9:,.1f} GB; "
        f"{len(machines)} machine(s) offer {have / 1e9:,.1f} GB"
    )


def place(card: Card, machines: list[Machine], sharding: Sharding = "pipeline",
          min_nodes: int = 1) -> Placement:
    """Place ``card`` on ``machines`` as exo would; :class:`PlacementError` when it cannot."""
    chosen = choose_machines(card, machines, min_nodes)
    n = len(chosen)
    if sharding == "tensor":
        if card.hidden_size % n or card.num_key_value_heads % n:
            raise PlacementError(
                f"tensor sharding over {n} machines needs hidden_size {card.hidden_size} and "
                f"{card.num_key_value_heads} KV heads divisible by {n}"
            )
        per = card.storage_size // n
        shards = [Shard(m.name, i, 0, card.n_layers, per, m.ram_available)
                  for i, m in enumerate(chosen)]
    else:
        layers = allocate_layers(card.n_layers, [m.ram_available for m in chosen])
        shards, start = [], 0
        for i, (m, count) in enumerate(zip(chosen, layers, strict=True)):
            need = card.storage_size * count // card.n_layers
            shards.append(Shard(m.name, i, start, start + count, need, m.ram_available))
            start += count
    for s in shards:
        if s.bytes_needed > s.ram_available:
            raise PlacementError(
                f"{s.machine} needs {s.bytes_needed / 1e9:,.2f} GB for {s.layers} layers but "
                f"has {s.ram_available / 1e9:,.2f} GB available"
            )
    return Placement(card.model_id, sharding, tuple(shards))
