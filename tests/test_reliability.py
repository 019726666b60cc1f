"""Issue 10, items 1-7: nothing lost, nothing silently wrong, under bad input, failed runs and a
full disk. Each test reproduces one item as it was reported (small data, the ``pixels`` model)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import mount_tmpfs

from featlt.cli import main
from featlt.extract.pipeline import FAULT_ENV
from featlt.store.feature_store import FeatureStore

RNG = np.random.default_rng(0)


def _run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _npz(path: Path, y_train: np.ndarray, y_test: np.ndarray, **extra: np.ndarray) -> Path:
    """8x8 RGB images whose mean brightness follows the class, so classes are separable."""
    def images(labels: np.ndarray) -> np.ndarray:
        shade = np.unique(labels, return_inverse=True)[1].reshape(-1, 1, 1, 1) * 70
        return (RNG.integers(0, 40, (labels.size, 8, 8, 3)) + shade).astype(np.uint8)

    np.savez(path, x_train=images(y_train), y_train=y_train, x_test=images(y_test),
             y_test=y_test, **extra)
    return path


def _extract(data: str, out: Path, *extra: object) -> Result:
    return _run("extract", "--model", "pixels_8", "--data", data, "-o", out, "--workers", "0",
                "--batch-size", "4", "--threads", "1", *extra)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _debris(folder: Path) -> list[str]:
    """Temporary or unfinished files featlt may have left in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or
                  p.name.endswith(".partial"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes of 6 JPEGs each."""
    from PIL import Image

    for c, name in enumerate("abc"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            pixels = RNG.integers(0, 60, (12, 12, 3)) + 80 * c
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "imgs" / name / f"{i}.jpg")
    return tmp_path / "imgs"


# 1 -------------------------------------------------------------------------------------------
def test_1_output_onto_an_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = _npz(tmp_path / "x.npz", np.arange(12) % 3, np.arange(6) % 3)
    before = _digest(data)
    result = _extract(f"npz:{data}", data, "--overwrite")
    assert result.exit_code == 2
    assert "is also an input of this run" in result.output
    assert _digest(data) == before and _debris(tmp_path) == []
    store = tmp_path / "f.h5"
    assert _extract(f"npz:{data}", store).exit_code == 0
    for args in (["evaluate-separability", store, "-o", store],
                 ["fit-classifier", store, "-o", store]):
        refused = _run(*args)
        assert refused.exit_code == 2 and "is also an input" in refused.output
    with FeatureStore(store) as opened:
        assert opened.complete


# 2 -------------------------------------------------------------------------------------------
def test_2_failed_overwrite_keeps_the_store_and_resume_skip_bad_finishes(
    image_folder: Path, tmp_path: Path
) -> None:
    keep = tmp_path / "keep.h5"
    assert _extract(f"folder:{image_folder}", keep).exit_code == 0
    before = _digest(keep)
    bad = image_folder / "b" / "3.jpg"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated JPEG
    failed = _extract(f"folder:{image_folder}", keep, "--overwrite")
    assert failed.exit_code == 2 and "3.jpg: cannot be decoded" in failed.output
    assert _digest(keep) == before  # the complete store is untouched
    assert (tmp_path / "keep.h5.partial").exists()  # the unfinished run, named as such
    rerun = _extract(f"folder:{image_folder}", keep)
    assert rerun.exit_code == 2 and "--resume" in rerun.output
    resumed = _extract(f"folder:{image_folder}", keep, "--resume", "--skip-bad")
    assert resumed.exit_code == 0, resumed.output
    with FeatureStore(keep) as store:
        assert sum(store.info(s).n_skipped for s in store.splits) == 1
    assert _debris(tmp_path) == []


# 3 -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def head_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from featlt.data.synthetic import write_synthetic_store

    folder = tmp_path_factory.mktemp("heads")
    store = write_synthetic_store(folder / "syn.h5", n_classes=4, n_max=40, dim=8,
                                  n_test_per_class=10)
    fitted = _run("fit-classifier", store, "--head", "ncm_l2", "--bootstrap", "0", "-o",
                  folder / "out")
    assert fitted.exit_code == 0, fitted.output
    return folder / "out" / "ncm_l2", store


def _flip_tail(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(255 - b for b in data[-8:])
    path.write_bytes(bytes(data))


def _rewrite_tensors(path: Path, change: str) -> None:
    """Valid safetensors with a NaN weight or wrong shapes, its hash re-recorded in head.json
    and head.json re-sealed (so only the content checks can catch it)."""
    from safetensors.numpy import load_file, save_file

    from featlt.file_hash import file_sha256
    from featlt.heads.io import SEAL_KEY, seal

    tensors = load_file(str(path))
    for name, value in tensors.items():
        if value.dtype.kind == "f" and value.ndim == 2:
            if change == "nan":
                value = value.copy()
                value[0, 0] = np.nan
            else:
                value = np.zeros((value.shape[0], value.shape[1] + 3), value.dtype)
            tensors[name] = value
    save_file(tensors, str(path))
    config = path.parent / "head.json"
    document = json.loads(config.read_text())
    document["tensors_sha256"] = file_sha256(path)
    config.write_text(json.dumps(seal(document, SEAL_KEY)))


@pytest.mark.parametrize(("damage", "message"), [
    (_flip_tail, "sha256 differs from the one recorded in head.json"),
    (lambda p: p.write_bytes(p.read_bytes()[:40]), "sha256 differs"),
    (lambda p: p.write_bytes(b""), "empty (0 bytes"),
    (lambda p: _rewrite_tensors(p, "shape"), "tensors do not fit together"),
    (lambda p: _rewrite_tensors(p, "nan"), "holds NaN or inf values"),
])
def test_3_damaged_head_is_refused_before_anything_is_written(
    head_dir: tuple[Path, Path], tmp_path: Path, damage: object, message: str
) -> None:
    good, store = head_dir
    head = tmp_path / "head"
    shutil.copytree(good, head)
    damage(head / "head.safetensors")  # type: ignore[operator]
    csv = tmp_path / "predictions.csv"
    result = _run("predict", head, store, "-o", csv)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not csv.exists()
    assert _run("predict", good, store, "-o", csv).exit_code == 0 and csv.exists()


# 4 -------------------------------------------------------------------------------------------
def test_4_label_gaps_and_string_labels_become_classes_without_empty_ones(
    tmp_path: Path
) -> None:
    gaps = _npz(tmp_path / "gaps.npz", np.repeat([0, 2, 5], [12, 6, 3]), np.repeat([0, 2, 5], 4))
    store = tmp_path / "gaps.h5"
    assert _extract(f"npz:{gaps}", store).exit_code == 0
    with FeatureStore(store) as opened:
        info = opened.info("train")
        assert info.class_names == ["0", "2", "5"] and info.class_counts == [12, 6, 3]
    report = _run("evaluate-separability", store, "--json", "--knn-k", "2")
    assert report.exit_code == 0, report.output
    record = json.loads(report.output)["reports"][0]
    assert record["scores"]["knn_tail_recall"] is not None
    assert record["data"]["n_classes"] == 3
    words = _npz(tmp_path / "words.npz", np.array(["cat", "dog"] * 6), np.array(["dog", "cat"]))
    assert _extract(f"npz:{words}", tmp_path / "words.h5").exit_code == 0
    with FeatureStore(tmp_path / "words.h5") as opened:
        assert opened.class_names("train") == ["cat", "dog"]


def test_4_purity_and_nmi_do_not_move_with_the_seed() -> None:
    from featlt.cluster.faiss_ops import resolve_faiss
    from featlt.separability.scores.clustering import global_clustering

    rng = np.random.default_rng(1)  # three small classes; one k-means run flips with the seed
    y = np.repeat([0, 1, 2], [12, 6, 3])
    X = rng.normal(size=(y.size, 4)) + 3.0 * np.eye(3, 4)[y]
    context = resolve_faiss("cpu", 1)
    scores = [global_clustering(X, y, context, seed=seed) for seed in range(8)]
    assert len({(s.purity, round(s.nmi, 9)) for s in scores}) == 1
    assert all(s.n_init > 1 and s.purity_range[0] <= s.purity <= s.purity_range[1]
               for s in scores)


# 5 -------------------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs; skipped where this process cannot mount one."""
    yield from mount_tmpfs(tmp_path / "tiny", "size=256k")


def test_5_full_disk_during_extraction_is_a_message_not_a_segfault(
    tmp_path: Path, full_disk: Path
) -> None:
    data = _npz(tmp_path / "big.npz", np.arange(200) % 4, np.arange(20) % 4)
    command = [sys.executable, "-m", "featlt", "extract", "--model", "pixels_32", "--data",
               f"npz:{data}", "--dtype", "float32", "--workers", "0", "--threads", "1",
               "-o", str(full_disk / "f.h5")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in full_disk.iterdir()) == []


def _no_space(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_5_full_disk_in_fit_classifier_and_plots_changes_no_output(
    head_dir: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.figure
    import safetensors.numpy

    _, store = head_dir
    heads = tmp_path / "heads"
    assert _run("fit-classifier", store, "--head", "ncm_l2", "--bootstrap", "0", "-o",
                heads).exit_code == 0
    previous = {p: _digest(p) for p in heads.rglob("*") if p.is_file()}
    real_save, calls = safetensors.numpy.save_file, []

    def second_fails(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            _no_space()
        real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.numpy, "save_file", second_fails)
    failed = _run("fit-classifier", store, "--head", "ncm_l2", "--head", "ncm_cosine",
                  "--bootstrap", "0", "-o", heads)
    assert failed.exit_code == 2 and "No space left on device" in failed.output
    assert "ncm_cosine/head.safetensors" in failed.output
    assert {p: _digest(p) for p in heads.rglob("*") if p.is_file()} == previous
    assert _debris(tmp_path) == []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _no_space)
    plots = _run("evaluate-separability", store, "--plots", tmp_path / "new" / "plots", "-o",
                 tmp_path / "new" / "report.json", "--knn-queries", "50", "--pca-dim", "4")
    assert plots.exit_code == 2 and "No space left on device" in plots.output
    assert "_per_class.png" in plots.output
    assert not (tmp_path / "new").exists()  # no report, no plot, no empty folder


def test_5_permission_denied_on_a_report_keeps_the_previous_one(
    head_dir: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featlt.runtime

    _, store = head_dir
    report = tmp_path / "report.json"
    report.write_text("previous")

    def denied(*_: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(featlt.runtime.os, "replace", denied)
    result = _run("evaluate-separability", store, "-o", report, "--knn-queries", "50",
                  "--pca-dim", "4")
    assert result.exit_code == 2 and f"{report}: cannot be written (Permission denied)" in \
        result.output
    assert report.read_text() == "previous" and _debris(tmp_path) == []


# 6 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--imbalance-factor", "nan"], "'nan' is not a finite number"),
    (["--bootstrap", "-1"], "-1 is not in the range x>=0"),
    (["--val-per-class", "-2"], "-2 is not in the range x>=1"),
    (["--val-per-class", "0"], "0 is not in the range x>=1"),
    (["--n-max", "-3"], "-3 is not in the range x>=1"),
])
def test_6_bad_view_options_are_refused_by_click(
    head_dir: tuple[Path, Path], args: list[str], message: str
) -> None:
    _, store = head_dir
    result = _run("fit-classifier", store, *args)
    assert result.exit_code == 2 and message in result.output


def test_6_bad_datasets_get_a_message_naming_the_input_and_fix(tmp_path: Path) -> None:
    objects = _npz(tmp_path / "obj.npz", np.arange(6) % 2, np.arange(4) % 2)
    with np.load(objects) as archive:
        arrays = dict(archive)
    arrays["y_train"] = np.array([0, 1, "a", None, 0, 1], dtype=object)
    np.savez(objects, **arrays)
    result = _extract(f"npz:{objects}", tmp_path / "o.h5")
    assert result.exit_code == 2
    assert "y_train is an object (pickled) array" in result.output and "dtype=str" in result.output
    one = _npz(tmp_path / "one.npz", np.zeros(8, int), np.zeros(4, int))
    assert _extract(f"npz:{one}", tmp_path / "one.h5").exit_code == 0
    fit = _run("fit-classifier", tmp_path / "one.h5", "--head", "ncm_l2", "-o", tmp_path / "h")
    assert fit.exit_code == 2 and f"feature file {tmp_path / 'one.h5'}" in fit.output
    assert "at least 2" in fit.output and not (tmp_path / "h").exists()


def test_6_non_utf8_file_name_in_a_folder_dataset(image_folder: Path, tmp_path: Path) -> None:
    os.rename(image_folder / "a" / "0.jpg", os.fsencode(image_folder / "a") + b"/\xff\xfe.jpg")
    result = _extract(f"folder:{image_folder}", tmp_path / "f.h5")
    assert result.exit_code == 0, result.output
    with FeatureStore(tmp_path / "f.h5") as store:
        assert sum(store.info(s).n_rows for s in store.splits) == 18


# 7 -------------------------------------------------------------------------------------------
def test_7_nan_feature_is_named_by_stored_row_before_any_head_is_fitted(
    head_dir: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featlt.heads.selection

    _, good = head_dir
    store = tmp_path / "nan.h5"
    shutil.copy(good, store)
    with h5py.File(store, "r+") as handle:
        handle["test/features"][7, 0] = np.nan

    def never(*_: object, **__: object) -> None:
        raise AssertionError("a head was fitted before the test rows were checked")

    monkeypatch.setattr(featlt.heads.selection, "select_heads", never)
    result = _run("fit-classifier", store, "--head", "ncm_l2", "-o", tmp_path / "h")
    assert result.exit_code == 2
    assert "split 'test' stored row 7 (source position 7) holds NaN/inf features" in result.output


def test_7_folder_symlink_out_of_the_root_is_refused(image_folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    shutil.copy(image_folder / "a" / "0.jpg", outside)
    (image_folder / "b" / "link.jpg").symlink_to(outside)
    refused = _extract(f"folder:{image_folder}", tmp_path / "f.h5")
    assert refused.exit_code == 2 and "outside the dataset root" in refused.output
    skipped = _extract(f"folder:{image_folder}", tmp_path / "f.h5", "--skip-bad", "--overwrite")
    assert skipped.exit_code == 0, skipped.output


def test_7_killed_extraction_leaves_no_worker_holding_the_file(tmp_path: Path) -> None:
    data = _npz(tmp_path / "d.npz", np.arange(400) % 4, np.arange(20) % 4)
    out = tmp_path / "k.h5"
    command = [sys.executable, "-m", "featlt", "extract", "--model", "pixels_8", "--data",
               f"npz:{data}", "--workers", "2", "--batch-size", "8", "--threads", "1",
               "-o", str(out)]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, FAULT_ENV: "2", "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -9, killed.stderr
    with FeatureStore(out, allow_incomplete=True) as store:  # at once: no orphan holds the lock
        assert not store.complete and store.info("train").n_written == 16
    assert not out.exists() and (tmp_path / "k.h5.partial").exists()
    resumed = _run("extract", "--model", "pixels_8", "--data", f"npz:{data}", "--workers", "2",
                   "--batch-size", "8", "--threads", "1", "-o", out, "--skip-existing")
    assert resumed.exit_code == 0 and "resumed at 16" in resumed.output, resumed.output
    assert _debris(tmp_path) == []


def test_7_a_store_held_open_by_a_writer_is_called_locked(tmp_path: Path) -> None:
    from featlt.data.synthetic import write_synthetic_store

    store = write_synthetic_store(tmp_path / "s.h5", n_classes=2, n_max=10, dim=4,
                                  n_test_per_class=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r+'); "
         "print('open', flush=True); time.sleep(60)", str(store)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        result = _run("info", store)
        assert result.exit_code == 2 and "locked by another process" in result.output
    finally:
        holder.kill()
        holder.wait()


def test_7_weights_files_empty_or_unsafe(tmp_path: Path) -> None:
    import pickle

    from featlt.errors import FeatltError
    from featlt.extractors.backbones import load_state_file

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(FeatltError, match=r"empty \(0 bytes"):
        load_state_file(empty, "resnet18")
    unsafe = tmp_path / "unsafe.pth"
    unsafe.write_bytes(pickle.dumps({"w": shutil.rmtree}, protocol=2))
    with pytest.raises(FeatltError, match="refused without running it") as err:
        load_state_file(unsafe, "resnet18")
    assert "weights_only" not in str(err.value)
