"""Index views: long-tail profiles, balanced subsets and validation splits chosen at read time.

A :class:`Protocol` says how to read a store (which profile, which imbalance factor, where the
validation rows come from, how large a balanced test subset); :func:`resolve_view` turns it into
row indices on the stored splits and :func:`load_arrays` reads them. Nobody re-extracts to try
another imbalance factor, and every result records ``DataView.record()`` in its provenance.

Every protocol is resolved on *positions in the whole split* (:func:`view_positions`): on the
source split's labels when the store holds them (``/<split>/source_labels``, written by an
extraction restricted to a view, ``featlt extract --profile ...``), else on the stored rows (a full
extraction, whose rows are the split). Positions then map to stored rows through the stored
``index``, so a file that holds only the rows a view reads gives exactly the rows, and features, a
full extraction gives, and a view that needs rows the file lacks is refused, naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np

from featlt.data.profiles import (
    balanced_rows,
    long_tail_counts,
    long_tail_rows,
    nested_balanced_rows,
)
from featlt.data.validation import split_validation
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore

ProfileName = Literal["none", "cao2019", "first", "balanced"]
ValSource = Literal["auto", "split", "outside", "carve"]
# The balanced test subset is the same images for every --seed (results over seeds pair up).
TEST_SUBSET_SEED = 0


@dataclass(frozen=True)
class Protocol:
    """How to select training, validation and test rows from a store."""

    profile: ProfileName = "none"  # none: the whole train split; balanced: per-class subset
    imbalance_factor: float = 100.0
    decay: Literal["exp", "step"] = "exp"
    n_max: int | None = None  # largest class's count; None: smallest class count of the split
    balanced_per_class: int | None = None  # with profile="balanced"
    # auto: a stored 'val' split, else outside the subset (profiles), else carved from train
    val_source: ValSource = "auto"
    val_per_class: int = 20  # outside regime: balanced validation rows per class
    val_fraction: float = 0.1  # carve regime: share of each class carved off
    test_per_class: int | None = None  # a fixed balanced test subset; None: the whole test split
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    seed: int = 0

    def reads_whole_splits(self) -> bool:
        """True when the view reads every row of every split (train, val and test)."""
        return self.profile == "none" and self.test_per_class is None

    def options_text(self) -> str:
        """The command-line view options that select this view (non-default ones only)."""
        default = Protocol()
        names = {"profile": "--profile", "imbalance_factor": "--imbalance-factor",
                 "decay": "--decay", "n_max": "--n-max",
                 "balanced_per_class": "--balanced-per-class", "val_source": "--val-source",
                 "val_per_class": "--val-per-class", "test_per_class": "--test-per-class"}
        parts = [f"{flag} {getattr(self, name):g}" if isinstance(getattr(self, name), float)
                 else f"{flag} {getattr(self, name)}"
                 for name, flag in names.items() if getattr(self, name) != getattr(default, name)]
        return " ".join(parts) or "(no view options)"


@dataclass(frozen=True)
class ViewPositions:
    """A protocol resolved on positions in whole splits (sorted int64 arrays)."""

    train_split: str
    train: np.ndarray  # (n_train,) positions in the train split
    val_split: str
    val: np.ndarray  # (n_val,) positions in val_split
    val_regime: str
    test_split: str | None
    test: np.ndarray | None  # (n_test,) positions in the test split, None without one
    train_counts: np.ndarray  # (C,) int64 training count per class

    def by_split(self) -> dict[str, np.ndarray]:
        """{split: sorted unique positions the view reads from it}."""
        parts: dict[str, list[np.ndarray]] = {}
        for split, rows in ((self.train_split, self.train), (self.val_split, self.val),
                            (self.test_split, self.test)):
            if split is not None and rows is not None:
                parts.setdefault(split, []).append(rows)
        return {split: np.unique(np.concatenate(rows)).astype(np.int64)
                for split, rows in parts.items()}


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
    """Training positions of a whole train split under ``protocol`` (sorted int64)."""
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


def select_test_rows(labels: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Test positions: the whole split, or a fixed balanced ``test_per_class`` subset (the same
    for every seed, and nested: 200 per class lie inside 500 per class)."""
    if protocol.test_per_class is None:
        return np.arange(labels.shape[0], dtype=np.int64)
    if protocol.test_per_class < 1:
        raise FeatltError(
            f"--test-per-class {protocol.test_per_class}: must be at least 1; e.g. 500"
        )
    counts = np.bincount(labels)
    if counts.size and counts.min() < protocol.test_per_class:
        smallest = int(np.argmin(counts))
        raise FeatltError(
            f"--test-per-class {protocol.test_per_class}: split '{protocol.test_split}' has only "
            f"{int(counts[smallest])} images of class {smallest}; pass at most "
            f"{int(counts.min())}"
        )
    return nested_balanced_rows(labels, protocol.test_per_class, seed=TEST_SUBSET_SEED)


