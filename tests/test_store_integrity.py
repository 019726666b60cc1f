"""Issue 16, part 4: block digests of every array of a store, written before the row counter
advances, checked by every read for the blocks it reads and by ``featlt info --verify``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.errors import StoreError
from featlt.store import digests as block_digests
from featlt.store.feature_store import FeatureStore
from featlt.store.files import SCHEMA_VERSION
from featlt.store.writer import StoreWriter

PROV = {"backbone": {"arch": "toy", "weights_sha256": "abc"}, "run": {"host": "a"}}
NAMES = ["a", "b", "c"]
SMALL_CHUNKS = 256  # bytes per chunk: many digest blocks in a small store


def _cli(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _arrays(n: int, dim: int, views: int = 0, logits: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n * 31 + dim)
    out = {"features": rng.normal(size=(n, dim)).astype(np.float32),
           "labels": np.arange(n) % 3, "index": np.arange(n) * 2 + 1}
    if views:
        out["views"] = rng.normal(size=(n, views, dim)).astype(np.float32)
    if logits:
        out["logits"] = rng.normal(size=(n, logits)).astype(np.float32)
    return out


def write_store(path: Path, n: int = 40, dim: int = 4, batch: int = 7, views: int = 0,
                logits: int = 0, dtype: str = "float16", source_labels: bool = False,
                chunk_bytes: int = SMALL_CHUNKS, complete: bool = True) -> dict[str, np.ndarray]:
    """A store whose batches end mid-block; returns its arrays as written."""
    arrays = _arrays(n, dim, views, logits)
    with StoreWriter(path, PROV, chunk_bytes=chunk_bytes) as writer:
        writer.begin_split(
            "train", arrays["labels"], arrays["index"], NAMES, dim, dtype=dtype, n_views=views,
            n_logits=logits, skipped=np.array([0, 4]),
            source_labels=np.arange(3 * n) % 3 if source_labels else None)
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            writer.write_rows("train", start, arrays["features"][start:stop],
                              views=arrays["views"][start:stop] if views else None,
                              logits=arrays["logits"][start:stop] if logits else None)
        if complete:
            writer.mark_complete()
    return arrays


def overwrite_bytes_on_disk(path: Path, dataset: str, row: int) -> None:
    """Change one stored float16/float32 value of ``row`` to another finite value, in the file's
    bytes (as bit rot or a hex editor would), not through HDF5."""
    with h5py.File(path, "r") as raw:
        dset = raw[dataset]
        chunk_rows = dset.chunks[0]
        first = row // chunk_rows * chunk_rows
        chunk = dset.id.get_chunk_info_by_coord((first,) + (0,) * (dset.ndim - 1))
        row_bytes = dset.dtype.itemsize * int(np.prod(dset.shape[1:]))
        offset = chunk.byte_offset + (row - first) * row_bytes
        dtype = dset.dtype
    data = bytearray(path.read_bytes())
    old = np.frombuffer(bytes(data[offset:offset + dtype.itemsize]), dtype)[0]
    new = np.asarray(old + 1.5 if abs(old) < 100 else 0.5, dtype)
    assert np.isfinite(new) and new != old
    data[offset:offset + dtype.itemsize] = new.tobytes()
    path.write_bytes(bytes(data))


# Digests as written -----------------------------------------------------------------------
def test_every_array_gets_digests_that_match_its_blocks(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    arrays = write_store(path, views=2, logits=5, source_labels=True)
    with h5py.File(path, "r") as raw:
        assert raw.attrs["schema_version"] == SCHEMA_VERSION == 2
        tables = raw["train/digests"]
        names = set(tables)
        assert sorted(tables) == sorted(["features", "views", "logits", "labels", "index",
                                         "skipped", "source_labels"])
        features = raw["train/features"]
        size = int(tables["features"].attrs["block_rows"])
        assert size == features.chunks[0] == SMALL_CHUNKS // (4 * 2)  # float16 rows of dim 4
        assert tables["features"].shape == (block_digests.n_blocks(40, size), 16)
        for k in range(tables["features"].shape[0]):  # recomputed from the bytes as stored
            block = features[k * size:(k + 1) * size]
            assert np.array_equal(block_digests.block_digest("train", "features", k * size, block),
                                  tables["features"][k])
    with FeatureStore(path) as store:
        checks = store.verify_all()
        assert {c.array for c in checks} == names and all(c.unchecked_rows == 0
                                                                 for c in checks)
        assert np.array_equal(store.read("train"), arrays["features"].astype(np.float16))
        assert np.array_equal(store.labels("train"), arrays["labels"])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), block_rows=st.integers(1, 9),
       batches=st.lists(st.integers(1, 13), min_size=1, max_size=20))
def test_digests_of_batches_equal_digests_of_whole_blocks(
    n: int, block_rows: int, batches: list[int]
) -> None:
    """Whatever the batch sizes (mid-block ends included), the running digests equal the
    digests of the whole blocks, and every block's last digest covers all its rows."""
    values = np.arange(n * 3, dtype=np.float16).reshape(n, 3)
    hasher = block_digests.BlockHasher("s", "features", block_rows, values.dtype, (3,))
    table = np.zeros((block_digests.n_blocks(n, block_rows), 16), np.uint8)
    start, sizes = 0, iter(batches * (n + 1))
    while start < n:
        stop = min(n, start + next(sizes))
        first, digests = hasher.add(start, values[start:stop])
        table[first:first + len(digests)] = digests
        start = stop
    assert np.array_equal(table, block_digests.whole_digests("s", "features", values,
                                                             block_rows))


