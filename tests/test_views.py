"""Index views and the one validation-split function (docs/methods.md, "Validation regimes")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from featlt.data.protocol import (
    Protocol,
    covering_positions,
    expand_protocols,
    load_arrays,
    resolve_view,
)
from featlt.data.validation import split_validation
from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore
from featlt.store.writer import StoreWriter


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


def subset_store(path, labels, X, keep, extracted=None):
    """A store holding rows ``keep[split]`` of a source, with the source's whole label arrays."""
    names = [str(c) for c in range(int(labels.max()) + 1)]
    provenance = {"backbone": {"arch": "toy"}, "data": {"view": extracted}}
    with StoreWriter(path, provenance) as writer:
        for split, rows in keep.items():
            writer.begin_split(split, labels[rows], rows, names, X.shape[1],
                               source_labels=labels)
            writer.write_rows(split, 0, X[rows])
        writer.mark_complete()


def view_data(path, protocol):
    with FeatureStore(path) as store:
        return load_arrays(store, protocol)


def covered(path, protocols):
    with FeatureStore(path) as store:
        return covering_positions(store.labels, store.splits, 10, protocols, "toy")


def test_subset_store_gives_the_full_stores_rows_for_its_view_and_nested_views(tmp_path):
    labels, X = balanced_store(tmp_path / "full.h5")
    if10 = Protocol(profile="cao2019", imbalance_factor=10, val_per_class=5, test_per_class=30)
    keep = covered(tmp_path / "full.h5", expand_protocols(if10, seeds=[0, 1],
                                                          imbalance_factors=[100]))
    subset_store(tmp_path / "sub.h5", labels, X, keep, extracted={"protocol": {
        "profile": "cao2019", "imbalance_factor": 10.0, "test_per_class": 30}})
    assert keep["train"].size < labels.size and keep["test"].size == 300
    nested = dataclasses.replace(if10, imbalance_factor=100, test_per_class=20)
    for protocol in (if10, nested, dataclasses.replace(nested, seed=1)):
        full, sub = view_data(tmp_path / "full.h5", protocol), view_data(tmp_path / "sub.h5",
                                                                         protocol)
        for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
            assert np.array_equal(getattr(full, name), getattr(sub, name)), name
        assert full.view.record() == sub.view.record()
    assert np.bincount(sub.y_test).tolist() == [20] * 10
    # Nested views that never need rows outside the wider subset: carved validation.
    carve = dataclasses.replace(nested, val_source="carve", seed=7)
    assert np.array_equal(view_data(tmp_path / "full.h5", carve).X_val,
                          view_data(tmp_path / "sub.h5", carve).X_val)


def test_view_needing_rows_the_file_lacks_is_refused_naming_them(tmp_path):
    labels, X = balanced_store(tmp_path / "full.h5")
    if10 = Protocol(profile="cao2019", imbalance_factor=10, val_per_class=5, test_per_class=30)
    subset_store(tmp_path / "sub.h5", labels, X, covered(tmp_path / "full.h5", [if10]),
                 extracted={"protocol": {"profile": "cao2019", "imbalance_factor": 10.0},
                            "seeds": [0], "imbalance_factors": [10.0]})
    with FeatureStore(tmp_path / "sub.h5") as store:
        resolve_view(store, dataclasses.replace(if10, imbalance_factor=100, val_source="carve"))
        # IF100's outside validation lies outside the IF10 subset: not extracted.
        with pytest.raises(FeatltError, match=r"needs \d+ rows of split 'train'") as err:
            resolve_view(store, dataclasses.replace(if10, imbalance_factor=100))
        assert "extracted for --profile cao2019 --imbalance-factor 10, seeds [0]" in str(err.value)
        assert "--also-imbalance-factor 100" in str(err.value)
        with pytest.raises(FeatltError, match="rows of split 'train'"):
            resolve_view(store, Protocol())  # the whole split is not there either
        with pytest.raises(FeatltError, match="rows of split 'test'"):
            resolve_view(store, dataclasses.replace(if10, test_per_class=40))
        with pytest.raises(FeatltError, match="--test-per-class 101: split 'test' has only 100"):
            resolve_view(store, dataclasses.replace(if10, test_per_class=101))


def test_full_store_with_source_labels_gives_the_same_rows_as_without(tmp_path):
    labels, X = balanced_store(tmp_path / "legacy.h5")
    whole = {split: np.arange(labels.size) for split in ("train", "test")}
    subset_store(tmp_path / "full.h5", labels, X, whole)
    for protocol in (Protocol(), Protocol(profile="first", imbalance_factor=10, seed=3),
                     Protocol(profile="balanced", balanced_per_class=7, test_per_class=9)):
        a, b = view_data(tmp_path / "legacy.h5", protocol), view_data(tmp_path / "full.h5",
                                                                      protocol)
        assert a.view.record() == b.view.record()
        for name in ("train_rows", "val_rows", "test_rows"):
            assert np.array_equal(getattr(a.view, name), getattr(b.view, name))


def test_balanced_test_subset_is_the_same_for_every_seed(tmp_path):
    labels, _ = balanced_store(tmp_path / "f.h5")
    with FeatureStore(tmp_path / "f.h5") as store:
        views = [resolve_view(store, Protocol(test_per_class=12, seed=s)) for s in (0, 1)]
        with pytest.raises(FeatltError, match="--test-per-class 0"):
            resolve_view(store, Protocol(test_per_class=0))
    assert np.array_equal(views[0].test_rows, views[1].test_rows)
    assert np.bincount(labels[views[0].test_rows]).tolist() == [12] * 10
    assert views[0].record()["test"]["n"] == 120
