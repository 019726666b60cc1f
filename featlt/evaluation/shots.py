"""Shot groups of classes by training frequency (docs/methods.md, "Shot groups").

Two groupings, both computed from the *long-tailed training counts*:

- relative thirds (primary): classes sorted by count, descending, ties broken by class id, and cut
  with ``np.array_split`` into ``head_third``, ``mid_third``, ``tail_third``;
- absolute groups: ``many`` (n_c > 100), ``medium`` (20 <= n_c <= 100), ``few`` (n_c < 20).

An empty group is ``None`` (reported as null), never an empty array or a zero.
"""

from __future__ import annotations

import numpy as np

from featlt.errors import FeatltError

RELATIVE_GROUPS: tuple[str, ...] = ("head_third", "mid_third", "tail_third")
ABSOLUTE_GROUPS: tuple[str, ...] = ("many", "medium", "few")
ALL_GROUPS: tuple[str, ...] = RELATIVE_GROUPS + ABSOLUTE_GROUPS
MANY_ABOVE = 100  # many: n_c > 100
FEW_BELOW = 20  # few: n_c < 20; medium is 20 <= n_c <= 100


def _check_counts(train_counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(train_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise FeatltError(
            f"shot groups: train_counts must be a non-empty 1-D array of per-class counts, got "
            f"shape {counts.shape}; pass np.bincount(y_train, minlength=n_classes)"
        )
    if not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise FeatltError(
            "shot groups: train_counts must be non-negative integers; pass "
            "np.bincount(y_train, minlength=n_classes)"
        )
    return counts.astype(np.int64)


def frequency_order(train_counts: np.ndarray) -> np.ndarray:
    """Class ids sorted by training count, descending, ties by ascending class id.

    Args:
        train_counts: (C,) int training count per class.
    Returns:
        order: (C,) int64 class ids.
    """
    counts = _check_counts(train_counts)
    # lexsort sorts by the last key first: count descending, then class id ascending.
    return np.lexsort((np.arange(counts.size), -counts)).astype(np.int64)


def shot_groups(train_counts: np.ndarray) -> dict[str, np.ndarray | None]:
    """Class ids of every shot group, relative thirds and absolute groups.

    Args:
        train_counts: (C,) int long-tailed training count per class (0 allowed: such a class is
            placed by its count like any other, i.e. last, and falls in ``few``).
    Returns:
        ``{"head_third", "mid_third", "tail_third", "many", "medium", "few"}`` -> (k,) int64
        sorted class ids, or ``None`` when the group is empty.
    """
    counts = _check_counts(train_counts)
    groups: dict[str, np.ndarray | None] = {}
    thirds = np.array_split(frequency_order(counts), 3)
    for name, members in zip(RELATIVE_GROUPS, thirds, strict=True):
        groups[name] = np.sort(members) if members.size else None
    absolute = {
        "many": counts > MANY_ABOVE,
        "medium": (counts >= FEW_BELOW) & (counts <= MANY_ABOVE),
        "few": counts < FEW_BELOW,
    }
    for name, mask in absolute.items():
        groups[name] = np.flatnonzero(mask).astype(np.int64) if mask.any() else None
    return groups


def class_group_labels(
    train_counts: np.ndarray, grouping: str = "relative"
) -> tuple[tuple[str, ...], np.ndarray]:
    """The group index of every class under one grouping.

    Args:
        train_counts: (C,) int training count per class.
        grouping: ``"relative"`` (thirds) or ``"absolute"`` (many/medium/few).
    Returns:
        (names, group_of): ``names`` the group names in order; ``group_of`` (C,) int64 index into
        ``names`` for each class. Every class belongs to exactly one group of each grouping.
    """
    if grouping == "relative":
        names = RELATIVE_GROUPS
    elif grouping == "absolute":
        names = ABSOLUTE_GROUPS
    else:
        raise FeatltError(f"grouping '{grouping}': unknown; use 'relative' or 'absolute'")
    groups = shot_groups(train_counts)
    group_of = np.full(len(train_counts), -1, dtype=np.int64)
    for index, name in enumerate(names):
        members = groups[name]
        if members is not None:
            group_of[members] = index
    return names, group_of
