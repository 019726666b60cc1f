"""The one function that builds every validation split (docs/methods.md, "Validation regimes").

Two regimes:

- ``outside``: the training rows are a long-tailed subset of a larger balanced pool. Validation is
  a balanced ``per_class`` rows per class drawn (seeded) from pool rows *not* in the subset, the way
  ImageNet-LT's val was built. A class whose subset uses (nearly) all its images gives the rest of
  its quota from its long-tailed rows, and those leave the training rows.
- ``carve``: validation is carved from the training rows, class-stratified (a ``fraction`` of each
  class, at least one row); classes with fewer than 2 rows stay whole in train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from featlt.errors import FeatltError

Regime = Literal["outside", "carve"]


@dataclass(frozen=True)
class TrainValRows:
    """Row indices into one stored split; both sorted ascending and disjoint."""

    train: np.ndarray  # (n_train,) int64
    val: np.ndarray  # (n_val,) int64
    regime: str
    moved_from_train: int  # rows that left the training subset to fill validation


def split_validation(
    labels: np.ndarray,
    train_rows: np.ndarray,
    regime: Regime = "outside",
    per_class: int = 20,
    fraction: float = 0.1,
    seed: int = 0,
) -> TrainValRows:
    """Choose validation rows for the training subset ``train_rows`` of a split.

    Args:
        labels: (N,) int class ids of the whole stored split (the pool).
        train_rows: (n,) int rows of the (long-tailed) training subset.
        regime: ``outside`` (balanced, from the pool outside the subset) or ``carve``.
        per_class: validation rows per class in the ``outside`` regime.
        fraction: share of each class carved off in the ``carve`` regime.
        seed: seeds a child RNG per class, so one class's draw does not depend on another's.
    """
    labels = np.asarray(labels)
    train_rows = np.sort(np.asarray(train_rows, dtype=np.int64))
    if train_rows.size == 0:
        raise FeatltError("validation split: the training subset is empty; check the profile")
    in_train = np.zeros(labels.shape[0], dtype=bool)
    in_train[train_rows] = True
    classes = np.unique(labels[train_rows])
    child_seeds = np.random.SeedSequence(seed).spawn(int(labels.max()) + 1)
    val_parts: list[np.ndarray] = []
    moved: list[np.ndarray] = []
    for c in classes:
        rng = np.random.default_rng(child_seeds[int(c)])
        own = np.flatnonzero((labels == c) & in_train)
        if regime == "outside":
            outside = np.flatnonzero((labels == c) & ~in_train)
            take_out = min(per_class, outside.size)
            val_parts.append(rng.choice(outside, size=take_out, replace=False))
            # Fill the rest of the quota from the class's own rows, keeping at least half in train.
            take_own = min(per_class - take_out, own.size // 2)
        elif regime == "carve":
            if own.size < 2:
                continue
            take_own = min(max(1, round(fraction * own.size)), own.size - 1)
        else:
            raise FeatltError(f"validation regime '{regime}': unknown; use 'outside' or 'carve'")
        if take_own > 0:
            picked = rng.choice(own, size=take_own, replace=False)
            val_parts.append(picked)
            moved.append(picked)
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.empty(0, np.int64)
    moved_rows = np.concatenate(moved) if moved else np.empty(0, np.int64)
    train = np.setdiff1d(train_rows, moved_rows)
    if val.size == 0:
        raise FeatltError(
            "validation split: no class has enough rows to carve a validation set "
            f"({train_rows.size} training rows); add data or provide a 'val' split"
        )
    return TrainValRows(
        train=train.astype(np.int64),
        val=val.astype(np.int64),
        regime=regime,
        moved_from_train=int(moved_rows.size),
    )