def test_digests_name_the_split_array_and_position() -> None:
    block = np.ones((4, 2), np.float32)
    base = block_digests.block_digest("train", "features", 0, block)
    assert not np.array_equal(base, block_digests.block_digest("test", "features", 0, block))
    assert not np.array_equal(base, block_digests.block_digest("train", "views", 0, block))
    assert not np.array_equal(base, block_digests.block_digest("train", "features", 4, block))
    assert not np.array_equal(base, block_digests.block_digest("train", "features", 0,
                                                               block.astype(np.float16)))


# Serious case: finite bytes overwritten ----------------------------------------------------
@pytest.fixture(scope="module")
def damaged_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two synthetic stores; in the second, one finite train feature byte-edited on disk."""
    folder = tmp_path_factory.mktemp("damaged")
    good = write_synthetic_store(folder / "good.h5", n_classes=4, n_max=40, dim=8,
                                 n_test_per_class=10, separation=2.0)
    bad = write_synthetic_store(folder / "bad.h5", n_classes=4, n_max=40, dim=8,
                                n_test_per_class=10, separation=4.0)
    overwrite_bytes_on_disk(bad, "train/features", 5)
    return good, bad


def test_overwritten_finite_bytes_are_refused_by_info_verify_and_by_reads(
    damaged_pair: tuple[Path, Path],
) -> None:
    _, bad = damaged_pair
    described = _cli("info", bad)  # info alone reads no rows: it opens, and names the check
    assert described.exit_code == 0 and "--verify" in described.output
    verified = _cli("info", "--verify", bad)
    assert verified.exit_code == 2, verified.output
    assert f"feature file {bad}: split 'train' features rows 0-" in verified.output
    assert "do not match their digest" in verified.output and "--overwrite" in verified.output
    with FeatureStore(bad) as store, pytest.raises(StoreError, match="do not match"):
        store.read("train")
    with FeatureStore(bad, verify=False) as store:  # --no-verify: read unchecked
        assert store.read("train").shape[0] > 5


@pytest.mark.parametrize("command", [
    ["evaluate-separability", "{bad}", "--knn-queries", "50", "--pca-dim", "4", "--threads", "1"],
    ["fit-classifier", "{bad}", "--head", "ncm_l2", "--bootstrap", "0", "-o", "{out}"],
    ["rank", "{good}", "{bad}", "--device", "cpu", "--bootstrap", "20"],
])
def test_every_reading_command_refuses_the_damaged_block(
    damaged_pair: tuple[Path, Path], tmp_path: Path, command: list[str]
) -> None:
    good, bad = damaged_pair
    args = [a.format(good=good, bad=bad, out=tmp_path / "heads") for a in command]
    refused = _cli(*args)
    assert refused.exit_code == 2, refused.output
    assert "split 'train' features rows 0-" in refused.output
    assert "do not match their digest" in refused.output
    unchecked = _cli(*args, "--no-verify")
    assert unchecked.exit_code == 0, unchecked.output


def test_a_reader_checks_only_the_blocks_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    arrays = write_store(path, n=200)
    with h5py.File(path, "r") as raw:
        size = int(raw["train/digests/features"].attrs["block_rows"])
    damaged_row = 3 * size + 1
    overwrite_bytes_on_disk(path, "train/features", damaged_row)
    elsewhere = np.array([0, 1, size, 2 * size + 3, 4 * size])
    with FeatureStore(path) as store:
        read = store.read("train", elsewhere, budget_mb=1e-6)  # block by block
        assert np.array_equal(read, arrays["features"].astype(np.float16)[elsewhere])
        with pytest.raises(StoreError, match=rf"rows {3 * size}-{4 * size - 1} do not match"):
            store.read("train", np.array([damaged_row]))


@pytest.mark.parametrize("array", ["labels", "index", "views", "logits", "source_labels",
                                   "skipped"])
def test_an_edit_of_any_array_is_caught(tmp_path: Path, array: str) -> None:
    path = tmp_path / "f.h5"
    write_store(path, views=2, logits=3, source_labels=True)
    with h5py.File(path, "r+") as raw:  # a careless edit through h5py
        raw[f"train/{array}"][1] = raw[f"train/{array}"][1] + 1
    with FeatureStore(path) as store:
        read = {"labels": lambda: store.labels("train"),
                "index": lambda: store.source_index("train"),
                "views": lambda: store.read("train", array="views"),
                "logits": lambda: store.read("train", array="logits"),
                "source_labels": lambda: store.source_labels("train"),
                "skipped": lambda: store.verify_all()}[array]
        with pytest.raises(StoreError, match=rf"split 'train' {array} rows 0-\d+ do not match"):
            read()


def test_swapped_blocks_and_deleted_digests_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    write_store(path, n=64)  # two full blocks of 32 rows
    with h5py.File(path, "r+") as raw:
        size = int(raw["train/digests/features"].attrs["block_rows"])
        features = raw["train/features"]
        first, second = features[:size], features[size:2 * size]
        features[:size], features[size:2 * size] = second, first
    with FeatureStore(path) as store, pytest.raises(StoreError, match="do not match"):
        store.read("train")
    with h5py.File(path, "r+") as raw:
        del raw["train/digests"]
    with pytest.raises(StoreError, match="no block digests, though the file is schema 2"):
        FeatureStore(path)


# Resume after kill -9 keeps the digests valid -----------------------------------------------
KILLER = """
import os, signal, sys
import h5py
import numpy as np
sys.path.insert(0, sys.argv[3])
from test_store_integrity import PROV, NAMES, _arrays
from featlt.store.writer import StoreWriter

