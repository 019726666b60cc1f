"""Index views and the one validation-split function (docs/methods.md, "Validation regimes")."""

from __future__ import annotations

import numpy as np
import pytest

from featlt.data.protocol import Protocol, load_arrays, resolve_view
from featlt.data.validation import split_validation
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore, StoreWriter


def balanced_store(path, n_classes=10, per_class=100, dim=4, with_val=False):
    labels = np.repeat(np.arange(n_classes), per_class)
    X = np.random.default_rng(0).standard_normal((labels.size, dim)).astype(np.float32)
    names = [str(c) for c in range(n_classes)]
    with StoreWriter(path, {"backbone": {"arch": "toy"}}) as writer:
        for split in ("train", "test", *(("val",) if with_val else ())):
            writer.begin_split(split, labels, np.arange(labels.size), names, dim)
            writer.write_rows(split, 0, X)
        writer.mark_complete()
    return labels, X


def test_outside_regime_draws_balanced_validation_outside_the_subset():
    labels = np.repeat(np.arange(4), 50)
    train_rows = np.concatenate([np.flatnonzero(labels == c)[: n] for c, n in
                                 enumerate([50, 30, 10, 3])])
    tv = split_validation(labels, train_rows, "outside", per_class=5, seed=0)
    assert np.bincount(labels[tv.val]).tolist() == [5, 5, 5, 5]
    assert not set(tv.val) & set(tv.train)
    # Class 0 uses all its images: its 5 come from its own rows and leave training.
    assert tv.moved_from_train == 5
    assert np.bincount(labels[tv.train]).tolist() == [45, 30, 10, 3]
    assert set(tv.val[labels[tv.val] > 0]).isdisjoint(train_rows)
    again = split_validation(labels, train_rows, "outside", per_class=5, seed=0)
    assert np.array_equal(tv.val, again.val)


def test_carve_regime_is_stratified_and_keeps_singletons_in_train():
    labels = np.repeat(np.arange(3), [40, 10, 1])
    tv = split_validation(labels, np.arange(labels.size), "carve", fraction=0.1)
    assert np.bincount(labels[tv.val], minlength=3).tolist() == [4, 1, 0]
    assert np.bincount(labels[tv.train]).tolist() == [36, 9, 1]


def test_too_little_data_to_carve_validation_is_an_error():
    with pytest.raises(FeatltError, match="provide a 'val' split"):
        split_validation(np.arange(3), np.arange(3), "carve")


def test_profile_view_with_outside_validation(tmp_path):
    _, X = balanced_store(tmp_path / "f.h5")
    with FeatureStore(tmp_path / "f.h5") as store:
        view = resolve_view(store, Protocol(profile="cao2019", imbalance_factor=10,
                                            val_per_class=5))
        data = load_arrays(store, view.protocol)
    assert view.val_regime == "outside"
    assert view.train_counts.tolist() == [95, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert np.array_equal(data.X_train, X[view.train_rows])
    assert np.bincount(data.y_val).tolist() == [5] * 10
    assert data.X_test.shape == (1000, 4)
    record = data.provenance["view"]
    assert record["protocol"]["profile"] == "cao2019"
    assert record["train"]["n"] == int(view.train_counts.sum())


def test_stored_val_split_is_used_when_present(tmp_path):
    balanced_store(tmp_path / "f.h5", with_val=True)
    with FeatureStore(tmp_path / "f.h5") as store:
        view = resolve_view(store, Protocol())
    assert (view.val_split, view.val_regime, view.val_rows.size) == ("val", "split", 1000)
    assert view.train_rows.size == 1000


def test_balanced_profile_and_carve_default(tmp_path):
    balanced_store(tmp_path / "f.h5")
    with FeatureStore(tmp_path / "f.h5") as store:
        balanced = resolve_view(store, Protocol(profile="balanced", balanced_per_class=30))
        plain = resolve_view(store, Protocol())
    # A balanced subset of a larger pool takes its validation from outside the subset.
    assert balanced.train_counts.tolist() == [30] * 10
    assert balanced.val_regime == "outside"
    assert plain.val_regime == "carve"
    assert plain.val_rows.size == 100


def test_profile_view_leaving_empty_class_is_refused(tmp_path):
    balanced_store(tmp_path / "f.h5", per_class=20)
    with FeatureStore(tmp_path / "f.h5") as store, pytest.raises(FeatltError, match="0 samples"):
        resolve_view(store, Protocol(profile="first", imbalance_factor=100))
