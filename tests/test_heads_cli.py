"""``featlt fit-classifier`` and ``featlt predict`` through click's CliRunner; the demo step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.heads.registry import list_heads
from featlt.store.writer import StoreWriter

QUICK = ("--max-epochs", "5", "--bootstrap", "50", "--device", "cpu")


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Balanced stored train (6 classes x 60), test 20/class; cao2019 IF10 is taken at read time."""
    path = tmp_path_factory.mktemp("store") / "feats.h5"
    return write_synthetic_store(path, n_classes=6, n_max=60, imbalance_factor=1.0, dim=8,
                                 separation=3.0, n_test_per_class=20)


@pytest.fixture(scope="module")
def fitted(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("heads")
    result = _run("fit-classifier", store, "--head", "linear", "--head", "tau_norm", "--head",
                  "ncm_cosine", "--profile", "cao2019", "--imbalance-factor", "10", *QUICK,
                  "-o", out)
    return out, result


def write_store(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                names: list[str], backbone: str = "synthetic-gaussian") -> Path:
    """A complete store; an empty split is written as one row and then emptied with h5py
    (StoreWriter cannot create a 0-row chunked dataset)."""
    import h5py

    with StoreWriter(path, {"backbone": {"arch": backbone}}) as writer:
        for split, (X, y) in splits.items():
            Xw, yw = (X, y) if y.size else (np.zeros((1, X.shape[1]), np.float32), np.zeros(1))
            writer.begin_split(split, yw, np.arange(yw.size), names, X.shape[1])
            writer.write_rows(split, 0, Xw)
        writer.mark_complete()
    with h5py.File(path, "r+") as f:
        for split, (X, y) in splits.items():
            if not y.size:
                for name, array in (("features", X), ("labels", y), ("index", y)):
                    del f[split][name]
                    f[split].create_dataset(name, data=array)
                f[split].attrs["n_rows"] = f[split].attrs["n_written"] = 0
    return path


def test_fit_classifier_saves_every_head_and_prints_a_table(fitted: tuple[Path, Result]) -> None:
    out, result = fitted
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "profile cao2019" in lines[0] and "val 120 (outside)" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["linear", "tau_norm", "ncm_cosine"]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["heads"]) == ["linear", "tau_norm", "ncm_cosine"]
    for name in summary["heads"]:
        assert (out / name / "head.safetensors").is_file()
        document = json.loads((out / name / "head.json").read_text())
        assert document["provenance"]["view"]["protocol"]["profile"] == "cao2019"
        assert document["provenance"]["features"]["backbone"]["arch"] == "synthetic-gaussian"
        assert "temperature" in document["selection"]["selected"]
        test = document["metrics"]["test"]
        assert test["n"] == 120 and test["many"] is None  # IF10 of 60: no class over 100
        assert len(test["balanced_accuracy_ci"]) == 2
    assert 0.0 <= summary["heads"]["tau_norm"]["selected"]["tau"] <= 2.0


