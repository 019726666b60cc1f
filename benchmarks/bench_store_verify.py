"""What block digests cost (issue 16, part 4): writing them, and checking them on every read.

A synthetic 60,000 x 1,280 float16 store (one ``train`` split, standard-normal rows, 10 classes)
is written through ``StoreWriter`` in batches of 256 rows, as an extraction writes it. Then, each
``--repeats`` times in alternating order, with the file in the page cache (written just before):

- a full read of ``train/features`` into float32 (``FeatureStore.read``), with and without
  verification, each in a newly opened store (a store checks each block once), after one
  untimed warm-up read of each;
- ``featlt info --verify`` and plain ``featlt info`` in a fresh process (interpreter start and
  imports included, so their difference is the cost of checking every array);
- BLAKE2b alone over the same bytes (the floor of any check of every byte).

The write is timed once; the digests' share of it is estimated by hashing the written bytes
again. The machine may be shared: the load average is recorded at start and end.

    python benchmarks/bench_store_verify.py                # -> results/store_verify.json
    python benchmarks/bench_store_verify.py --rows 5000    # a smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, finish_record, run_record

SEED = 0
BATCH = 256
N_CLASSES = 10


def write_store(path: Path, rows: int, dim: int) -> float:
    """Write the synthetic store through StoreWriter; return the seconds it took."""
    from featlt.store.writer import StoreWriter

    rng = np.random.default_rng(SEED)
    labels = np.arange(rows) % N_CLASSES
    provenance = {"backbone": {"arch": "synthetic-normal", "dim": dim},
                  "data": {"name": "bench_store_verify", "rows": rows, "seed": SEED}}
    began = time.perf_counter()
    with StoreWriter(path, provenance, mode="overwrite") as writer:
        writer.begin_split("train", labels, np.arange(rows), [f"c{c}" for c in range(N_CLASSES)],
                           dim, dtype="float16")
        for start in range(0, rows, BATCH):
            batch = rng.standard_normal((min(BATCH, rows - start), dim), dtype=np.float32)
            writer.write_rows("train", start, batch)
        writer.mark_complete()
    return time.perf_counter() - began


def time_read(path: Path, verify: bool) -> float:
    """Seconds to open the store and read every feature row into float32."""
    from featlt.store.feature_store import FeatureStore

    began = time.perf_counter()
    with FeatureStore(path, verify=verify) as store:
        features = store.read("train")
    seconds = time.perf_counter() - began
    assert features.shape[0] > 0
    return seconds


def time_info(path: Path, verify: bool) -> float:
    """Wall seconds of ``featlt info [--verify]`` in a fresh process."""
    command = [sys.executable, "-m", "featlt", "info", str(path), "--json"]
    if verify:
        command.insert(4, "--verify")
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return seconds


def time_hash_only(path: Path) -> float:
    """Seconds of BLAKE2b over the stored feature bytes, read beforehand (hashing alone)."""
    import h5py

    with h5py.File(path, "r") as handle:
        data = handle["train/features"][:]
    began = time.perf_counter()
    step = 409 * data.shape[1]  # about one 1 MiB block at a time, as the reader hashes
    flat = data.reshape(-1)
    for start in range(0, flat.size, step):
        hashlib.blake2b(memoryview(flat[start:start + step]).cast("B"), digest_size=16)
    return time.perf_counter() - began


def summary(values: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "all_s": [round(v, 3) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the store is written (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "store_verify.json")
    args = parser.parse_args()
    record = run_record(sys.argv)
    from featlt.runtime import write_json_atomic

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "bench.h5"
        write_s = write_store(path, args.rows, args.dim)
        size = path.stat().st_size
        for verify in (True, False):  # warm-up, untimed: the first large allocation of a
            time_read(path, verify)    # process costs a second or more, whichever read it is
        reads: dict[bool, list[float]] = {True: [], False: []}
        infos: dict[bool, list[float]] = {True: [], False: []}
        for repeat in range(args.repeats):
            order = (True, False) if repeat % 2 == 0 else (False, True)
            for verify in order:
                reads[verify].append(time_read(path, verify))
            for verify in order:
                infos[verify].append(time_info(path, verify))
        hash_s = [time_hash_only(path) for _ in range(args.repeats)]
    feature_bytes = args.rows * args.dim * 2
    read_on, read_off = statistics.median(reads[True]), statistics.median(reads[False])
    info_on, info_off = statistics.median(infos[True]), statistics.median(infos[False])
    document = {
        "benchmark": "store block digests: write and verification cost",
        "store": {"rows": args.rows, "dim": args.dim, "dtype": "float16", "batch_rows": BATCH,
                  "feature_bytes": feature_bytes, "file_bytes": size,
                  "data": "standard normal, seed 0; written through StoreWriter",
                  "page_cache": "warm (the file was just written); cold-cache reads not measured"},
        "write": {"seconds": round(write_s, 3),
                  "digest_share_estimate_s": round(statistics.median(hash_s), 3),
                  "note": "one timing; the digests' share estimated as BLAKE2b over the same "
                          "bytes"},
        "full_read_float32": {
            "verify": summary(reads[True]), "no_verify": summary(reads[False]),
            "overhead_s": round(read_on - read_off, 3),
            "overhead_fraction": round((read_on - read_off) / read_off, 3),
            "verified_mib_per_s": round(feature_bytes / 2**20 / read_on, 1),
        },
        "info_process": {
            "verify": summary(infos[True]), "plain": summary(infos[False]),
            "verify_cost_s": round(info_on - info_off, 3),
            "note": "fresh process each: interpreter start and imports included in both",
        },
        "blake2b_only": {**summary(hash_s),
                         "mib_per_s": round(feature_bytes / 2**20 / statistics.median(hash_s),
                                            1)},
    }
    document["run"] = finish_record(record)
    write_json_atomic(args.out, document)
    print(f"wrote {args.out}")
    print(f"full read: {read_off:.2f} s unchecked, {read_on:.2f} s verified "
          f"(+{100 * (read_on - read_off) / read_off:.0f}%); info --verify {info_on:.2f} s vs "
          f"info {info_off:.2f} s; BLAKE2b alone {statistics.median(hash_s):.2f} s; "
          f"write {write_s:.2f} s")


if __name__ == "__main__":
    main()
