"""Issue 19, item 1: ``torchrun`` extraction on CPU (gloo, 2 processes).

Each rank writes a batch-aligned contiguous shard of every split into its own store; rank 0 joins
them through virtual datasets. The joined store reads bit-equal to a one-process run (same
threads, pinned forward path); a killed rank's rerun redoes only its missing rows; a resume with
another world size, shards of other settings, and a missing, moved or truncated shard are refused
with a message naming the file or the attribute, never read as zeros. Shards of equal size
swapped on disk are refused too (their digest tables are not those the join recorded), at the
cost of reading digest tables only.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import itertools
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
from PIL import Image

from featlt.cli import main
from featlt.errors import FeatltError, StoreError
from featlt.extract.distributed import shard_bounds, shard_folder, shard_path
from featlt.extract.pipeline import FAULT_ENV, FAULT_RANK_ENV, ExtractConfig, extract_features
from featlt.runtime import Runtime
from featlt.store.feature_store import FeatureStore
from featlt.store.join_writer import join_shards
from featlt.store.writer import StoreWriter

MODEL = "test-efficientnet-random"
BATCH = 8
BAD = 5  # train image 5 is a truncated JPEG
# --threads 1 and a pinned forward path: the one-process run computes the very same batches
COMMON = ["-m", MODEL, "--resolution", "32", "--batch-size", str(BATCH), "--workers", "0",
          "--forward-path", "folded", "--threads", "1", "--skip-bad", "--store-logits"]


def write_jpeg_npz(path: Path, n_train: int = 41, n_test: int = 12, bad: int | None = BAD
                   ) -> Path:
    """A packed-JPEG npz of 4 classes of 16x16 images (train image ``bad`` truncated)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {"label_names": np.array(["a", "b", "c", "d"])}
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 4
        blobs = []
        for i, label in enumerate(labels):
            pixels = np.clip(label * 60 + rng.integers(0, 40, (16, 16, 3)), 0, 255)
            buffer = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
            data = buffer.getvalue()
            blobs.append(data[:len(data) // 3] if part == "train" and i == bad else data)
        arrays[f"{part}_bytes"] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[f"{part}_offsets"] = np.cumsum([0, *map(len, blobs)]).astype(np.int64)
        arrays[f"{part}_labels"] = labels.astype(np.int64)
    np.savez(path, **arrays)
    return path


def torchrun(output: Path, data: Path, *extra: str, env: dict[str, str] | None = None,
             nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node nproc -m featlt extract ... --json``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "featlt", "extract", *COMMON,
               "--data", f"jpeg-npz:{data}", "-o", str(output), "--json", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def one_process(data: Path, output: Path) -> Path:
    """The same extraction in one process (this one)."""
    config = ExtractConfig(model=MODEL, data=f"jpeg-npz:{data}", output=output, resolution=32,
                           batch_size=BATCH, workers=0, forward_path="folded", skip_bad=True,
                           store_logits=True)
    extract_features(config, Runtime(threads=1))
    return output


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every array of every split as stored (float16 features read as float16), verified."""
    out = {}
    with FeatureStore(path) as store:
        for split in store.splits:
            out[f"{split}/features"] = store.read(split, dtype=np.float16)
            out[f"{split}/logits"] = store.read(split, array="logits")
            out[f"{split}/labels"] = store.labels(split)
            out[f"{split}/index"] = store.source_index(split)
            out[f"{split}/n_skipped"] = np.array(store.info(split).n_skipped)
        store.verify_all()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 2-process run (its JSON result beside it) and one one-process run of the same data."""
    folder = tmp_path_factory.mktemp("distributed")
    data = write_jpeg_npz(folder / "data.npz")
    joined = folder / "out" / "joined.h5"
    done = torchrun(joined, data)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder / "result.json").write_text(done.stdout)
    return {"data": data, "joined": joined, "one": one_process(data, folder / "one.h5"),
            "result": folder / "result.json"}


def test_shards_are_contiguous_whole_batches_covering_every_row_once() -> None:
    for n in (1, 7, 8, 9, 40, 41, 100):
        for size in (1, 2, 3, 5):
            bounds = [shard_bounds(n, BATCH, rank, size) for rank in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            assert all(start % BATCH == 0 or start == n for start, _ in bounds)
            batches = [-(-(stop - start) // BATCH) for start, stop in bounds]
            assert max(batches) - min(batches) <= 1


def test_two_processes_join_bit_equal_to_one_process(runs: dict[str, Path]) -> None:
    joined, one = read_all(runs["joined"]), read_all(runs["one"])
    assert joined.keys() == one.keys()
    for key in joined:
        assert joined[key].tobytes() == one[key].tobytes(), key
    assert int(joined["train/n_skipped"]) == 1 and BAD not in joined["train/index"]
    result = json.loads(runs["result"].read_text())
    assert result["world_size"] == 2 and len(result["shards"]) == 2
    assert result["join"]["feature_bytes_copied"] == 0
    assert {s["name"]: s["rows"] for s in result["splits"]} == {"train": 40, "test": 12}
    with FeatureStore(runs["joined"]) as store:
        record = store.provenance["distributed"]
        sources = store.sources()["train/features"]
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    assert [s["file"] for s in record["shards"]] == [
        "joined.h5.shards/rank00000.h5", "joined.h5.shards/rank00001.h5"]
    assert record["shards"][0]["rows"] == {"train": [0, 24], "test": [0, 8]}
    assert len(record["digest"]) == 32
    assert [m.file_name for m in sources] == [s["file"] for s in record["shards"]]
    with h5py.File(runs["joined"], "r") as file:  # nothing but virtual arrays in the file
        assert all(file[f"{s}/{a}"].is_virtual for s in file for a in file[s])


def test_the_joined_store_moves_with_its_shards_and_never_reads_zeros(
        runs: dict[str, Path], tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(runs["joined"].parent, moved)
    joined = moved / runs["joined"].name
    assert read_all(joined)["train/features"].tobytes() == \
        read_all(runs["one"])["train/features"].tobytes()
    alone = tmp_path / "alone.h5"  # the joined file without its shards
    shutil.copy(joined, alone)
    with pytest.raises(StoreError, match=r"alone\.h5: virtual dataset .* the source file "
                                         r".*joined\.h5\.shards/rank00000\.h5 is not found "
                                         r"\(HDF5 would read its rows as zeros"):
        FeatureStore(alone)
    shard = shard_path(joined, 1)
    shard.write_bytes(shard.read_bytes()[:4096])  # truncated
    with pytest.raises(StoreError, match=r"rank00001\.h5.*truncated"):
        FeatureStore(joined).read("train")
    shard.unlink()
    with pytest.raises(StoreError, match=r"rank00001\.h5 is not found.*would read its rows as "
                                         r"zeros"):
        FeatureStore(joined)


def _shards(runs: dict[str, Path], tmp_path: Path) -> tuple[Path, list[Path], dict]:
    """A copy of the run's output folder: (joined, shard files, the joined provenance less
    ``distributed``)."""
    folder = tmp_path / "copy"
    shutil.copytree(runs["joined"].parent, folder)
    joined = folder / runs["joined"].name
    with FeatureStore(joined) as store:
        provenance = {k: v for k, v in store.provenance.items() if k != "distributed"}
    return joined, [shard_path(joined, rank) for rank in range(2)], provenance


def test_shards_of_other_settings_or_world_sizes_are_refused(runs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    joined, shards, provenance = _shards(runs, tmp_path)
    again = join_shards(joined, shards, provenance, 2, "gloo")
    assert again.feature_bytes_copied == 0 and again.rows == {"train": 40, "test": 12}
    other = {**provenance, "store": {**provenance["store"], "batch_size": 16}}
    with pytest.raises(StoreError, match=r"rank00000\.h5: from another run's settings: "
                                         r"provenance differs at 'store.batch_size' \(16 here, "
                                         r"8 in the shard\)"):
        join_shards(joined, shards, other, 2, "gloo")
    with pytest.raises(StoreError, match=r"rank00000\.h5: written as rank 0 of world size 2, "
                                         r"but it is rank 0's file of a run of world size 3"):
        join_shards(joined, [*shards, shards[0]], provenance, 3, "gloo")
    with pytest.raises(StoreError, match=r"rank00001\.h5: written as rank 1 of world size 2, "
                                         r"but it is rank 0's file"):
        join_shards(joined, shards[::-1], provenance, 2, "gloo")
    shards[1].unlink()
    with pytest.raises(StoreError, match=r"rank00001\.h5: not found \(rank 1 did not finish\)"):
        join_shards(joined, shards, provenance, 2, "gloo")
    assert joined.exists()  # a refused join leaves the earlier joined store as it was


def test_a_full_disk_while_joining_leaves_no_store_that_reads_complete(
        runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    joined, shards, provenance = _shards(runs, tmp_path)
    joined.unlink()

    def disk_full(self: h5py.File) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "flush", disk_full)
    with pytest.raises(StoreError, match=r"joined\.h5: writing the joined store failed \(No "
                                         r"space left on device\).*no\b|was removed"):
        join_shards(joined, shards, provenance, 2, "gloo")
    assert not joined.exists() and not joined.with_name(joined.name + ".partial").exists()


def test_a_killed_rank_redoes_only_its_rows_and_another_world_size_is_refused(
        runs: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "killed.h5"
    killed = torchrun(output, runs["data"], env={FAULT_ENV: "1", FAULT_RANK_ENV: "1"})
    assert killed.returncode != 0 and not output.exists()
    with h5py.File(shard_path(output, 1).with_name("rank00001.h5.partial"), "r") as file:
        assert int(file["train"].attrs["n_written"]) == BATCH  # one batch, then SIGKILL
    config = ExtractConfig(model=MODEL, data=f"jpeg-npz:{runs['data']}", output=output,
                           resolution=32, batch_size=BATCH, workers=0, forward_path="folded",
                           skip_bad=True, store_logits=True, mode="resume")
    with pytest.raises(FeatltError, match=r"resuming .*killed\.h5: .*rank0000\d\.h5(\.partial)? "
                                          r"was written by a run of world size 2, this run has "
                                          r"world size 1"):
        extract_features(config, Runtime(threads=1))
    with pytest.raises(FeatltError, match=r"killed\.h5: an interrupted run of world size 2 "
                                          r"left .*--resume to continue it"):
        extract_features(dataclasses.replace(config, mode="create"), Runtime(threads=1))
    resumed = torchrun(output, runs["data"], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout)
    rank1 = {s["name"]: s for s in result["shards"][1]}
    assert rank1["train"]["resumed_from"] == BATCH  # rank 1 redid only its missing rows
    assert read_all(output)["train/features"].tobytes() == \
        read_all(runs["one"])["train/features"].tobytes()
    assert sorted(p.name for p in shard_folder(output).iterdir()) == [
        "rank00000.h5", "rank00001.h5"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 KiB tmpfs: room for the data's shard headers, not for its rows."""
    yield from mount_tmpfs(tmp_path / "small", "size=96k")


def test_a_full_disk_during_a_shard_write_leaves_no_store_that_reads_complete(
        runs: dict[str, Path], small_disk: Path) -> None:
    output = small_disk / "full.h5"
    failed = torchrun(output, runs["data"])
    assert failed.returncode != 0
    assert "No space left on device" in failed.stderr and "the unfinished file was removed" \
        in failed.stderr
    assert not output.exists() and not output.with_name("full.h5.partial").exists()
    for shard in shard_folder(output).glob("rank*.h5"):  # a shard that finished, if any
        with h5py.File(shard, "r") as file:
            assert "shard" in json.loads(file.attrs["provenance"])


# Shards swapped on disk ----------------------------------------------------------------------
SHARD_ROWS = 16  # each of two synthetic shards: equal sizes, so only the join record tells them
TOY = {"backbone": {"model": "toy", "weights_sha256": "abc"},
       "data": {"extracted_splits": ["train"]}, "store": {"dtype": "float32"},
       "run": {"host": "a"}}


def synthetic_join(folder: Path) -> tuple[Path, np.ndarray]:
    """Two equal-size shard stores written as ranks 0 and 1 of a run, joined by
    :func:`join_shards`: (the joined store, its (32, 4) features in order)."""
    joined = folder / "joined.h5"
    rng = np.random.default_rng(7)
    features = rng.normal(size=(2 * SHARD_ROWS, 4)).astype(np.float32)
    for rank in range(2):
        rows = slice(rank * SHARD_ROWS, (rank + 1) * SHARD_ROWS)
        shard = {"rank": rank, "world_size": 2, "rows": {"train": [rows.start, rows.stop]}}
        with StoreWriter(shard_path(joined, rank), {**TOY, "shard": shard},
                         chunk_bytes=64) as writer:
            writer.begin_split("train", np.arange(SHARD_ROWS) % 3, np.arange(rows.start,
                               rows.stop), ["a", "b", "c"], 4)
            writer.write_rows("train", 0, features[rows])
            writer.mark_complete()
    join_shards(joined, [shard_path(joined, r) for r in range(2)], TOY, 2, "gloo")
    return joined, features


def swap_shards(joined: Path) -> None:
    """Rename each of the two shard files onto the other."""
    first, second = shard_path(joined, 0), shard_path(joined, 1)
    first.rename(first.with_name("swap"))
    second.rename(first)
    first.with_name("swap").rename(second)


def _info(*args: object) -> Result:
    result = CliRunner().invoke(main, ["info", *(str(a) for a in args)])
    assert "Traceback" not in result.output, result.output
    return result


def test_an_untouched_join_reads_and_info_names_each_shard(tmp_path: Path) -> None:
    joined, features = synthetic_join(tmp_path)
    with FeatureStore(joined) as store:
        assert np.array_equal(store.read("train"), features)
        assert store.source_index("train").tolist() == list(range(2 * SHARD_ROWS))
        assert [m.file_name for m in store.sources()["train/features"]] == [
            "joined.h5.shards/rank00000.h5", "joined.h5.shards/rank00001.h5"]
    described = _info("--verify", joined)
    assert described.exit_code == 0, described.output
    assert ("joined from 2 shards (rank 0 joined.h5.shards/rank00000.h5, rank 1 "
            "joined.h5.shards/rank00001.h5); every source's digest tables match the join "
            "record") in described.output
    assert "train/features rows 16-31 <- " in described.output
    assert "every block digest matches" in described.output


def test_swapped_shards_of_equal_size_are_refused_naming_the_file(tmp_path: Path) -> None:
    joined, _ = synthetic_join(tmp_path)
    swap_shards(joined)
    refusal = (r"joined\.h5: the source .*joined\.h5\.shards/rank00000\.h5 is not the shard the "
               r"join recorded there: its split 'train' \w+ digest table hashes to [0-9a-f]{32}, "
               r"the join recorded [0-9a-f]{32}; the file holds rank 1's shard, the join put "
               r"rank 0's here .*put each shard file back in its place.*rerun the same torchrun "
               r"command with --resume.*re-extract with --overwrite")
    for verify in (True, False):  # the check reads digest tables only: --no-verify keeps it
        with pytest.raises(StoreError, match=refusal):
            FeatureStore(joined, verify=verify)
    for args in ((joined,), ("--verify", joined)):
        refused = _info(*args)
        assert refused.exit_code == 2 and "rank00000.h5 is not the shard the join recorded " \
            "there" in refused.output
    swap_shards(joined)  # put back: reads again
    with FeatureStore(joined) as store:
        store.verify_all()


def test_the_shard_check_reads_no_feature_row(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    joined, _ = synthetic_join(tmp_path)
    read: list[str] = []
    real = h5py.Dataset.__getitem__

    def recording(self: h5py.Dataset, key: object) -> object:
        read.append(self.name)
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    FeatureStore(joined, verify=False).close()  # the shard check alone reads the tables
    assert read and all("/digests/" in name for name in read), read
    swap_shards(joined)
    read.clear()
    with pytest.raises(StoreError, match="is not the shard the join recorded there"):
        FeatureStore(joined)
    assert read and all("/digests/" in name for name in read), read


def test_an_edited_join_record_is_refused(tmp_path: Path) -> None:
    joined, _ = synthetic_join(tmp_path)
    with h5py.File(joined, "a") as file:
        provenance = json.loads(file.attrs["provenance"])
        provenance["distributed"]["shards"][0]["digests"]["train"]["features"] = "0" * 32
        file.attrs["provenance"] = json.dumps(provenance)
    with pytest.raises(StoreError, match=r"joined\.h5: its join record \(provenance "
                                         r"'distributed'\) is malformed or does not hash to its "
                                         r"own 'digest'"):
        FeatureStore(joined)