path, when = sys.argv[1], sys.argv[2]
arrays = _arrays(50, 4, views=2)
if when == "before_counter":  # digests written and flushed, n_written not yet advanced
    real = h5py.AttributeManager.__setitem__
    calls = []
    def setitem(self, name, value):
        if name == "n_written" and int(value) > 0:
            calls.append(value)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        real(self, name, value)
    h5py.AttributeManager.__setitem__ = setitem
writer = StoreWriter(path, PROV, chunk_bytes=96)
writer.begin_split("train", arrays["labels"], arrays["index"], NAMES, 4, dtype="float16",
                   n_views=2)
for start in range(0, 50, 7):
    writer.write_rows("train", start, arrays["features"][start:start + 7],
                      views=arrays["views"][start:start + 7])
    if when == "between_batches" and start == 14:
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["between_batches", "before_counter"])
def test_kill_9_mid_block_then_resume_keeps_digests_valid(tmp_path: Path, when: str) -> None:
    path = tmp_path / "k.h5"
    killed = subprocess.run([sys.executable, "-c", KILLER, str(path), when,
                             str(Path(__file__).parent)], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stderr
    arrays = _arrays(50, 4, views=2)
    with FeatureStore(path, allow_incomplete=True) as store:
        written = store.info("train").n_written
        assert written == 21 and not store.complete
        checks = {c.array: c for c in store.verify_all()}  # the rows below n_written verify
        size = 96 // 8  # float16 rows of dim 4
        assert checks["features"].rows == written // size * size
        assert checks["features"].unchecked_rows == written % size
    with StoreWriter(path, PROV, mode="resume", chunk_bytes=96) as writer:
        start = writer.begin_split("train", arrays["labels"], arrays["index"], NAMES, 4,
                                   dtype="float16", n_views=2)
        assert start == 21
        for first in range(start, 50, 7):
            writer.write_rows("train", first, arrays["features"][first:first + 7],
                              views=arrays["views"][first:first + 7])
        writer.mark_complete()
    with FeatureStore(path) as store:
        assert all(c.unchecked_rows == 0 for c in store.verify_all())
        assert np.array_equal(store.read("train"), arrays["features"].astype(np.float16))
    assert _cli("info", "--verify", path).exit_code == 0


def _npz(path: Path, n_train: int) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(n_train) % 4, np.arange(12) % 4
    np.savez(path, x_train=rng.integers(0, 255, (n_train, 8, 8, 3)).astype(np.uint8),
             y_train=y_train, x_test=rng.integers(0, 255, (12, 8, 8, 3)).astype(np.uint8),
             y_test=y_test)
    return path


def test_extraction_killed_and_resumed_verifies(tmp_path: Path) -> None:
    from featlt.extract.pipeline import FAULT_ENV

    data = _npz(tmp_path / "d.npz", 100)
    out = tmp_path / "k.h5"
    command = [sys.executable, "-m", "featlt", "extract", "--model", "pixels_8", "--data",
               f"npz:{data}", "--workers", "0", "--batch-size", "8", "--threads", "1",
               "-o", str(out)]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, FAULT_ENV: "3", "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -9, killed.stderr
    resumed = _cli("extract", "--model", "pixels_8", "--data", f"npz:{data}", "--workers", "0",
                   "--batch-size", "8", "--threads", "1", "-o", out, "--skip-existing")
    assert resumed.exit_code == 0 and "resumed at 24" in resumed.output, resumed.output
    verified = _cli("info", "--verify", out, "--json")
    assert verified.exit_code == 0, verified.output
    record = json.loads(verified.stdout)["verification"]
    assert record["checked"] and record["blocks"] >= 6 and record["unchecked_rows"] == 0


# Old stores --------------------------------------------------------------------------------
def _as_schema_1(path: Path) -> None:
    """What a store written before digests looks like."""
    with h5py.File(path, "r+") as raw:
        raw.attrs["schema_version"] = 1
        for split in raw:
            del raw[split]["digests"]


def test_a_schema_1_store_reads_with_one_note(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.h5"
    arrays = write_store(path)
    _as_schema_1(path)
    logger = logging.getLogger("featlt")  # the CLI sets propagate=False: listen on it
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="featlt"):
            for _ in range(2):
                with FeatureStore(path) as store:
                    assert np.array_equal(store.read("train"), arrays["features"].astype("f2"))
                    assert store.schema_version == 1
    finally:
        logger.removeHandler(caplog.handler)
    notes = [r.getMessage() for r in caplog.records if "block digests" in r.getMessage()]
    assert len(notes) == 1 and "schema 1" in notes[0] and "--overwrite" in notes[0]
    described = _cli("info", "--verify", path)
    assert described.exit_code == 0
    assert "digests: none (schema 1" in described.output and "nothing can be" in described.output


def test_resuming_a_schema_1_file_adds_digests(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    arrays = write_store(path, n=30, complete=False, batch=7)  # 30 rows: the batch ends mid-way
    _as_schema_1(path.with_name("old.h5.partial"))
    with StoreWriter(path, PROV, mode="resume", chunk_bytes=SMALL_CHUNKS) as writer:
        start = writer.begin_split("train", arrays["labels"], arrays["index"], NAMES, 4,
                                   dtype="float16", skipped=np.array([0, 4]))
        assert start == 30
        writer.mark_complete()
    with FeatureStore(path) as store:
        assert store.schema_version == 2 and store.verify_all()


def test_no_verify_is_an_option_of_every_command() -> None:
    def commands(group: object, prefix: str = "") -> list[tuple[str, object]]:
        found = []
        for name, command in getattr(group, "commands", {}).items():
            found += commands(command, f"{prefix}{name} ") if hasattr(command, "commands") \
                else [(prefix + name, command)]
        return found

    listed = commands(main)
    assert len(listed) >= 6
    for name, command in listed:
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert "--no-verify" in options, name
    assert _cli("info", "--verify", "--no-verify", "x.h5").exit_code == 2
