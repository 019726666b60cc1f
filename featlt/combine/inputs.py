"""The member stores of a combination, checked before any feature is read.

Members must hold one dataset (their ``data`` provenance agrees, machine paths and which rows a
file holds aside), hold different features (two inputs of one feature identity, paths aside,
add nothing), not be combined themselves (a combined store's rows are already normalised per
member, so combining it again would not follow the recipe), and together be at most
``max_width`` wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore
from featlt.store.members import (
    describe_backbone,
    feature_identity,
    is_combined,
)
from featlt.store.provenance import dataset_record, require_same_provenance


@dataclass(frozen=True)
class Member:
    """One member store: what the checks and the combination need of it."""

    path: Path
    provenance: dict[str, Any]
    dim: int  # D_i, its feature width
    dtype: str  # its stored feature dtype (float16 or float32)

    def describe(self) -> str:
        """The member in words: its backbone, resolution and layer."""
        return describe_backbone(self.provenance.get("backbone") or {}, self.path.stem)


def member_of(store: FeatureStore) -> Member:
    """The :class:`Member` of an open store (its width and dtype from its first split)."""
    info = store.info(store.splits[0])
    return Member(path=store.path, provenance=store.provenance, dim=info.dim, dtype=info.dtype)


def check_members(members: Sequence[Member], max_width: int, min_members: int = 2) -> None:
    """Refuse members that cannot be combined.

    Args:
        min_members: the fewest members accepted; 1 gives a single store's L2-normalised copy
            under the recipe (``benchmarks/bench_pairs.py``: singles normalised like pairs).
    Raises:
        FeatltError: fewer than ``min_members`` members; a combined member; two datasets (naming the
            attribute); two members of one feature identity; a combination wider than
            ``max_width`` (naming the width and the limit).
    """
    if len(members) < min_members:
        raise FeatltError("featlt combine: needs two or more feature files; pass A.h5 B.h5 "
                          "[C.h5 ...]")
    first = members[0]
    seen: dict[str, Member] = {}
    for member in members:
        if is_combined(member.provenance):
            raise FeatltError(
                f"feature file {member.path}: already a combined feature set "
                f"({member.describe()}); its rows are normalised per member, so combining it "
                "again would not follow the recipe; combine the original stores instead"
            )
        if member is not first:
            require_same_provenance(
                {"data": dataset_record(first.provenance)},
                {"data": dataset_record(member.provenance)},
                f"feature files {first.path} and {member.path} hold different datasets, so "
                "their images cannot be matched",
            )
        identity = feature_identity(member.provenance)
        if identity in seen:
            raise FeatltError(
                f"feature files {seen[identity].path} and {member.path}: the same features "
                f"({member.describe()}; backbone, weights, layer, resolution and dtype agree, "
                "paths aside), so combining them adds nothing; drop one of them"
            )
        seen[identity] = member
    width = sum(m.dim for m in members)
    if width > max_width:
        parts = " + ".join(f"{m.path.name} {m.dim}" for m in members)
        raise FeatltError(
            f"featlt combine: the combined feature would be {width} wide ({parts}), over "
            f"--max-width {max_width}; drop a member, or raise --max-width if a head that wide "
            "fits your memory and time"
        )


def store_dtype(members: Sequence[Member]) -> str:
    """The combined store's dtype: the widest member dtype (float32 if any member has it)."""
    return "float32" if any(m.dtype == "float32" for m in members) else "float16"


# Keys of a views record that follow the member's own input (its resolution, normalisation and
# resize filter), not the augmentation drawn.
MEMBER_INPUT_KEYS = frozenset({"size", "mean", "std", "interpolation"})


def augmentation(provenance: dict[str, Any]) -> dict[str, Any]:
    """A store's augmentation record: its ``views`` provenance (count, policy, its parameters,
    seed, randomness) without what follows from the backbone's own input."""
    views = dict(provenance.get("views") or {"n_views": 0})
    if isinstance(views.get("augment"), dict):
        views["augment"] = {k: v for k, v in views["augment"].items()
                            if k not in MEMBER_INPUT_KEYS}
    return views


def same_augmentation(members: Sequence[Member]) -> bool:
    """Whether every member's augmented views were drawn alike (:func:`augmentation`), so that
    view v of every member shows the same augmented image (each at its backbone's input)."""
    records = [augmentation(m.provenance) for m in members]
    return all(r == records[0] for r in records)
