"""The images a combination's members share, matched on source positions.

An image is matched across stores by its source position (``/<split>/index``: its place in the
source dataset), never by its stored row, so a full extraction and a view-only extraction of the
same images line up (the store's row-subset rule). Per split, the combination holds the positions
every member holds; every image of the member holding the fewest must be in every other member,
so no member's rows are silently cut (two view-only extractions of different views, or two
``--limit`` subsets, are refused, naming the first position where they differ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore


@dataclass(frozen=True)
class SharedSplit:
    """One split's images that every member holds, in ascending source position."""

    split: str
    positions: np.ndarray  # (n,) int64 source positions, ascending
    rows: tuple[np.ndarray, ...]  # per member: (n,) int64 its stored row of each position
    labels: np.ndarray  # (n,) int64 class of each image
    source_labels: np.ndarray | None  # (M,) int64 labels of the whole source split, or None
    class_names: list[str]


def rows_of(index: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(n,) stored rows holding ``positions`` (all held), given a store's (N,) ``index``."""
    order = np.argsort(index, kind="stable")
    return order[np.searchsorted(index[order], positions)].astype(np.int64)


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """The smallest source position in one of two position sets but not the other (None: the
    sets are equal)."""
    differing = np.setxor1d(a, b)
    return int(differing[0]) if differing.size else None


def shared_split(stores: Sequence[FeatureStore], split: str) -> SharedSplit:
    """The images of ``split`` every store holds (see the module docstring).

    Raises:
        FeatltError: a store lacks a position the smallest store holds (naming the first such
            position and both files); two stores give an image different labels; two stores
            record different labels for the whole source split.
    """
    indexes = [np.asarray(s.source_index(split), np.int64) for s in stores]
    labels = [np.asarray(s.labels(split), np.int64) for s in stores]
    smallest = int(np.argmin([i.size for i in indexes]))
    positions = np.sort(indexes[smallest])
    small = stores[smallest]
    for store, index in zip(stores, indexes, strict=True):
        missing = np.setdiff1d(positions, index)
        if missing.size:
            raise FeatltError(
                f"feature files {small.path} and {store.path}: split '{split}' source position "
                f"{int(missing[0])} is held by {small.path.name} but not by {store.path.name} "
                f"(the first differing position; {missing.size} of its {positions.size} images "
                "are missing), so their views select different images; combine files extracted "
                "for the same view, or full extractions with view-only ones of the same images"
            )
    rows = tuple(rows_of(index, positions) for index in indexes)
    reference = labels[smallest][rows[smallest]]
    for store, label, row in zip(stores, labels, rows, strict=True):
        differs = np.flatnonzero(label[row] != reference)
        if differs.size:
            raise FeatltError(
                f"feature files {small.path} and {store.path}: split '{split}' source position "
                f"{int(positions[differs[0]])} has label {int(reference[differs[0]])} in one and "
                f"{int(label[row][differs[0]])} in the other, so they do not hold the same "
                "images; combine stores extracted from one dataset"
            )
    return SharedSplit(split=split, positions=positions, rows=rows, labels=reference,
                       source_labels=_source_labels(stores, split),
                       class_names=small.class_names(split))


def _source_labels(stores: Sequence[FeatureStore], split: str) -> np.ndarray | None:
    """The whole source split's labels, when a member records them (all that do must agree)."""
    found: tuple[FeatureStore, np.ndarray] | None = None
    for store in stores:
        labels = store.source_labels(split)
        if labels is None:
            continue
        if found is None:
            found = (store, labels)
            continue
        first, reference = found
        if labels.shape != reference.shape or not np.array_equal(labels, reference):
            n = min(labels.size, reference.size)
            at = np.flatnonzero(labels[:n] != reference[:n])
            where = int(at[0]) if at.size else n
            raise FeatltError(
                f"feature files {first.path} and {store.path}: split '{split}' records "
                f"different labels for the whole source split (first at position {where}), so "
                "they come from different data; combine stores extracted from one dataset"
            )
    return None if found is None else found[1]


def common_splits(stores: Sequence[FeatureStore]) -> tuple[list[str], list[str]]:
    """(splits every store holds, in the first store's order; splits only some hold)."""
    held = [set(s.splits) for s in stores]
    common = [s for s in stores[0].splits if all(s in h for h in held)]
    partial = sorted(set().union(*held) - set(common))
    if not common:
        raise FeatltError(
            "feature files " + ", ".join(str(s.path) for s in stores)
            + ": no split is held by all of them; extract the same splits (--splits) in each"
        )
    return common, partial
