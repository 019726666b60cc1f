"""Index views: long-tail profiles, balanced subsets and validation splits chosen at read time.

A :class:`Protocol` says how to read a store (which profile, which imbalance factor, where the
validation rows come from); :func:`resolve_view` turns it into row indices on the stored splits
and :func:`load_arrays` reads them. Nobody re-extracts to try another imbalance factor, and every
result records ``DataView.record()`` in its provenance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from featlt.data.profiles import balanced_rows, long_tail_counts, long_tail_rows
from featlt.data.validation import split_validation
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore

ProfileName = Literal["none", "cao2019", "first", "balanced"]
ValSource = Literal["auto", "split", "outside", "carve"]


@dataclass(frozen=True)
class Protocol:
    """How to select training, validation and test rows from a store."""

    profile: ProfileName = "none"  # none: all stored train rows; balanced: per-class subset
    imbalance_factor: float = 100.0
    decay: Literal["exp", "step"] = "exp"
    n_max: int | None = None  # largest class's count; None: smallest stored class count
    balanced_per_class: int | None = None  # with profile="balanced"
    # auto: a stored 'val' split, else outside the subset (profiles), else carved from train
    val_source: ValSource = "auto"
    val_per_class: int = 20  # outside regime: balanced validation rows per class
    val_fraction: float = 0.1  # carve regime: share of each class carved off
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    seed: int = 0


@dataclass(frozen=True)
class DataView:
    """Resolved row indices (sorted) into the stored splits, and what produced them."""

    protocol: Protocol
    train_split: str
    train_rows: np.ndarray  # (n_train,) int64
    val_split: str
    val_rows: np.ndarray  # (n_val,) int64
    val_regime: str
    test_split: str | None
    test_rows: np.ndarray | None  # (n_test,) int64, None without a test split
    class_names: list[str]
    train_counts: np.ndarray = field(repr=False)  # (C,) int64 training count per class

    def record(self) -> dict[str, Any]:
        """A JSON-able description for provenance: the protocol plus resulting sizes."""
        return {
            "protocol": asdict(self.protocol),
            "train": {"split": self.train_split, "n": int(self.train_rows.size)},
            "val": {"split": self.val_split, "n": int(self.val_rows.size),
                    "regime": self.val_regime},
            "test": None if self.test_rows is None
            else {"split": self.test_split, "n": int(self.test_rows.size)},
            "train_class_counts": [int(c) for c in self.train_counts],
        }


@dataclass(frozen=True)
class FeatureArrays:
    """The arrays a head or a score works on, with labels 0..C-1."""

    X_train: np.ndarray  # (n_train, D) float32
    y_train: np.ndarray  # (n_train,) int64
    X_val: np.ndarray  # (n_val, D) float32
    y_val: np.ndarray  # (n_val,) int64
    X_test: np.ndarray | None  # (n_test, D) float32
    y_test: np.ndarray | None  # (n_test,) int64
    class_names: list[str]
    train_counts: np.ndarray  # (C,) int64
    view: DataView
    provenance: dict[str, Any]
    views_train: np.ndarray | None = None  # (n_train, V, D) float32, when requested and stored


def select_train_rows(labels: np.ndarray, n_classes: int, protocol: Protocol) -> np.ndarray:
    """Training rows of the stored train split under ``protocol`` (sorted int64)."""
    if protocol.profile == "none":
        return np.arange(labels.shape[0], dtype=np.int64)
    if protocol.profile == "balanced":
        if not protocol.balanced_per_class:
            raise FeatltError(
                "profile 'balanced': needs a per-class count; pass --balanced-per-class N"
            )
        return balanced_rows(labels, protocol.balanced_per_class, seed=protocol.seed)
    stored = np.bincount(labels, minlength=n_classes)
    n_max = protocol.n_max if protocol.n_max is not None else int(stored.min())
    counts = long_tail_counts(n_max, n_classes, protocol.imbalance_factor, protocol.decay)
    return long_tail_rows(labels, counts, protocol.profile)  # type: ignore[arg-type]


def resolve_view(store: FeatureStore, protocol: Protocol | None = None) -> DataView:
    """Turn a protocol into row indices on ``store``'s splits."""
    protocol = protocol or Protocol()
    labels = store.labels(protocol.train_split)
    class_names = store.class_names(protocol.train_split)
    n_classes = len(class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise FeatltError(
            f"feature file {store.path}: labels outside 0..{n_classes - 1}; re-extract the data"
        )
    train_rows = select_train_rows(labels, n_classes, protocol)
    source = protocol.val_source
    if source == "auto":
        if protocol.val_split in store.splits:
            source = "split"
        elif protocol.profile in ("none",):
            source = "carve"
        else:
            source = "outside"
    if source == "split":
        if protocol.val_split not in store.splits:
            raise FeatltError(
                f"feature file {store.path}: no '{protocol.val_split}' split for validation; "
                "use val_source outside or carve"
            )
        val_split, val_rows, regime = protocol.val_split, None, "split"
    else:
        tv = split_validation(
            labels, train_rows, regime=source, per_class=protocol.val_per_class,  # type: ignore[arg-type]
            fraction=protocol.val_fraction, seed=protocol.seed,
        )
        train_rows, val_split, val_rows, regime = tv.train, protocol.train_split, tv.val, source
    if val_rows is None:
        val_rows = np.arange(store.labels(val_split).shape[0], dtype=np.int64)
    test_split = protocol.test_split if protocol.test_split in store.splits else None
    test_rows = (
        np.arange(store.labels(test_split).shape[0], dtype=np.int64) if test_split else None
    )
    train_counts = np.bincount(labels[train_rows], minlength=n_classes).astype(np.int64)
    if train_rows.size == 0:
        raise FeatltError(f"feature file {store.path}: the training view is empty")
    return DataView(
        protocol=protocol, train_split=protocol.train_split, train_rows=train_rows,
        val_split=val_split, val_rows=val_rows, val_regime=regime, test_split=test_split,
        test_rows=test_rows, class_names=class_names, train_counts=train_counts,
    )


def load_arrays(
    store: FeatureStore, protocol: Protocol | None = None, with_views: bool = False
) -> FeatureArrays:
    """Resolve ``protocol`` on ``store`` and read the selected rows into memory (float32)."""
    view = resolve_view(store, protocol)

    def read(split: str | None, rows: np.ndarray | None) -> tuple[Any, Any]:
        if split is None or rows is None:
            return None, None
        return store.read(split, rows), store.labels(split)[rows]

    X_train, y_train = read(view.train_split, view.train_rows)
    X_val, y_val = read(view.val_split, view.val_rows)
    X_test, y_test = read(view.test_split, view.test_rows)
    views_train = None
    if with_views and store.has(view.train_split, "views"):
        views_train = store.read(view.train_split, view.train_rows, array="views")
    return FeatureArrays(
        X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test,
        y_test=y_test, class_names=view.class_names, train_counts=view.train_counts, view=view,
        provenance={"store": str(store.path), "features": store.provenance,
                    "view": view.record()},
        views_train=views_train,
    )
