"""Long-tail profiles: which rows of a balanced split form a long-tailed subset (docs/methods.md).

All functions return *row indices* into the given label array, sorted ascending, so they can be
used directly as index views on a stored split. Profiles are nested across imbalance factors: the
IF100 subset lies inside the IF10 subset.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from featlt.errors import FeatltError

Profile = Literal["cao2019", "first"]
Decay = Literal["exp", "step"]
PROFILES: tuple[str, ...] = ("cao2019", "first")
DECAYS: tuple[str, ...] = ("exp", "step")


def long_tail_counts(
    n_max: int, n_classes: int, imbalance_factor: float, decay: Decay = "exp"
) -> np.ndarray:
    """Per-class sample counts of a long-tailed profile.

    ``exp``: ``n_c = floor(n_max * (1/IF) ** (c / (C - 1)))`` exactly as the LDAM-DRW reference
    code computes it (so CIFAR-10-LT IF100 has 12,406 images). ``step``: the first half of the
    classes keep ``n_max``, the second half ``floor(n_max / IF)``.

    Returns:
        counts: (n_classes,) int64, non-increasing.
    """
    if n_classes < 2:
        raise FeatltError(f"long-tail profile: needs at least 2 classes, got {n_classes}")
    if imbalance_factor < 1:
        raise FeatltError(
            f"imbalance factor {imbalance_factor}: must be >= 1 (1 means balanced); pass e.g. 100"
        )
    if decay not in DECAYS:
        raise FeatltError(f"decay '{decay}': unknown; choose one of {', '.join(DECAYS)}")
    ratio = 1.0 / float(imbalance_factor)
    if decay == "exp":
        counts = [int(n_max * ratio ** (c / (n_classes - 1.0))) for c in range(n_classes)]
    else:
        half = n_classes // 2
        counts = [n_max] * half + [int(n_max * ratio)] * (n_classes - half)
    return np.asarray(counts, dtype=np.int64)


def long_tail_rows(
    labels: np.ndarray,
    counts: np.ndarray,
    profile: Profile = "cao2019",
) -> np.ndarray:
    """Rows that form the long-tailed subset with ``counts[c]`` samples of class ``c``.

    ``cao2019`` is bit-exact to Cao et al.'s reference: a legacy NumPy RNG seeded with 0 shuffles
    each class's rows, in class order, and the first ``n_c`` are kept. ``first`` keeps the first
    ``n_c`` rows of each class in stored order.

    Args:
        labels: (N,) int class ids 0..C-1 of the balanced split.
        counts: (C,) int wanted count per class.
    Returns:
        rows: (sum(counts),) int64, sorted ascending.
    """
    labels = np.asarray(labels)
    counts = np.asarray(counts, dtype=np.int64)
    if profile not in PROFILES:
        raise FeatltError(f"profile '{profile}': unknown; choose one of {', '.join(PROFILES)}")
    available = np.bincount(labels, minlength=len(counts))
    if len(available) > len(counts):
        raise FeatltError(
            f"long-tail profile: labels go up to {len(available) - 1} but counts were given for "
            f"{len(counts)} classes; give one count per class"
        )
    empty = np.flatnonzero(counts < 1)
    if empty.size:
        raise FeatltError(
            f"long-tail profile leaves class {int(empty[0])} with 0 samples "
            f"(counts {counts.tolist()}); lower the imbalance factor or raise n_max"
        )
    short = np.flatnonzero(available < counts)
    if short.size:
        c = int(short[0])
        raise FeatltError(
            f"long-tail profile asks for {int(counts[c])} samples of class {c} but the split has "
            f"{int(available[c])}; lower n_max"
        )
    # RandomState(0) draws the same stream as Cao's np.random.seed(0) + np.random.shuffle,
    # without touching NumPy's global state.
    rng = np.random.RandomState(0)
    chosen = []
    for c in range(len(counts)):
        rows = np.flatnonzero(labels == c)
        if profile == "cao2019":
            rng.shuffle(rows)
        chosen.append(rows[: counts[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def balanced_rows(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """A seeded balanced subset with ``per_class`` rows of every class (a balanced ceiling).

    Returns:
        rows: (C * per_class,) int64, sorted ascending.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    chosen = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if rows.size < per_class:
            raise FeatltError(
                f"balanced subset: class {int(c)} has {rows.size} rows but {per_class} per class "
                "were requested; lower the per-class count"
            )
        chosen.append(rng.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def nested_balanced_rows(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """A seeded balanced subset that is nested across sizes: the first ``per_class`` rows of a
    fixed per-class permutation, so the subset of 200 per class lies inside the one of 500.

    Each class permutes its rows with its own child seed (independent of the other classes).

    Returns:
        rows: (C * per_class,) int64, sorted ascending.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    child_seeds = np.random.SeedSequence(seed).spawn(int(classes.max()) + 1 if classes.size else 0)
    chosen = []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        if rows.size < per_class:
            raise FeatltError(
                f"balanced subset: class {int(c)} has {rows.size} rows but {per_class} per class "
                "were requested; lower the per-class count"
            )
        chosen.append(np.random.default_rng(child_seeds[int(c)]).permutation(rows)[:per_class])
    return np.sort(np.concatenate(chosen)).astype(np.int64)
