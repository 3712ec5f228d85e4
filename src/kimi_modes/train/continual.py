"""Continual learning: earlier tasks replayed at a ratio, and a KL term to the reference policy.

Training on new agent runs alone drifts the model away from what it did well before. Two
guards, both configurable (the seed guide's ``replay_lwf``):

* replay (:func:`mix_replay`): rows of earlier tasks mixed into the new ones so that they make
  up ``ratio`` of the training set;
* a KL penalty to the reference policy (learning without forgetting): TRL's ``beta`` (the
  preset's ``beta``, 0 in plain GSPO). With LoRA the reference is the base model with the
  adapter switched off, so no second copy of the weights is held; TRL logs the KL as ``kl``.
"""

from __future__ import annotations

import random
from typing import Any


def mix_replay(new: Any, replay: Any, ratio: float, *, seed: int = 0) -> Any:
    """``new`` with rows of ``replay`` added so that they are ``ratio`` of the result.

    Both are ``datasets.Dataset``; the replayed rows are drawn at random (with repetition
    when ``replay`` is smaller than needed), columns one side lacks are filled with ``""``,
    and the result is shuffled with ``seed``. ``ratio`` is in [0, 1); 0 returns ``new``.
    """
    from datasets import Dataset

    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"the replay ratio must be in [0, 1), not {ratio}")
    if ratio == 0.0:
        return new
    if len(replay) == 0:
        raise ValueError("the replay set is empty")
    count = round(len(new) * ratio / (1.0 - ratio))
    rng = random.Random(seed)
    picks = [rng.randrange(len(replay)) for _ in range(count)]
    columns = sorted(set(new.column_names) | set(replay.column_names))
    rows = [_fill(row, columns) for row in new] + [_fill(replay[i], columns) for i in picks]
    rng.shuffle(rows)
    return Dataset.from_list(rows)


def _fill(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {column: row.get(column, "") for column in columns}
