"""A combination in memory: the combined features of an index view, without writing a file.

For scoring many combinations (``featlt rank --pairs``) each member store is read once
(:func:`read_member`), and any subset of the members read is combined in memory
(:func:`combine_members`), by the recipe ``featlt combine`` writes
(:func:`featlt.store.members.apply_recipe`): the rows are the same bytes a combined store of
those members would hold. :func:`load_combined_arrays` does both for a list of files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from featlt.combine.inputs import Member, check_members, member_of, same_augmentation, store_dtype
from featlt.combine.record import combined_provenance
from featlt.combine.rows import first_difference
from featlt.data.protocol import FeatureArrays, Protocol, load_arrays
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore
from featlt.store.members import DEFAULT_MAX_WIDTH, apply_recipe

#: The row sets of a view, with the words a message uses for each.
ROLES = {"train": "training", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class MemberArrays:
    """One member store's view, read once; rows in ascending source position within each role."""

    member: Member
    arrays: FeatureArrays  # X_* (n_role, D_i) float32 at the member's dtype's values
    positions: dict[str, np.ndarray]  # role -> (n_role,) int64 source positions, ascending


def read_member(path: str | Path, protocol: Protocol | None = None,
                with_views: bool = False) -> MemberArrays:
    """Resolve ``protocol`` on the store ``path`` and read its rows (as
    :func:`featlt.data.protocol.load_arrays`), ordered by source position.

    Args:
        with_views: also read the training rows' augmented views (when stored).
    """
    with FeatureStore(path) as store:
        arrays = load_arrays(store, protocol, with_views=with_views)
        view = arrays.view
        roles = {"train": (view.train_split, view.train_rows),
                 "val": (view.val_split, view.val_rows),
                 "test": (view.test_split, view.test_rows)}
        positions = {role: store.source_index(split)[rows] for role, (split, rows)
                     in roles.items() if split is not None and rows is not None}
        member = member_of(store)
    order = {role: np.argsort(p, kind="stable") for role, p in positions.items()}

    def sort(values: np.ndarray | None, role: str) -> np.ndarray | None:
        return None if values is None or role not in order else values[order[role]]

    arrays = replace(
        arrays, X_train=sort(arrays.X_train, "train"), y_train=sort(arrays.y_train, "train"),
        X_val=sort(arrays.X_val, "val"), y_val=sort(arrays.y_val, "val"),
        X_test=sort(arrays.X_test, "test"), y_test=sort(arrays.y_test, "test"),
        views_train=sort(arrays.views_train, "train"))
    return MemberArrays(member=member, arrays=arrays,
                        positions={role: p[order[role]] for role, p in positions.items()})


def combine_members(members: Sequence[MemberArrays],
                    max_width: int = DEFAULT_MAX_WIDTH) -> FeatureArrays:
    """The combined view of members read by :func:`read_member` (with one protocol).

    Returns:
        :class:`featlt.data.protocol.FeatureArrays`: ``X_train`` (n_train, sum D_i), ``X_val``
        (n_val, sum D_i), ``X_test`` (n_test, sum D_i) or None, float32 holding the combined
        store dtype's values; labels, class names, training counts and view of the first
        member (``view`` keeps the first member's stored row indices, which index its own
        store, not these arrays: rows here are in ascending source position, as
        ``MemberArrays.positions`` lists them); ``views_train`` (n_train, V, sum D_i) when every
        member holds views drawn alike, else None; ``provenance["features"]`` the provenance a
        combined store of these members would record (``static_baselines`` and
        ``feature_identity`` read it).
    Raises:
        FeatltError: the members cannot be combined (:func:`featlt.combine.inputs.
            check_members`), or their views select different images (naming the row set and
            the first differing source position).
    """
    plain = [m.member for m in members]
    check_members(plain, max_width)
    first = members[0]
    for other in members[1:]:
        for role, words in ROLES.items():
            a, b = first.positions.get(role), other.positions.get(role)
            if (a is None) != (b is None):
                raise FeatltError(
                    f"feature files {first.member.path} and {other.member.path}: the view "
                    f"has {words} rows in one file only; extract the same splits in each")
            at = None if a is None or b is None else first_difference(a, b)
            if at is not None:
                raise FeatltError(
                    f"feature files {first.member.path} and {other.member.path}: the view "
                    f"selects different {words} images (first differing source position "
                    f"{at}), so their features cannot be matched image by image; combine "
                    "files extracted from the same images and read with the same view options")
    dtypes = [m.dtype for m in plain]
    dtype = store_dtype(plain)

    def joined(name: str) -> np.ndarray | None:
        parts = [getattr(m.arrays, name) for m in members]
        if any(p is None for p in parts):
            return None
        return apply_recipe(parts, dtypes, dtype).astype(np.float32)

    views = joined("views_train") if same_augmentation(plain) else None
    smallest = plain[int(np.argmin([m.arrays.y_train.size + m.arrays.y_val.size
                                    for m in members]))]
    view = first.arrays.view
    splits = list(dict.fromkeys(s for s in (view.train_split, view.val_split, view.test_split)
                                if s is not None))
    record = combined_provenance(plain, splits, dtype, smallest, keep_logits=False)
    return replace(first.arrays, X_train=joined("X_train"), X_val=joined("X_val"),
                   X_test=joined("X_test"), views_train=views,
                   provenance={"store": [str(m.path) for m in plain], "features": record,
                               "view": view.record()})


def load_combined_arrays(paths: Sequence[str | Path], protocol: Protocol | None = None,
                         with_views: bool = False,
                         max_width: int = DEFAULT_MAX_WIDTH) -> FeatureArrays:
    """The combined view of the stores ``paths``: :func:`read_member` each, then
    :func:`combine_members` (shapes there)."""
    return combine_members([read_member(p, protocol, with_views) for p in paths], max_width)
