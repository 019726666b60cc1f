"""Issue 16, part 5: a saved head is sealed, large arrays live in safetensors, writes fail clearly.

head.json records ``head_sha256``, the sha256 of its own canonical JSON together with the
tensors' hash, so an edit to anything that shapes a prediction (preprocessing, temperature,
classes, wrapper settings) is refused, not silently applied; heads of the previous format and
heads whose seal was removed are refused with the right reason; ``rank --full`` re-fits instead
of reusing an edited ``summary.json`` or ``test_predictions.csv``.
"""

from __future__ import annotations

import csv
import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from featlt.cli import main
from featlt.data.synthetic import gaussian_classes, write_synthetic_store
from featlt.errors import FeatltError
from featlt.heads import LinearHead, PostHocLA, load_head, save_head
from featlt.heads.io import CONFIG_FILE, INLINE_MAX, TENSORS_FILE


def _run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    train = gaussian_classes(np.array([60, 30, 12]), 6, 3.0, seed=0)
    val = gaussian_classes(np.array([8, 8, 8]), 6, centres=train.centres, seed=1)
    return train, val


@pytest.fixture(scope="module")
def saved(data: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PostHocLA over a standardising linear head, saved with a document."""
    train, val = data
    base = LinearHead(max_epochs=3, device="cpu", random_state=0)
    head = PostHocLA(base, tau=1.0).fit(train.X, train.y, X_val=val.X, y_val=val.y)
    head.set_params(temperature=0.8)
    folder = tmp_path_factory.mktemp("sealed") / "head"
    save_head(head, folder, {"class_names": ["a", "b", "c"], "note": "kept"})
    return folder


def _edit(folder: Path, change: Any) -> None:
    path = folder / CONFIG_FILE
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


EDITS = {
    "preprocess": lambda d: d["head"]["base"]["params"].update(preprocess="l2"),
    "temperature": lambda d: d["head"]["params"].update(temperature=5.0),
    "tau": lambda d: d["head"]["params"].update(tau=0.0),
    "classes": lambda d: d["head"].update(classes=[2, 1, 0]),
    "class names": lambda d: d.update(class_names=["c", "b", "a"]),
    "tensors hash re-recorded": lambda d: d.update(tensors_sha256="0" * 64),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_head_json_is_refused(saved: Path, tmp_path: Path, edit: str) -> None:
    head = _copy(saved, tmp_path)
    _edit(head, EDITS[edit])
    with pytest.raises(FeatltError, match=r"head\.json.*(edited|changed).*re-fit"):
        load_head(head)


def test_an_unchanged_head_loads_and_predicts_identically(saved: Path, data: Any) -> None:
    train, _ = data
    head, document = load_head(saved)
    assert document["note"] == "kept" and document["format_version"] == 3
    assert head.predict_proba(train.X).shape == (train.X.shape[0], 3)


def test_a_head_of_the_previous_format_is_refused_naming_the_fix(saved: Path,
                                                                 tmp_path: Path) -> None:
    head = _copy(saved, tmp_path)
    _edit(head, lambda d: (d.update(format_version=2), d.pop("head_sha256", None)))
    with pytest.raises(FeatltError) as err:
        load_head(head)
    message = str(err.value)
    assert "format version 2" in message and "re-fit" in message
    assert "fit-classifier" in message


@pytest.mark.parametrize("key", ["head_sha256", "tensors_sha256"])
def test_a_removed_hash_is_said_missing_not_a_version_mismatch(saved: Path, tmp_path: Path,
                                                               key: str) -> None:
    head = _copy(saved, tmp_path)
    _edit(head, lambda d: d.pop(key, None))
    with pytest.raises(FeatltError) as err:
        load_head(head)
    message = str(err.value)
    assert f"no {key}" in message and "edited or not written by featlt" in message
    assert "version" not in message


def test_editing_preprocess_through_the_cli_is_refused(tmp_path: Path) -> None:
    """The report: standardize -> l2 in head.json took accuracy from 0.90 to 0.25, exit 0."""
    store = write_synthetic_store(tmp_path / "syn.h5", n_classes=4, n_max=40, dim=8,
                                  n_test_per_class=10)
    fitted = _run("fit-classifier", store, "--head", "linear", "--max-epochs", "3",
                  "--bootstrap", "0", "--device", "cpu", "-o", tmp_path / "heads")
    assert fitted.exit_code == 0, fitted.output
    head = tmp_path / "heads" / "linear"
    _edit(head, lambda d: d["head"]["params"].update(preprocess="l2"))
    result = _run("predict", head, store, "-o", tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert "edited" in result.output and "re-fit" in result.output
    assert not (tmp_path / "p.csv").exists()


def _numeric_lists(obj: Any) -> list[int]:
    """The length of every list of numbers in a JSON document."""
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numeric_lists(v)]
    if isinstance(obj, list):
        if obj and all(isinstance(v, (int, float)) or v is None for v in obj):
            return [len(obj)]
        return [n for v in obj for n in _numeric_lists(v)]
    return []


def test_per_class_arrays_of_a_many_class_head_live_in_safetensors(tmp_path: Path) -> None:
    from featlt.data.protocol import Protocol
    from featlt.heads.workflow import fit_classifiers

    n_classes = 150
    store = write_synthetic_store(tmp_path / "many.h5", n_classes=n_classes, n_max=6,
                                  imbalance_factor=2, dim=8, n_test_per_class=2,
                                  n_val_per_class=2)
    fit_classifiers(store, ["ncm_l2"], tmp_path / "heads", Protocol(seed=0), device="cpu",
                    n_bootstrap=0)
    folder = tmp_path / "heads" / "ncm_l2"
    text = (folder / CONFIG_FILE).read_text()
    stored = json.loads(text)
    # Before: the 150 x 150 confusion matrix alone was ~150 kB of JSON (1.3 GB at 10,000 classes).
    assert len(text) < 30_000, len(text)
    assert max(_numeric_lists(stored), default=0) <= INLINE_MAX
    assert stored["class_names"][:2] == ["class_0", "class_1"]  # names stay in JSON
    _, document = load_head(folder)
    test = document["metrics"]["test"]
    confusion = test["confusion_matrix"]
    dense = confusion.toarray() if hasattr(confusion, "toarray") else np.asarray(confusion)
    assert dense.shape == (n_classes, n_classes) and dense.sum() == 2 * n_classes
    recall = np.asarray(test["per_class_accuracy"], dtype=float)
    np.testing.assert_allclose(recall, np.diag(dense) / dense.sum(axis=1))
    counts = np.asarray(document["provenance"]["view"]["train_class_counts"])
    assert counts.shape == (n_classes,) and counts.dtype.kind == "i"


def test_document_arrays_round_trip_exactly(data: Any, tmp_path: Path) -> None:
    train, val = data
    head = LinearHead(max_epochs=2, device="cpu").fit(train.X, train.y, X_val=val.X,
                                                      y_val=val.y)
    floats = np.linspace(-1, 1, 50)
    with_nulls = [None if i % 7 == 0 else float(i) / 3 for i in range(40)]
    matrix = np.eye(40, dtype=np.int64) * 3
    matrix[0, 5] = 1
    save_head(head, tmp_path / "h", {"floats": floats.tolist(), "nulls": with_nulls,
                                     "matrix": matrix.tolist(), "small": [1, 2, 3],
                                     "names": [f"n{i}" for i in range(50)]})
    _, document = load_head(tmp_path / "h")
    np.testing.assert_array_equal(np.asarray(document["floats"]), floats)
    nulls = np.asarray(document["nulls"], dtype=float)
    np.testing.assert_array_equal(np.isnan(nulls), [v is None for v in with_nulls])
    np.testing.assert_array_equal(nulls[~np.isnan(nulls)],
                                  [v for v in with_nulls if v is not None])
    got = document["matrix"]
    np.testing.assert_array_equal(got.toarray() if hasattr(got, "toarray") else got, matrix)
    assert document["small"] == [1, 2, 3] and document["names"][49] == "n49"


def _disk_full(*_args: Any, **_kwargs: Any) -> None:
    from safetensors import SafetensorError

    raise SafetensorError(
        "Error while serializing: I/O error: No space left on device (os error 28)")


def test_disk_full_while_fit_classifier_writes_a_head_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.numpy

    store = write_synthetic_store(tmp_path / "syn.h5", n_classes=3, n_max=30, dim=6,
                                  n_test_per_class=6)
    monkeypatch.setattr(safetensors.numpy, "save_file", _disk_full)
    out = tmp_path / "heads"
    result = _run("fit-classifier", store, "--head", "ncm_l2", "--bootstrap", "0", "-o", out)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "No space left on device" in text and "free disk space" in text
    assert f"{out / 'ncm_l2' / TENSORS_FILE}: cannot be written" in text
    assert not out.exists()  # nothing half-written is left


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_real_failed_safetensors_write_is_a_clear_error(data: Any, tmp_path: Path) -> None:
    """The file-size limit makes the kernel refuse the write as a full disk would (EFBIG)."""
    train, val = data
    head = LinearHead(max_epochs=2, device="cpu").fit(train.X, train.y, X_val=val.X,
                                                      y_val=val.y)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(FeatltError) as err:
            save_head(head, tmp_path / "h")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert "head.safetensors: cannot be written (File too large)" in str(err.value)
    assert not (tmp_path / "h").exists()


# rank --full reuses summary.json and test_predictions.csv only while they are unchanged ------
@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    folder = tmp_path_factory.mktemp("rank-reuse")
    stores = [write_synthetic_store(folder / f"b{s}.h5", n_classes=3, n_max=30, dim=6,
                                    separation=s, n_test_per_class=8, n_val_per_class=4)
              for s in (2, 4)]
    heads = folder / "heads"
    first = _rank(stores, heads)
    assert first.exit_code == 0 and "(reused)" not in first.output, first.output
    return stores, heads


def _rank(stores: list[Path], heads: Path) -> Result:
    # --cv-folds 0: the summaries' reuse is what is tested (tests/test_rank_cv.py covers the
    # cross-validation record's); the rarest class has 1 training row
    return _run("rank", *stores, "--full", "--head", "ncm_l2", "--heads-dir", heads,
                "--device", "cpu", "--bootstrap", "20", "--cv-folds", "0")


def _summary(heads: Path, stem: str) -> Path:
    return next(heads.glob(f"{stem}-*/summary.json"))


def _edit_summary(path: Path) -> None:
    document = json.loads(path.read_text())
    document["heads"]["ncm_l2"]["balanced_accuracy"] = 0.99
    path.write_text(json.dumps(document, indent=2))


def _edit_predictions(path: Path) -> None:
    prediction_file = Path(json.loads(path.read_text())["heads"]["ncm_l2"]["test_predictions"])
    with prediction_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["prediction"] = str((int(rows[0]["label"]) + 1) % 3)
    with prediction_file.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(("damage", "reason"), [
    (_edit_summary, "summary.json was changed after it was written"),
    (_edit_predictions, "test_predictions.csv was changed after it was written"),
])
def test_rank_full_refits_instead_of_reusing_edited_results(ranked: tuple[list[Path], Path],
                                                            damage: Any, reason: str) -> None:
    stores, heads = ranked
    again = _rank(stores, heads)
    assert again.exit_code == 0 and again.output.count("(reused)") == 2, again.output
    damage(_summary(heads, "b2"))
    result = _rank(stores, heads)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert reason in text and "re-fitting" in text, result.output
    assert result.output.count("(reused)") == 1  # b4 is still reused
    summary = json.loads(_summary(heads, "b2").read_text())
    assert summary["heads"]["ncm_l2"]["balanced_accuracy"] != 0.99
