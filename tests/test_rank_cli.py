"""``featlt rank`` through click's CliRunner: outputs, full mode, reuse, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store

FAST = ("--device", "cpu", "--bootstrap", "50")
FULL = ("--full", "--head", "ncm_cosine", "--head", "la_loss", "--max-epochs", "3")


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, ["rank", *[str(a) for a in args]])


def _store(path: Path, separation: float, **kwargs: object) -> Path:
    return write_synthetic_store(path, n_classes=5, n_max=60, imbalance_factor=10, dim=12,
                                 separation=separation, n_test_per_class=20,
                                 n_val_per_class=8, **kwargs)


def _set_provenance(path: Path, **changes: object) -> Path:
    with h5py.File(path, "r+") as f:
        provenance = json.loads(f.attrs["provenance"])
        provenance.update(changes)
        f.attrs["provenance"] = json.dumps(provenance)
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("rank")
    return [_store(folder / f"b{s:g}.h5", s) for s in (1.5, 3.0, 5.0)]


@pytest.fixture(scope="module")
def full_run(stores: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("full")
    result = _run(*stores, *FAST, *FULL, "--validate", "--heads-dir", out / "heads",
                  "-o", out / "ranking.csv", "--plot", out / "ranking.png")
    return out, result


def test_cheap_mode_prints_a_sorted_table_ending_with_the_recommendation(stores):
    result = _run(*stores, *FAST)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    ranked = [line.split()[1] for line in lines if line[:2].strip().isdigit()]
    assert ranked == ["b5", "b3", "b1.5"]
    assert lines[-1].startswith("Use b5 (b5), first by featlt") and "la_loss" in lines[-1]


def test_json_document_and_sorting_by_another_score(stores):
    result = _run(*stores, *FAST, "--json", "--by", "knn")
    document = json.loads(result.stdout)
    assert document["config"]["by"] == "knn"
    knn = [row["scores"]["knn"] for row in document["rows"]]
    assert knn == sorted(knn, reverse=True)
    assert {"featlt", "logme", "gbc", "sfda", "knn", "ncm", "params",
            "imagenet_top1"} <= set(document["rows"][0]["scores"])


def test_full_mode_measures_validates_and_writes_csv_and_plot(full_run):
    out, result = full_run
    assert result.exit_code == 0, result.output
    with (out / "ranking.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == ["b5", "b3", "b1.5"]
    assert all(r["head"] in ("ncm_cosine", "la_loss") for r in rows)
    assert (out / "ranking.png").stat().st_size > 0
    assert "validation against the measured balanced accuracy of 3 backbones" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Use ")
    assert "bootstrap probability that it is the best on test" in result.output


def test_fit_classifier_output_holds_per_image_test_predictions(full_run):
    out, _ = full_run
    summaries = list((out / "heads").glob("*/summary.json"))
    assert len(summaries) == 3
    summary = json.loads(summaries[0].read_text())
    for row in summary["heads"].values():
        with Path(row["test_predictions"]).open() as handle:
            predictions = list(csv.DictReader(handle))
        assert len(predictions) == 100  # 5 classes x 20 test images
        assert set(predictions[0]) == {"row", "label", "prediction", "confidence"}


def test_full_mode_reuses_heads_fitted_with_the_same_view_and_settings(stores, full_run):
    out, _ = full_run
    result = _run(*stores, *FAST, *FULL, "--heads-dir", out / "heads")
    assert result.exit_code == 0, result.output
    # each of the 3 files reuses its heads and its cross-validation record
    assert result.output.count("(reused)") == 6
    # Another view: fitted again, not reused.
    other = _run(stores[0], *FAST, *FULL, "--heads-dir", out / "heads", "--val-source", "carve")
    assert other.exit_code == 0, other.output
    assert "(reused)" not in other.output


def test_single_file_is_ranked_with_a_note(stores):
    result = _run(stores[0], *FAST)
    assert result.exit_code == 0, result.output
    assert "nothing to compare" in result.output


def test_two_files_of_the_same_backbone_and_settings_are_said_and_ranked_once(stores, tmp_path):
    copy = tmp_path / "copy.h5"
    copy.write_bytes(stores[1].read_bytes())
    result = _run(stores[1], copy, stores[0], *FAST, "--json")
    document = json.loads(result.stdout)
    assert [row["label"] for row in document["rows"]] == ["b3", "b1.5"]
    assert any("same backbone and settings" in note and "copy.h5" in note
               for note in document["notes"])


def test_files_of_different_datasets_are_refused_naming_the_attribute(stores, tmp_path):
    other = _set_provenance(_store(tmp_path / "other.h5", 3.0),
                            data={"sha256": "another-dataset", "scheme": "npz"})
    first = _set_provenance(_store(tmp_path / "first.h5", 2.0),
                            data={"sha256": "one-dataset", "scheme": "npz"})
    result = _run(first, other, *FAST)
    assert result.exit_code == 2
    assert "different datasets" in result.output and "data.sha256" in result.output
    assert "Traceback" not in result.output


def test_an_incomplete_file_is_refused(stores, tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(stores[0].read_bytes())
    with h5py.File(broken, "r+") as f:
        f.attrs["complete"] = False
    result = _run(stores[1], broken, *FAST)
    assert result.exit_code == 2
    assert "broken.h5: incomplete" in result.output and "--resume" in result.output


def test_full_mode_refuses_a_file_without_a_test_split(stores, tmp_path):
    no_test = tmp_path / "no_test.h5"
    no_test.write_bytes(stores[0].read_bytes())
    with h5py.File(no_test, "r+") as f:
        del f["test"]
    cheap = _run(stores[1], no_test, *FAST)
    assert cheap.exit_code == 0, cheap.output  # cheap mode never reads the test split
    result = _run(stores[1], no_test, *FAST, *FULL, "--heads-dir", tmp_path / "heads")
    assert result.exit_code == 2
    assert "no_test.h5: no 'test' split" in result.output and "without --full" in result.output


def test_validate_without_full_is_refused(stores):
    result = _run(*stores, *FAST, "--validate")
    assert result.exit_code == 2 and "--validate: needs --full" in result.output
