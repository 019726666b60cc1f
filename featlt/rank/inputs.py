"""The feature files a ranking compares: opened, checked to be comparable, deduplicated.

Files must hold the same dataset (their ``data`` provenance agrees, machine-specific paths and
which rows a file holds aside), so that one index view selects the same images in each (a view
needing rows a file lacks is refused when it is resolved); a file whose backbone and settings
repeat an earlier file's is said once and ranked once; full mode needs a test split in every
file. The view must select the same images in every file (:func:`require_same_images`,
compared by source position, so a full extraction and a view-only extraction of the same
images compare, and a ``--limit`` subset does not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featlt.combine.rows import first_difference
from featlt.errors import FeatltError
from featlt.rank.model import RankInput
from featlt.store.feature_store import FeatureStore
from featlt.store.members import feature_identity
from featlt.store.provenance import dataset_record, require_same_provenance


def _unique_labels(paths: list[Path]) -> list[str]:
    labels: list[str] = []
    for path in paths:
        label = path.stem
        while label in labels:
            label = f"{path.parent.name}/{label}"
        labels.append(label)
    return labels


def open_inputs(paths: list[Path], test_split: str, need_test: bool,
                distinct: bool = False) -> tuple[list[RankInput], list[str]]:
    """Open and check every file; returns the distinct inputs (file order) and notes.

    Args:
        distinct: refuse two files of one feature identity (``rank --pairs``: combining them
            adds nothing) instead of ranking them once.
    Raises:
        FeatltError: a file is missing, incomplete or not a feature store; two files hold
            different datasets (the message names the attribute); full mode and a file has no
            test split; ``distinct`` and two files hold the same features.
    """
    if not paths:
        raise FeatltError("featlt rank: no feature files given; pass one or more FEATURES.h5")
    inputs: list[RankInput] = []
    notes: list[str] = []
    first: RankInput | None = None
    seen: dict[str, RankInput] = {}
    for path, label in zip(paths, _unique_labels(paths), strict=True):
        with FeatureStore(path) as store:
            provenance = store.provenance
            has_test = test_split in store.splits
        entry = RankInput(path=path, label=label, provenance=provenance,
                          identity=feature_identity(provenance),
                          backbone=provenance.get("backbone") or {}, has_test=has_test)
        if need_test and not has_test:
            raise FeatltError(
                f"feature file {path}: no '{test_split}' split, and --full measures every "
                f"backbone's heads on it; extract the test split (featlt extract --splits "
                f"train,{test_split}) or rank without --full"
            )
        if first is None:
            first = entry
        else:
            require_same_provenance(
                {"data": dataset_record(first.provenance)},
                {"data": dataset_record(provenance)},
                f"feature files {first.path} and {path} hold different datasets, so their "
                "rankings are not comparable",
            )
        if entry.identity in seen and distinct:
            raise FeatltError(
                f"feature files {seen[entry.identity].path} and {path}: the same features "
                f"({entry.describe()}; backbone, weights, layer, resolution and dtype agree, "
                "paths aside), so a combination of them adds nothing; drop one of them")
        if entry.identity in seen:
            notes.append(f"{path} holds the same backbone and settings as "
                         f"{seen[entry.identity].path}: ranked once, as "
                         f"{seen[entry.identity].label}")
            continue
        seen[entry.identity] = entry
        inputs.append(entry)
    if len(inputs) == 1:
        notes.append("a single backbone: there is nothing to compare it with, so the ranking "
                     "only reports its scores")
    return inputs, notes


#: The view's row sets rank reads, with the words a message uses for each.
ROW_SETS = {"train": "training", "val": "validation", "test": "test"}


def selected_images(path: Path, protocol: Any, with_test: bool) -> dict[
    str, tuple[str, np.ndarray, int]
]:
    """The images the index view selects in one file, by role.

    Args:
        path: a feature store.
        protocol: the :class:`featlt.data.protocol.Protocol` every file is read with.
        with_test: also the test rows (full mode scores the heads on them).
    Returns:
        ``{"train" | "val" | "test": (stored split, (n,) int64 source positions ascending, rows
        the file stores in that split)}``. A source position is the image's place in the source
        dataset (``/<split>/index``), which does not depend on which rows the file stores.
    """
    from featlt.data.protocol import resolve_view

    with FeatureStore(path) as store:
        view = resolve_view(store, protocol)
        roles = [("train", view.train_split, view.train_rows),
                 ("val", view.val_split, view.val_rows)]
        if with_test and view.test_rows is not None and view.test_split is not None:
            roles.append(("test", view.test_split, view.test_rows))
        return {role: (split, np.sort(store.source_index(split)[rows]),
                       store.info(split).n_rows)
                for role, split, rows in roles}


def require_same_images(inputs: list[RankInput], protocol: Any, with_test: bool) -> None:
    """Refuse files whose view selects different images (training, validation, and in full mode
    test rows): their scores would describe different data, not different backbones.

    Raises:
        FeatltError: naming both files, the row set, both image counts, the first differing
            source position and the fix.
    """
    if len(inputs) < 2:
        return
    first = inputs[0]
    reference = selected_images(first.path, protocol, with_test)
    for entry in inputs[1:]:
        images = selected_images(entry.path, protocol, with_test)
        for role, (split, positions, stored) in reference.items():
            other_split, other, other_stored = images.get(role, (None, np.empty(0, np.int64), 0))
            if other_split == split and np.array_equal(other, positions):
                continue
            same = ("the same number but other images; "
                    if other.size == positions.size else "")
            at = first_difference(positions, other)
            where = "" if at is None else f"; first differing source position {at}"
            raise FeatltError(
                f"feature files {first.path} and {entry.path}: the view selects different "
                f"{ROW_SETS[role]} images ({same}{positions.size} of the {stored} rows of "
                f"'{split}' in {first.path.name}, {other.size} of the {other_stored} rows of "
                f"'{other_split}' in {entry.path.name}{where}), so their scores would compare "
                "different data, not backbones; extract every file from the same images (the "
                "same --limit and --seed, or none) or rank only files extracted alike"
            )
