"""Extracting only the rows an index view reads, and the multi-backbone sweep."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.protocol import Protocol, load_arrays
from featlt.errors import FeatltError, ProvenanceMismatchError
from featlt.extract.pipeline import ExtractConfig, extract_features
from featlt.extract.sweep import output_paths
from featlt.runtime import Runtime
from featlt.store.feature_store import FeatureStore

RUNTIME = Runtime(threads=1)
# pixels: exact features, whatever the batch, so a view's rows compare bit for bit.
MODEL = "pixels_4"


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    """npz: 4 classes; train 30 per class, test 10 per class; 8x8 RGB uint8, distinct images."""
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(4), 30), np.repeat(np.arange(4), 10)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8), y_train=y_train,
             x_test=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), y_test=y_test,
             class_names=["a", "b", "c", "d"])
    return path


def _config(arrays: Path, output: Path, **changes: object) -> ExtractConfig:
    base = ExtractConfig(model=MODEL, data=f"npz:{arrays}", output=output, batch_size=16,
                         workers=0, dtype="float32")
    return dataclasses.replace(base, **changes)


IF5 = Protocol(profile="cao2019", imbalance_factor=5, val_per_class=3, test_per_class=6)


def test_view_extraction_holds_only_its_rows_and_reads_like_a_full_one(arrays, tmp_path):
    full = tmp_path / "full.h5"
    extract_features(_config(arrays, full), RUNTIME)
    part = tmp_path / "part.h5"
    extract_features(_config(arrays, part, protocol=IF5, view_seeds=(0, 1),
                             also_imbalance_factors=(10.0,)), RUNTIME)
    with FeatureStore(part) as store:
        view = store.provenance["data"]["view"]
        assert view["seeds"] == [0, 1] and view["imbalance_factors"] == [5.0, 10.0]
        assert view["protocol"]["test_per_class"] == 6
        assert store.info("test").n_rows == 24 and view["rows"]["test"] == 24
        assert store.info("train").n_rows < 120
        assert np.array_equal(store.source_labels("train"), np.repeat(np.arange(4), 30))
    with FeatureStore(full) as store:
        assert store.source_labels("train") is None  # a whole-split extraction, as before
    nested = [IF5, dataclasses.replace(IF5, seed=1), dataclasses.replace(IF5, imbalance_factor=10),
              dataclasses.replace(IF5, imbalance_factor=10, test_per_class=2, seed=1)]
    for protocol in nested:
        with FeatureStore(full) as a, FeatureStore(part) as b:
            x, y = load_arrays(a, protocol), load_arrays(b, protocol)
        for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
            assert np.array_equal(getattr(x, name), getattr(y, name)), (protocol, name)
    with FeatureStore(part) as store, pytest.raises(FeatltError, match="rows of split 'train'"):
        load_arrays(store, dataclasses.replace(IF5, seed=2))


def test_view_extraction_refuses_limit_and_a_view_the_data_cannot_give(arrays, tmp_path):
    with pytest.raises(FeatltError, match="--limit with view options"):
        extract_features(_config(arrays, tmp_path / "a.h5", protocol=IF5, limit=10), RUNTIME)
    with pytest.raises(FeatltError, match="--test-per-class 11: split 'test' has only 10"):
        extract_features(_config(arrays, tmp_path / "b.h5",
                                 protocol=dataclasses.replace(IF5, test_per_class=11)), RUNTIME)
    with pytest.raises(FeatltError, match="asks for 31 samples of class 0 but the split has 30"):
        extract_features(_config(arrays, tmp_path / "c.h5",
                                 protocol=dataclasses.replace(IF5, n_max=31)), RUNTIME)
    assert not any((tmp_path / name).exists() for name in ("a.h5", "b.h5", "c.h5"))


def test_skip_existing_keeps_resumes_or_refuses(arrays, tmp_path):
    out = tmp_path / "f.h5"
    config = _config(arrays, out, protocol=IF5, skip_existing=True)
    first = extract_features(config, RUNTIME)
    assert first.splits[0].resumed_from == 0
    stamp = out.stat().st_mtime_ns
    kept = extract_features(config, RUNTIME)
    assert out.stat().st_mtime_ns == stamp
    assert all(s.resumed_from == s.rows and s.seconds == 0 for s in kept.splits)
    with pytest.raises(ProvenanceMismatchError,
                       match=r"'store.dtype' \('float32' vs 'float16'\)"):
        extract_features(dataclasses.replace(config, dtype="float16"), RUNTIME)
    with pytest.raises(ProvenanceMismatchError, match=r"'data\.view\.imbalance_factors'"):
        extract_features(dataclasses.replace(
            config, protocol=dataclasses.replace(IF5, imbalance_factor=10)), RUNTIME)
    import h5py

    with h5py.File(out, "r+") as handle:  # as a kill mid-split leaves it
        handle.attrs["complete"] = False
        handle["test"].attrs["n_written"] = 16
    resumed = extract_features(config, RUNTIME)
    assert [s.resumed_from for s in resumed.splits] == [first.splits[0].rows, 16]
    with FeatureStore(out) as store:
        assert store.complete


def test_sweep_template_names_each_file_and_refuses_collisions(tmp_path):
    paths = output_paths(tmp_path / "{model}-{weights}-{layer}-{resolution}.h5",
                         ["pixels_4", "pixels_8"], None, None, 32)
    assert [p.name for p in paths] == ["pixels_4-default-prelogits-32.h5",
                                       "pixels_8-default-prelogits-32.h5"]
    assert output_paths(tmp_path / "{weights}.h5", ["m"], "/w/lite0.safetensors", None,
                        None)[0].name == "lite0.h5"
    with pytest.raises(FeatltError, match="--model pixels_4 and --model pixels_4 would both"):
        output_paths(tmp_path / "{model}.h5", ["pixels_4", "pixels_4"], None, None, None)
    with pytest.raises(FeatltError, match=r"unknown template field \{data\}"):
        output_paths(tmp_path / "{data}.h5", ["pixels_4"], None, None, None)


def test_sweep_cli_goes_on_after_a_failing_backbone(arrays, tmp_path):
    runner = CliRunner()
    template = str(tmp_path / "out" / "{model}.h5")
    common = ["--data", f"npz:{arrays}", "--workers", "0", "--threads", "1",
              "--profile", "cao2019", "--imbalance-factor", "5", "--test-per-class", "6"]
    collide = runner.invoke(main, ["extract", "-m", "pixels_4", "-m", "pixels_8", *common,
                                   "-o", str(tmp_path / "out" / "same.h5")])
    assert collide.exit_code == 2 and "would both write" in collide.output
    assert not (tmp_path / "out").exists()
    sweep = runner.invoke(main, ["extract", "-m", "pixels_4", "-m", "no_such_net", "-m",
                                 "pixels_8", *common, "-o", template, "--json"])
    assert sweep.exit_code == 2
    assert "sweep: 1 of 3 backbones failed: --model no_such_net" in sweep.output
    document = json.loads(sweep.stdout[: sweep.stdout.rindex("}") + 1])  # one JSON document
    assert [r["output"] for r in document["results"]] == [str(tmp_path / "out" / "pixels_4.h5"),
                                                          str(tmp_path / "out" / "pixels_8.h5")]
    assert document["failed"][0]["model"] == "no_such_net"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pixels_4.h5",
                                                                    "pixels_8.h5"]
    again = runner.invoke(main, ["extract", "-m", "pixels_4", "-m", "pixels_8", *common,
                                 "-o", template, "--skip-existing"])
    assert again.exit_code == 0, again.output
    assert again.output.count("kept") >= 4
    with FeatureStore(tmp_path / "out" / "pixels_8.h5") as store:
        assert store.info("test").n_rows == 24


def test_reading_commands_take_the_test_subset(arrays, tmp_path):
    out = tmp_path / "f.h5"
    extract_features(_config(arrays, out, protocol=IF5), RUNTIME)
    result = CliRunner().invoke(main, ["fit-classifier", str(out), "--head", "ncm_l2", "--json",
                                       "--bootstrap", "0", "-o", str(tmp_path / "heads"),
                                       "--profile", "cao2019", "--imbalance-factor", "5",
                                       "--val-per-class", "3", "--test-per-class", "4"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)["provenance"]["view"]
    assert view["test"] == {"split": "test", "n": 16}
    assert view["protocol"]["test_per_class"] == 4
