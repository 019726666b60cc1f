"""The extraction loop: clean features, limits, refusals, float16 overflow, resume after SIGKILL."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from featlt.errors import FeatltError, ProvenanceMismatchError, StoreError
from featlt.extract.pipeline import FAULT_ENV, ExtractConfig, extract_features, subset_rows
from featlt.runtime import Runtime
from featlt.store.feature_store import FeatureStore

MODEL = "test-efficientnet-random"
RUNTIME = Runtime(threads=1)


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    """npz: 4 classes; train 40 (10 per class), test 12; 16x16 RGB uint8."""
    rng = np.random.default_rng(0)

    def images(labels: np.ndarray) -> np.ndarray:
        base = (labels[:, None, None, None] * 60).astype(np.int64)
        return np.clip(base + rng.integers(0, 40, (labels.size, 16, 16, 3)), 0, 255).astype(
            np.uint8)

    y_train, y_test = np.repeat(np.arange(4), 10), np.repeat(np.arange(4), 3)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=images(y_train), y_train=y_train, x_test=images(y_test), y_test=y_test,
             class_names=["a", "b", "c", "d"])
    return path


def _config(arrays: Path, output: Path, **changes: object) -> ExtractConfig:
    base = ExtractConfig(model=MODEL, data=f"npz:{arrays}", output=output, resolution=32,
                         batch_size=8, workers=0)
    return dataclasses.replace(base, **changes)


def test_extract_writes_clean_features(arrays: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    result = extract_features(_config(arrays, out, workers=1), RUNTIME)
    assert [s.name for s in result.splits] == ["train", "test"] and result.dim == 256
    with FeatureStore(out) as store:
        info = store.info("train")
        assert (info.n_rows, info.dim, info.dtype) == (40, 256, "float16")
        assert info.class_names == ["a", "b", "c", "d"] and info.class_counts == [10] * 4
        assert np.array_equal(store.labels("test"), np.repeat(np.arange(4), 3))
        assert np.array_equal(store.source_index("train"), np.arange(40))
        feats = store.read("train")
        prov = store.provenance
    assert feats.shape == (40, 256) and np.isfinite(feats).all() and feats.std() > 0
    assert prov["backbone"]["model"] == "test_efficientnet.r160_in1k"
    assert prov["backbone"]["zoo"] == MODEL
    assert prov["store"]["batch_size"] == 8 and prov["store"]["dtype"] == "float16"
    assert prov["data"]["scheme"] == "npz" and len(prov["data"]["sha256"]) == 64
    assert prov["run"]["threads"] == 1 and prov["run"]["versions"]["timm"]


def test_same_run_twice_gives_identical_bytes_and_logits(arrays: Path, tmp_path: Path) -> None:
    a = extract_features(_config(arrays, tmp_path / "a.h5", store_logits=True,
                                 splits=("test",), dtype="float32"), RUNTIME)
    b = extract_features(_config(arrays, tmp_path / "b.h5", store_logits=True, workers=1,
                                 splits=("test",), dtype="float32"), RUNTIME)
    with FeatureStore(a.output) as fa, FeatureStore(b.output) as fb:
        assert fa.read("test").tobytes() == fb.read("test").tobytes()
        assert fa.read("test", array="logits").shape == (12, 1000)
        assert fa.splits == ("test",)


def test_limit_is_a_seeded_subset_per_split(arrays: Path, tmp_path: Path) -> None:
    extract_features(_config(arrays, tmp_path / "l.h5", limit={"train": 10}), RUNTIME)
    with FeatureStore(tmp_path / "l.h5") as store:
        index = store.source_index("train")
        assert index.size == 10 and np.all(np.diff(index) > 0)
        assert store.info("test").n_rows == 12
        assert store.provenance["data"]["limit"]["per_split"] == {"train": 10, "test": None}
    assert np.array_equal(index, subset_rows(40, 10, 0, "train"))
    assert not np.array_equal(index, subset_rows(40, 10, 1, "train"))
    with pytest.raises(FeatltError, match="--limit 0"):
        subset_rows(40, 0, 0, "train")


def test_existing_output_needs_resume_or_overwrite(arrays: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    extract_features(_config(arrays, out, splits=("test",)), RUNTIME)
    with pytest.raises(StoreError, match=f"output {out}: already exists; pass --resume .* "
                                         "--overwrite"):
        extract_features(_config(arrays, out, splits=("test",)), RUNTIME)
    resumed = extract_features(_config(arrays, out, splits=("test",), mode="resume"), RUNTIME)
    assert resumed.splits[0].resumed_from == 12 and resumed.splits[0].images_per_second is None
    extract_features(_config(arrays, out, splits=("test",), mode="overwrite"), RUNTIME)


def test_unwritable_output_is_refused_before_any_work(arrays: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"is a file, so folder .* cannot be created"):
        extract_features(_config(arrays, blocker / "sub" / "f.h5"), RUNTIME)
    with pytest.raises(StoreError, match="is a folder"):
        extract_features(_config(arrays, tmp_path), RUNTIME)
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(StoreError, match="is not writable"):
            extract_features(_config(arrays, locked / "f.h5"), RUNTIME)


def test_resume_with_other_settings_names_the_attribute(arrays: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    extract_features(_config(arrays, out, splits=("test",)), RUNTIME)
    with pytest.raises(ProvenanceMismatchError, match="provenance differs at 'store.batch_size' "
                                                 r"\(8 vs 4\)"):
        extract_features(_config(arrays, out, splits=("test",), batch_size=4, mode="resume"),
                         RUNTIME)
    with pytest.raises(ProvenanceMismatchError, match=r"'backbone.data_config.input_size'"):
        extract_features(_config(arrays, out, splits=("test",), resolution=40, mode="resume"),
                         RUNTIME)


def test_float16_overflow_is_refused_with_the_fix(arrays: Path, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    state["bn2.bias"] = torch.full_like(state["bn2.bias"], 1e6)  # pooled features ~1e6
    weights = tmp_path / "loud.safetensors"
    save_file(state, str(weights))
    out = tmp_path / "f.h5"
    config = _config(arrays, out, model="test_efficientnet", weights=str(weights),
                     splits=("test",))
    with pytest.raises(StoreError, match=r"beyond float16's range .* --dtype float32 --overwrite"):
        extract_features(config, RUNTIME)
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(out)
    extract_features(dataclasses.replace(config, dtype="float32", mode="overwrite"), RUNTIME)
    with FeatureStore(out) as store:
        assert store.read("test").max() > 65504


def test_corrupt_image_stops_or_is_skipped(tmp_path: Path) -> None:
    from PIL import Image

    for c, name in enumerate(["x", "y"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (9, 9), (100 * c, 20 * i, 0)).save(tmp_path / "imgs" / name /
                                                                 f"{i}.png")
    bad = tmp_path / "imgs" / "y" / "3.png"
    bad.write_bytes(b"no png")
    config = ExtractConfig(model=MODEL, data=f"folder:{tmp_path / 'imgs'}", output=tmp_path /
                           "f.h5", resolution=32, batch_size=4, workers=1)
    with pytest.raises(FeatltError, match=r"3\.png: cannot be decoded"):
        extract_features(config, RUNTIME)
    extract_features(dataclasses.replace(config, skip_bad=True, mode="overwrite"), RUNTIME)
    with FeatureStore(config.output) as store:
        infos = [store.info(split) for split in ("train", "test")]
    assert sum(i.n_skipped for i in infos) == 1 and sum(i.n_rows for i in infos) == 9


def _extract_process(arrays: Path, out: Path, cache: Path, *extra: str,
                     fault: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FEATLT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop(FAULT_ENV, None)
    if fault is not None:
        env[FAULT_ENV] = str(fault)
    command = [sys.executable, "-m", "featlt", "extract", "--model", MODEL, "--data",
               f"npz:{arrays}", "--resolution", "32", "--batch-size", "8", "--threads", "1",
               "-o", str(out), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_resume_after_sigkill_gives_identical_features_and_views(
    arrays: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed.h5"
    killed = _extract_process(arrays, out, tmp_path, "--workers", "0", "--views", "2", fault=3)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the 3rd batch was written
    with pytest.raises(StoreError, match=r"incomplete .* --resume"):
        FeatureStore(out)
    with FeatureStore(out, allow_incomplete=True) as partial:
        assert partial.info("train").n_written == 24 and not partial.complete
    resumed = _extract_process(arrays, out, tmp_path, "--workers", "1", "--views", "2",
                               "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at 24" in resumed.stdout
    reference = tmp_path / "reference.h5"
    extract_features(_config(arrays, reference, views=2), Runtime(threads=1))
    with FeatureStore(out) as a, FeatureStore(reference) as b:
        assert a.provenance["forward"] == b.provenance["forward"]
        for split in ("train", "test"):
            for array in ("features", "views"):
                assert a.read(split, array=array, dtype=np.float16).tobytes() == b.read(
                    split, array=array, dtype=np.float16).tobytes()
            assert a.info(split).n_views == 2
            assert np.array_equal(a.labels(split), b.labels(split))