def test_fit_classifier_json(store: Path, tmp_path: Path) -> None:
    result = _run("fit-classifier", store, "--head", "ncm_l2", "--json", *QUICK, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert list(document["heads"]) == ["ncm_l2"]
    assert document["provenance"]["view"]["val"]["regime"] == "carve"  # profile none, no val


def test_predict_reproduces_the_stored_test_metrics(fitted: tuple[Path, Result], store: Path,
                                                    tmp_path: Path) -> None:
    out, _ = fitted
    result = _run("predict", out / "linear", store, "--json", "-o", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    stored = json.loads((out / "linear" / "head.json").read_text())["metrics"]["test"]
    assert document["metrics"]["balanced_accuracy"] == stored["balanced_accuracy"]
    assert document["metrics"]["ece"] == pytest.approx(stored["ece"])
    with (tmp_path / "pred.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 120 and set(rows[0]) == {"row", "source_index", "label", "prediction",
                                                 "prediction_name", "confidence"}


def test_two_class_store_fits_every_head_and_predicts(tmp_path: Path) -> None:
    """Two classes: every head fits, is selected and saved; predict reproduces its metrics."""
    store = write_synthetic_store(tmp_path / "two.h5", n_classes=2, n_max=60,
                                  imbalance_factor=1.0, dim=8, separation=3.0,
                                  n_test_per_class=20)
    out = tmp_path / "heads"
    result = _run("fit-classifier", store, "--head", "all", "--profile", "cao2019",
                  "--imbalance-factor", "10", "--max-epochs", "2", "--bootstrap", "20",
                  "--device", "cpu", "--json", "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert set(summary["heads"]) == set(list_heads())
    for name, row in summary["heads"].items():
        assert row["balanced_accuracy"] > 0.6, name  # chance: 0.5
        predicted = _run("predict", out / name, store, "--json")
        assert predicted.exit_code == 0, predicted.output
        document = json.loads(predicted.output)
        assert len(document["predicted_counts"]) == 2 and document["n"] == 40
        assert document["metrics"]["balanced_accuracy"] == row["balanced_accuracy"], name


def test_predict_refuses_features_of_another_backbone(fitted: tuple[Path, Result],
                                                      tmp_path: Path) -> None:
    out, _ = fitted
    rng = np.random.default_rng(0)
    other = write_store(tmp_path / "other.h5",
                        {"test": (rng.normal(size=(12, 8)).astype(np.float32),
                                  np.repeat(np.arange(6), 2))},
                        [f"class_{c}" for c in range(6)], backbone="another-net")
    result = _run("predict", out / "linear", other)
    assert result.exit_code == 2
    assert "provenance differs at 'backbone.arch'" in result.output
    assert "'synthetic-gaussian' vs 'another-net'" in result.output


def test_predict_needs_features_or_images(fitted: tuple[Path, Result], store: Path) -> None:
    out, _ = fitted
    assert "either FEATURE_FILE or --images" in _run("predict", out / "linear").output
    both = _run("predict", out / "linear", store, "--images", out)
    assert both.exit_code == 2 and "not both" in both.output


def test_unknown_head_lists_the_names(store: Path, tmp_path: Path) -> None:
    result = _run("fit-classifier", store, "--head", "svm", "-o", tmp_path)
    assert result.exit_code == 2
    assert "head 'svm': unknown; choose one of linear, crt, la_loss" in result.output


def _blobs(counts: list[int], dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    return (rng.normal(size=(y.size, dim)) + 3 * y[:, None]).astype(np.float32), y


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        # class 2 has no training row
        ({"train": _blobs([10, 10, 0]), "test": _blobs([5, 5, 5])},
         "class 2 ('c') has no training rows"),
        # one row per class, no val split: nothing can be carved
        ({"train": _blobs([1, 1, 1]), "test": _blobs([5, 5, 5])},
         "no class has enough rows to carve a validation set"),
        ({"train": _blobs([10, 10, 10]), "test": _blobs([0, 0, 0])}, "the test split is empty"),
        ({"train": _blobs([10, 10, 10]), "test": _blobs([5, 5, 5, 5])},
         "test labels outside 0..2"),
        ({"train": _blobs([10, 10, 10]), "val": _blobs([0, 0, 0]), "test": _blobs([5, 5, 5])},
         "validation split: empty"),
    ],
)
def test_bad_feature_files(tmp_path: Path, splits: dict, message: str) -> None:
    path = write_store(tmp_path / "bad.h5", splits, ["a", "b", "c"])
    result = _run("fit-classifier", path, "--head", "linear", *QUICK, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes of generated 20x20 PNGs, 8 per class, in class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["dark", "mid", "light"]):
        folder = tmp_path / "imgs" / name
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 50, (20, 20, 3)) + 90 * c
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "imgs"


def test_predict_images_end_to_end(image_folder: Path, tmp_path: Path) -> None:
    feats = tmp_path / "feats.h5"
    extracted = _run("extract", "--model", "test_efficientnet", "--weights", "random", "--data",
                     f"folder:{image_folder}", "--resolution", "32", "--batch-size", "4",
                     "--threads", "1", "--workers", "0", "--device", "cpu", "-o", feats)
    assert extracted.exit_code == 0, extracted.output
    fit = _run("fit-classifier", feats, "--head", "ncm_cosine", *QUICK, "-o", tmp_path / "h")
    assert fit.exit_code == 0, fit.output
    result = _run("predict", tmp_path / "h" / "ncm_cosine", "--images", image_folder,
                  "--device", "cpu", "--json", "-o", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["n"] == 24 and sum(document["predicted_counts"]) == 24
    assert document["metrics"]["n"] == 24  # labels from the class subfolders
    with (tmp_path / "pred.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 24
    # the same 24 images through the stored features (train + held-out test) predict the same
    counts = np.zeros(3, int)
    for split in ("train", "test"):
        stored = _run("predict", tmp_path / "h" / "ncm_cosine", feats, "--split", split, "--json")
        assert stored.exit_code == 0, stored.output
        counts += json.loads(stored.output)["predicted_counts"]
    assert counts.tolist() == document["predicted_counts"]


def test_demo_step_fits_heads_on_the_extracted_files(store: Path, tmp_path: Path) -> None:
    from featlt.demo import DemoContext
    from featlt.demo.heads_step import QUICK_HEADS, heads_step
    from featlt.runtime import Runtime

    context = DemoContext(out_dir=tmp_path, quick=True, runtime=Runtime(device="cpu"),
                          artifacts={"feature_files": [store]})
    result = heads_step(context)
    table = result["heads"][store.stem]
    assert list(table["test_balanced_accuracy"]) == list(QUICK_HEADS)
    assert table["best_on_validation"] in QUICK_HEADS
    assert Path(context.artifacts["best_heads"][str(store)]).is_dir()
    assert Path(result["summaries"][str(store)]).is_file()


def test_backbone_of_a_file_weights_head_is_found_from_the_run_record(tmp_path):
    from featlt.predict.images import backbone_spec_from_provenance

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    features = {"backbone": {"model": "m.t", "weights": {"source": "file"}, "resolution": 32},
                "run": {"weights_file": {"path": str(weights), "sha256": "s"}}}
    assert backbone_spec_from_provenance(features, None).weights == str(weights)
    weights.unlink()
    with pytest.raises(Exception, match="--weights FILE"):
        backbone_spec_from_provenance(features, None)


def test_pixels_head_rebuilds_its_weightless_backbone():
    from featlt.predict.images import backbone_spec_from_provenance

    spec = backbone_spec_from_provenance(
        {"backbone": {"model": "pixels", "weights": {"source": "none"}, "resolution": 16}}, None)
    assert spec.model == "pixels"
