"""The feature store: schema, crash-safety marks, provenance checks, chunked index-view reads."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from featlt.errors import ProvenanceMismatchError, StoreError
from featlt.store.feature_store import FeatureStore
from featlt.store.provenance import backbone_identity, provenance_diff
from featlt.store.writer import StoreWriter

PROV = {"backbone": {"arch": "toy", "weights_sha256": "abc"}, "extract": {"batch_size": 4},
        "run": {"host": "a"}}
NAMES = ["a", "b", "c"]


def write_store(path, n=10, dim=5, complete=True, views=0, logits=0, dtype="float32"):
    labels = np.arange(n) % 3
    X = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    with StoreWriter(path, PROV) as writer:
        writer.begin_split("train", labels, np.arange(n) + 100, NAMES, dim, dtype=dtype,
                           n_views=views, n_logits=logits)
        for start in range(0, n, 4):
            stop = min(start + 4, n)
            writer.write_rows(
                "train", start, X[start:stop],
                views=np.stack([X[start:stop]] * views, axis=1) if views else None,
                logits=np.ones((stop - start, logits), np.float32) if logits else None,
            )
        if complete:
            writer.mark_complete()
    return X, labels


def test_schema_roundtrip(tmp_path):
    path = tmp_path / "f.h5"
    X, labels = write_store(path, views=2, logits=7)
    with h5py.File(path, "r") as raw:
        assert raw["train/features"].shape == (10, 5)
        assert raw["train/views"].shape == (10, 2, 5)
        assert raw["train/logits"].shape == (10, 7)
        assert raw["train/labels"].dtype == np.int64
        assert raw["train"].attrs["n_written"] == 10
        assert json.loads(raw["train"].attrs["class_counts"]) == [4, 3, 3]
        assert bool(raw.attrs["complete"])
    with FeatureStore(path) as store:
        info = store.info("train")
        assert (info.n_rows, info.dim, info.n_views, info.n_logits) == (10, 5, 2, 7)
        assert store.provenance == PROV
        assert np.array_equal(store.read("train"), X)
        assert np.array_equal(store.labels("train"), labels)
        assert np.array_equal(store.source_index("train"), np.arange(10) + 100)
        assert store.read("train", array="views").shape == (10, 2, 5)


def test_index_view_reads_in_small_chunks_equal_full_read(tmp_path):
    path = tmp_path / "f.h5"
    X, _ = write_store(path, n=10000, dim=64)  # 1 MiB chunks of 4096 rows
    rows = np.array([0, 3, 4, 500, 4095, 4096, 9998, 9999])
    with FeatureStore(path) as store:
        # A tiny budget falls back to one HDF5 chunk per block.
        streamed = store.read("train", rows, budget_mb=64 * 4 / 2**20)
        assert np.array_equal(streamed, X[rows])
        blocks = list(store.iter_rows("train", None, budget_mb=0.05))
        assert [len(positions) for positions, _ in blocks] == [4096, 4096, 1808]
        assert np.array_equal(np.concatenate([b for _, b in blocks]), X)
        with pytest.raises(StoreError, match="sorted, unique"):
            store.read("train", np.array([5, 3]))


def test_incomplete_store_is_refused_and_info_can_still_read_it(tmp_path):
    path = tmp_path / "f.h5"
    write_store(path, complete=False)
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(path)
    with FeatureStore(path, allow_incomplete=True) as store:
        assert not store.complete


def test_not_a_store_and_missing_file(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        FeatureStore(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as raw:
        raw["x"] = np.zeros(3)
    with pytest.raises(StoreError, match="not a featlt feature store"):
        FeatureStore(other)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        FeatureStore(text)


def test_existing_output_refused_without_resume_or_overwrite(tmp_path):
    path = tmp_path / "f.h5"
    write_store(path)
    with pytest.raises(StoreError, match=r"--resume .* --overwrite"):
        StoreWriter(path, PROV)
    # An unfinished overwrite leaves the complete store as it was, beside an unfinished file.
    StoreWriter(path, PROV, mode="overwrite").close()
    with FeatureStore(path) as store:
        assert store.complete
    assert (tmp_path / "f.h5.partial").exists()
    with pytest.raises(StoreError, match=r"interrupted run left f\.h5\.partial; pass --resume"):
        StoreWriter(path, PROV)


def test_resume_with_different_provenance_names_the_attribute(tmp_path):
    path = tmp_path / "f.h5"
    write_store(path, complete=False)
    changed = {**PROV, "extract": {"batch_size": 8}, "run": {"host": "b"}}
    with pytest.raises(ProvenanceMismatchError, match=r"extract\.batch_size.*4.*8"):
        StoreWriter(path, changed, mode="resume")
    # The volatile 'run' record may differ.
    with StoreWriter(path, {**PROV, "run": {"host": "b"}}, mode="resume") as writer:
        assert writer.begin_split("train", np.arange(10) % 3, np.arange(10) + 100, NAMES, 5) == 10


def test_backbone_identity_ignores_where_and_how_it_ran():
    cpu = {"backbone": {"model": "m.t", "device": "cpu", "precision": "float32", "zoo": "m",
                        "weights": {"tensors_sha256": "x", "source": "zoo"}}}
    cuda = {"backbone": {"model": "m.t", "device": "cuda", "precision": "amp-float16",
                         "weights": {"tensors_sha256": "x", "source": "file"}}}
    assert backbone_identity(cpu) == backbone_identity(cuda) == {
        "model": "m.t", "weights": {"tensors_sha256": "x"}}
    other = {"backbone": {**cuda["backbone"], "weights": {"tensors_sha256": "y"}}}
    assert provenance_diff({"b": backbone_identity(cpu)}, {"b": backbone_identity(other)}) == [
        "b.weights.tensors_sha256"]


def test_provenance_diff_lists_nested_keys():
    assert provenance_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == ["a.c", "d"]


def test_rows_must_be_appended_in_order_and_float16_overflow_is_refused(tmp_path):
    with StoreWriter(tmp_path / "f.h5", PROV) as writer:
        writer.begin_split("train", np.zeros(4, int), np.arange(4), NAMES, 2, dtype="float16")
        with pytest.raises(StoreError, match="expects rows from 0"):
            writer.write_rows("train", 2, np.zeros((2, 2)))
        with pytest.raises(StoreError, match="--dtype float32"):
            writer.write_rows("train", 0, np.full((2, 2), 1e6))
        with pytest.raises(StoreError, match="NaN"):
            writer.write_rows("train", 0, np.full((2, 2), np.nan))
        assert writer.n_written("train") == 0
        with pytest.raises(StoreError, match="not fully written"):
            writer.mark_complete()


def test_empty_split_is_refused(tmp_path):
    with StoreWriter(tmp_path / "f.h5", PROV) as writer, pytest.raises(StoreError, match="no rows"):
        writer.begin_split("val", np.zeros(0, int), np.zeros(0, int), NAMES, 2)


def test_unwritable_output(tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    with pytest.raises(StoreError, match="cannot create folder"):
        StoreWriter(not_a_folder / "f.h5", PROV)