def view_positions(
    labels_of: Callable[[str], np.ndarray],
    splits: Sequence[str],
    n_classes: int,
    protocol: Protocol,
    where: str,
) -> ViewPositions:
    """Resolve ``protocol`` on positions in whole splits.

    Args:
        labels_of: split name -> (N_split,) int64 labels of the whole split.
        splits: the splits there are (a store's, or the ones an extraction writes).
        n_classes: C; labels must lie in 0..C-1.
        where: the file or dataset, for error messages.
    """
    labels = labels_of(protocol.train_split)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise FeatltError(f"{where}: labels outside 0..{n_classes - 1}; re-extract the data")
    train = select_train_rows(labels, n_classes, protocol)
    source = protocol.val_source
    if source == "auto":
        if protocol.val_split in splits:
            source = "split"
        elif protocol.profile == "none":
            source = "carve"
        else:
            source = "outside"
    if source == "split":
        if protocol.val_split not in splits:
            raise FeatltError(
                f"{where}: no '{protocol.val_split}' split for validation; "
                "use --val-source outside or carve"
            )
        val_split, regime = protocol.val_split, "split"
        val = np.arange(labels_of(val_split).shape[0], dtype=np.int64)
    else:
        tv = split_validation(
            labels, train, regime=source, per_class=protocol.val_per_class,  # type: ignore[arg-type]
            fraction=protocol.val_fraction, seed=protocol.seed,
        )
        train, val_split, val, regime = tv.train, protocol.train_split, tv.val, source
    if train.size == 0:
        raise FeatltError(f"{where}: the training view is empty")
    test_split = protocol.test_split if protocol.test_split in splits else None
    test = select_test_rows(labels_of(test_split), protocol) if test_split else None
    return ViewPositions(
        train_split=protocol.train_split, train=train, val_split=val_split, val=val,
        val_regime=regime, test_split=test_split, test=test,
        train_counts=np.bincount(labels[train], minlength=n_classes).astype(np.int64),
    )


def resolve_view(store: FeatureStore, protocol: Protocol | None = None) -> DataView:
    """Turn a protocol into row indices on ``store``'s splits.

    Raises :class:`FeatltError` when the view needs rows the file does not hold.
    """
    protocol = protocol or Protocol()
    class_names = store.class_names(protocol.train_split)
    positions = view_positions(_whole_split_labels(store), store.splits, len(class_names),
                               protocol, f"feature file {store.path}")
    return DataView(
        protocol=protocol, train_split=positions.train_split,
        train_rows=stored_rows(store, positions.train_split, positions.train, protocol),
        val_split=positions.val_split,
        val_rows=stored_rows(store, positions.val_split, positions.val, protocol),
        val_regime=positions.val_regime, test_split=positions.test_split,
        test_rows=None if positions.test_split is None or positions.test is None
        else stored_rows(store, positions.test_split, positions.test, protocol),
        class_names=class_names, train_counts=positions.train_counts,
    )


def _whole_split_labels(store: FeatureStore) -> Callable[[str], np.ndarray]:
    """split -> labels of the whole split: the source's when stored, else the stored rows'."""

    def labels_of(split: str) -> np.ndarray:
        source = store.source_labels(split)
        return store.labels(split) if source is None else source

    return labels_of


def stored_rows(
    store: FeatureStore, split: str, positions: np.ndarray, protocol: Protocol
) -> np.ndarray:
    """(n,) sorted stored rows of ``split`` holding the whole-split ``positions``.

    Without stored source labels the positions are the stored rows. Otherwise they are source
    positions, looked up in the stored ``index``; any the file lacks are refused.
    """
    if store.source_labels(split) is None:
        return np.asarray(positions, dtype=np.int64)
    index = store.source_index(split)
    order = np.argsort(index, kind="stable")
    found = np.searchsorted(index[order], positions)
    found = np.minimum(found, max(index.size - 1, 0))
    held = (index[order][found] == positions) if index.size else np.zeros(positions.size, bool)
    if not held.all():
        raise FeatltError(_missing_rows_message(store, split, int((~held).sum()), protocol))
    return np.sort(order[found]).astype(np.int64)


def _missing_rows_message(store: FeatureStore, split: str, n_missing: int,
                          protocol: Protocol) -> str:
    view = (store.provenance.get("data") or {}).get("view") or {}
    extracted = view.get("protocol")
    made_for = ""
    if extracted is not None:
        options = Protocol(**_protocol_fields(extracted)).options_text()
        made_for = (f" (it was extracted for {options}, seeds {view.get('seeds')}, "
                    f"imbalance factors {view.get('imbalance_factors')})")
    return (
        f"feature file {store.path}: the view {protocol.options_text()} (seed {protocol.seed}) "
        f"needs {n_missing} rows of split '{split}' that the file does not hold{made_for}; "
        f"extract them with `featlt extract ... {protocol.options_text()} --view-seeds "
        f"{protocol.seed}`, or cover this view in the extraction with --also-imbalance-factor "
        f"{protocol.imbalance_factor:g} / --view-seeds (a nested view's outside validation rows "
        "lie outside the wider subset), or extract without view options"
    )


def covering_positions(
    labels_of: Callable[[str], np.ndarray],
    splits: Sequence[str],
    n_classes: int,
    protocols: Sequence[Protocol],
    where: str,
) -> dict[str, np.ndarray]:
    """{split: sorted positions} read by any of ``protocols`` (what an extraction must hold)."""
    parts: dict[str, list[np.ndarray]] = {}
    for protocol in protocols:
        positions = view_positions(labels_of, splits, n_classes, protocol, where)
        for split, rows in positions.by_split().items():
            parts.setdefault(split, []).append(rows)
    return {split: np.unique(np.concatenate(rows)).astype(np.int64)
            for split, rows in parts.items()}


def expand_protocols(
    protocol: Protocol, seeds: Sequence[int], imbalance_factors: Sequence[float] = ()
) -> list[Protocol]:
    """``protocol`` at every seed and every extra imbalance factor (a nested view's validation
    rows are drawn outside its own subset, so an extraction lists the factors it will serve)."""
    factors = [protocol.imbalance_factor, *imbalance_factors]
    return [replace(protocol, seed=int(seed), imbalance_factor=float(factor))
            for factor in dict.fromkeys(factors) for seed in dict.fromkeys(seeds)]


def _protocol_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The Protocol fields of a recorded protocol (unknown keys dropped)."""
    names = {f.name for f in fields(Protocol)}
    return {k: v for k, v in record.items() if k in names}


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
