"""``featlt evaluate-separability`` end to end on synthetic stores, bad inputs, the demo step."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store

FAST = ["--knn-queries", "200", "--pca-dim", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stores")
    good = write_synthetic_store(folder / "good.h5", n_classes=6, n_max=120, imbalance_factor=20,
                                 dim=12, separation=6.0, n_test_per_class=5, n_val_per_class=6)
    poor = write_synthetic_store(folder / "poor.h5", n_classes=6, n_max=120, imbalance_factor=20,
                                 dim=12, separation=0.8, n_test_per_class=5, n_val_per_class=6,
                                 seed=1)
    return good, poor


def run(*args):
    return CliRunner().invoke(main, ["evaluate-separability", *map(str, args), *FAST])


def test_one_file_writes_report_and_plots(stores, tmp_path):
    good, _ = stores
    result = run(good, "-o", tmp_path / "report.json", "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    assert "knn_balanced_accuracy" in result.output and "higher is better" in result.output
    assert "bin matrices (relative" in result.output and "split plan" in result.output
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["kind"] == "featlt.separability.evaluate" and len(document["reports"]) == 1
    record = document["reports"][0]
    assert record["input"]["file"] == str(good)
    assert record["input"]["features"]["backbone"]["arch"] == "synthetic-gaussian"
    assert record["input"]["view"]["protocol"]["profile"] == "none"
    assert record["input"]["view"]["val"]["regime"] == "split"
    assert record["config"]["knn_queries"] == 200 and record["config"]["pca_dim"] == 8
    assert record["data"]["n_val"] == 36 and record["scores"]["ncm_balanced_accuracy_val"] > 0.9
    assert record["faiss"]["threads"] == 1
    for name in ("good_per_class.png", "good_bins.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_several_files_give_one_comparison_table(stores, tmp_path):
    good, poor = stores
    result = CliRunner().invoke(main, ["evaluate-separability", str(good), str(poor), *FAST,
                                       "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    rows = {Path(row["file"]).name: row for row in document["comparison"]}
    assert rows["good.h5"]["knn_balanced_accuracy"] > rows["poor.h5"]["knn_balanced_accuracy"]
    assert rows["good.h5"]["logme_balanced"] > rows["poor.h5"]["logme_balanced"]
    text = run(good, poor)
    assert text.exit_code == 0 and "comparison" in text.output
    assert "good.h5 [synthetic-gaussian]" in text.output and "poor.h5" in text.output


def test_profile_view_is_recorded(stores, tmp_path):
    good, _ = stores
    result = run(good, "--profile", "first", "--imbalance-factor", "4", "--n-max", "20",
                 "-o", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    view = json.loads((tmp_path / "r.json").read_text())["reports"][0]["input"]["view"]
    assert view["protocol"]["profile"] == "first" and view["protocol"]["imbalance_factor"] == 4
    assert view["train_class_counts"][0] == 20


def broken_copy(source, target, edit):
    target.write_bytes(Path(source).read_bytes())
    with h5py.File(target, "r+") as handle:
        edit(handle)
    return target


def test_bad_inputs_fail_with_clear_messages(stores, tmp_path):
    good, _ = stores
    text_file = tmp_path / "notes.h5"
    text_file.write_text("not hdf5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as handle:
        handle["x"] = np.zeros(3)

    def set_incomplete(h):
        h.attrs["complete"] = False

    def drop_labels(h):
        del h["train/labels"]

    def nan_features(h):
        h["train/features"][5, 0] = np.nan

    def constant_features(h):
        from featlt.store.digests import rewrite_digests

        h["train/features"][...] = 1.0
        rewrite_digests(h["train"], "features")  # degenerate on purpose, not damaged

    cases = [
        (tmp_path / "missing.h5", "not found"),
        (text_file, "not an HDF5 file"),
        (plain, "not a featlt feature store"),
        (broken_copy(good, tmp_path / "incomplete.h5", set_incomplete), "incomplete"),
        (broken_copy(good, tmp_path / "nolabels.h5", drop_labels), "has no labels"),
        (broken_copy(good, tmp_path / "nan.h5", nan_features),
         "stored row 5 (source position 5) holds NaN/inf features"),
        (broken_copy(good, tmp_path / "same.h5", constant_features), "rows are identical"),
    ]
    for path, message in cases:
        result = run(path)
        assert result.exit_code == 2, (path, result.output)
        assert message in result.output and str(path) in result.output, result.output
        assert "Traceback" not in result.output


def test_cuda_without_gpu_is_an_error(stores):
    faiss = pytest.importorskip("faiss")
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible")
    result = run(stores[0], "--device", "cuda")
    assert result.exit_code == 2 and "--device cuda" in result.output


def test_demo_step_reads_the_extracted_files(stores, tmp_path):
    from featlt.demo import DemoContext
    from featlt.demo.separability_step import separability_step
    from featlt.errors import FeatltError
    from featlt.runtime import Runtime

    context = DemoContext(out_dir=tmp_path, quick=True, runtime=Runtime(threads=1))
    with pytest.raises(FeatltError, match="run the 'extract' step first"):
        separability_step(context)
    context.artifacts["feature_files"] = [stores[0]]
    summary = separability_step(context)
    report = Path(summary["report"])
    assert report.is_file() and context.artifacts["separability_report"] == report
    assert len(summary["plots"]) == 2
    assert summary["scores"]["good.h5 [synthetic-gaussian]"]["ncm_balanced_accuracy"] > 0.9
