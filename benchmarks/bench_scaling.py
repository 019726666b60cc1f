"""Benchmark of scaling out (issue 19): ``torchrun`` extraction with 2 processes against 1, the
join's cost, the device decode path measured against the CPU path, and linear heads fitted in
memory against ``--memory-budget``.

(a) ``featlt extract`` of the first ``--images`` CIFAR-10 (JPEG) training images (a seeded
    ``--limit`` subset) with EfficientNet-Lite0 (ImageNet weights) at 160 px, float16 store, every
    default (threads and decode workers chosen by featlt, forward path ``auto``), once in one
    process and once under ``torchrun --standalone --nproc-per-node 2`` (gloo), each in a fresh
    process: images per second of the split loop (model loading and the join excluded; for two
    processes all rows over the slower rank's seconds) and the wall time of the whole command.
    Both processes share this machine's cores (each gets half of them), so on 2 cores the ratio
    says what sharding costs or gains here, not what 2 GPUs would do;
(b) the join: its seconds and the feature bytes stored in the joined file (0: virtual datasets
    only), and how the joined store reads against the one-process store (bit-equal or the largest
    difference, with each run's thread count), with block digests verified on those reads;
(c) the same pair pinned (``--threads 1 --workers 1 --forward-path folded`` on both sides) on
    ``--pinned-images`` images: the bit-equality the tests assert, at this size;
(d) the device decode path's code on CPU tensors (``--decode device`` on this CPU run, torchvision's
    ``decode_jpeg``) against the CPU path on ``--decode-images`` CIFAR-10 test JPEGs: pixel
    differences after resize and crop, feature differences (cosine, largest absolute difference
    over the features' range), and each path's images per second on CPU (informative only: the
    device path is for CUDA);
(e) ``"gpu": null`` with the reason when no CUDA GPU is visible;
(f) step ``linear_head`` (issue 19, "Performance"): ``featlt fit-classifier``'s code path
    (:func:`featlt.heads.workflow.fit_classifiers`) on SYNTHETIC long-tailed stores of about
    ``--rows`` training rows (float32, D = 512, 100 isotropic Gaussian classes of
    :func:`featlt.data.synthetic.gaussian_classes`, imbalance factor 100, stored class by class;
    a balanced validation split of 20 and a held-out balanced test split of 50 rows per class),
    each run in a fresh process, once under ``--memory-budget`` and once with the features in
    memory (skipped, saying so, where MemAvailable has no room for featlt's estimate of it):
    seconds, peak resident memory above the level right after imports (VmHWM - VmRSS, as
    tests/test_heads_streaming.py measures it), test balanced accuracy and the streamed path's
    gap to the in-memory one, per head.

Steps write only their own keys of the results file (read, update, write), so a step run alone
keeps every other key: ``extract`` writes (a)-(e) and ``run``; ``linear_head`` writes
``linear_head``, whose own ``run`` record is inside it.

    python benchmarks/bench_scaling.py                 # every step -> results/scaling.json
    python benchmarks/bench_scaling.py --steps extract --images 1024 --decode-images 256
    python benchmarks/bench_scaling.py --steps linear_head --rows 100000,1000000
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import finish_record, load_average, run_record

REPO = Path(__file__).resolve().parents[1]
MODEL, RESOLUTION, BATCH = "efficientnet-lite0", 160, 64
PINNED = ["--threads", "1", "--workers", "1", "--forward-path", "folded"]
STEPS = ("extract", "linear_head")
# (f): the synthetic problem. Class centres of norm SEPARATION, noise N(0, I) in every dimension.
HEAD_CLASSES, HEAD_IMBALANCE, SEPARATION = 100, 100.0, 4.0
VAL_PER_CLASS, TEST_PER_CLASS = 20, 50
# The in-memory run is skipped (and says so) unless MemAvailable exceeds featlt's estimate of it
# by this factor (measured: 1.10x the estimate at 100k rows, 1.15x at 1M), so the shared machine
# never runs out.
MEMORY_MARGIN = 1.25
# The modules a fit-classifier run imports, loaded before the resident level is read (the list
# tests/test_heads_streaming.py's MEASURE loads), so the budget covers the run, not its imports.
FIT_IMPORTS = ("torch", "h5py", "scipy.optimize", "scipy.special", "scipy.sparse",
               "sklearn.base", "sklearn.utils.validation", "sklearn.utils.multiclass",
               "safetensors.numpy", "featlt.heads.workflow", "featlt.heads.selection",
               "featlt.heads.budget", "featlt.heads.io", "featlt.evaluation.metrics",
               "featlt.data.protocol", "featlt.data.validation", "featlt.progress")


def data_path() -> Path:
    root = Path(os.environ.get("FEATLT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "cifar10" / "cifar10_jpeg_packed.npz"


def extract(output: Path, data: Path, split: str, images: int, nproc: int,
            extra: list[str]) -> dict[str, Any]:
    """One ``featlt extract`` in a fresh process (``torchrun`` when ``nproc`` > 1): its JSON
    result, wall seconds and the load average around it."""
    featlt = ["-m", "featlt", "extract", "-m", MODEL, "--data", f"jpeg-npz:{data}", "--splits",
              split, "--limit", f"{split}={images}", "--resolution", str(RESOLUTION),
              "--batch-size", str(BATCH), "-o", str(output), "--json", *extra]
    launcher = ([sys.executable] if nproc == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={nproc}"])
    load = load_average()
    began = time.perf_counter()
    done = subprocess.run([*launcher, *featlt], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"extract failed ({' '.join(launcher + featlt)}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    split_result = result["splits"][0]
    return {"images": split_result["rows"], "img_per_s": split_result["images_per_second"],
            "loop_seconds": split_result["seconds"], "wall_seconds": round(wall, 2),
            "threads": result["provenance"]["run"]["threads"],
            "threads_reason": result["provenance"]["run"]["threads_choice"]["reason"],
            "workers": result["provenance"]["run"]["workers"],
            "forward_path": result["provenance"]["forward"]["name"],
            "decode_path": result["provenance"]["decode_path"]["path"],
            "join": result.get("join"), "load_average_before": load,
            "load_average_after": load_average()}


def compare(a: Path, b: Path, split: str) -> dict[str, Any]:
    """How two stores' features compare (digests verified while reading)."""
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(a, verify=True) as sa, FeatureStore(b, verify=True) as sb:
        fa, fb = sa.read(split, dtype=np.float16), sb.read(split, dtype=np.float16)
        same_rows = bool(np.array_equal(sa.source_index(split), sb.source_index(split)))
    x, y = fa.astype(np.float32), fb.astype(np.float32)
    cosine = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1),
                                         1e-12)
    return {"bit_equal": fa.tobytes() == fb.tobytes(), "same_rows_in_order": same_rows,
            "max_abs_difference": float(np.abs(x - y).max()),
            "feature_range": float(np.abs(x).max()),
            "rows_differing": int((fa != fb).any(axis=1).sum()),
            "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "store_verification": "on: every block digest of both stores checked on read"}


def decode_pixels(data: Path, images: int) -> dict[str, Any]:
    """Pixels of the device path (on CPU tensors) against the CPU path, after resize and crop."""
    import torch

    from featlt.data.sources import open_source
    from featlt.extract.batch_normalize import split_transform
    from featlt.extract.device_decode import (
        DeviceDecoder,
        EncodedImages,
        collate_encoded,
        plan_device_transform,
    )
    from featlt.extractors.backbones import create_backbone, resolve_spec

    source = open_source(f"jpeg-npz:{data}")
    backbone = create_backbone(resolve_spec(MODEL, None, RESOLUTION, 0), device="cpu")
    per_image = split_transform(backbone.transform)[0]
    plan = plan_device_transform(backbone.transform)
    rows = np.arange(images)
    dataset = EncodedImages(source, "test", rows, per_image)
    items, _, _ = collate_encoded([dataset[j] for j in range(images)])
    device = DeviceDecoder(plan, "cpu", lambda i: per_image(source.load_image("test", i)))(items)
    cpu = torch.stack([per_image(source.load_image("test", int(i))) for i in rows])
    difference = (device.to(torch.int16) - cpu.to(torch.int16)).abs().float().flatten()
    return {"images": images, "transform": plan.describe() if plan else None,
            "mean_abs_levels": round(float(difference.mean()), 4),
            "p99_abs_levels": float(np.quantile(difference.numpy(), 0.99)),
            "max_abs_levels": float(difference.max()),
            "share_of_values_differing": round(float((difference > 0).float().mean()), 4)}


def status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory line (``VmRSS:``, ``VmHWM:``) in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(key))


def write_head_store(path: Path, n_rows: int, dim: int, seed: int = 0) -> dict[str, Any]:
    """A float32 store of about ``n_rows`` long-tailed training rows (IF 100 over
    :data:`HEAD_CLASSES` classes, largest first) with balanced ``val`` and ``test`` splits, all
    drawn by :func:`featlt.data.synthetic.gaussian_classes` around the same centres and written
    class by class, so one class's rows (at most about 47,000 x ``dim`` at 1M rows) are held at
    a time.

    Returns:
        The store's sizes: ``n_train``, ``n_val``, ``n_test``, ``largest_class``,
        ``smallest_class``, ``features_mb`` (the training features as float32) and ``store_mb``.
    """
    from featlt.data.profiles import long_tail_counts
    from featlt.data.synthetic import gaussian_classes
    from featlt.store.writer import StoreWriter

    ratio = long_tail_counts(10**6, HEAD_CLASSES, HEAD_IMBALANCE).sum() / 10**6
    counts = long_tail_counts(round(n_rows / ratio), HEAD_CLASSES, HEAD_IMBALANCE)
    centres = np.random.default_rng(seed).standard_normal((HEAD_CLASSES, dim))
    centres *= SEPARATION / np.linalg.norm(centres, axis=1, keepdims=True)
    splits = {"train": counts, "val": np.full(HEAD_CLASSES, VAL_PER_CLASS),
              "test": np.full(HEAD_CLASSES, TEST_PER_CLASS)}
    provenance = {"backbone": {"arch": "synthetic-gaussian", "dim": dim,
                               "separation": SEPARATION},
                  "dataset": {"name": "synthetic-lt", "counts": counts.tolist(), "seed": seed}}
    names = [f"class_{c}" for c in range(HEAD_CLASSES)]
    with StoreWriter(path, provenance, mode="overwrite") as writer:
        for index, (split, per_class) in enumerate(splits.items()):
            labels = np.repeat(np.arange(HEAD_CLASSES), per_class)
            writer.begin_split(split, labels, np.arange(labels.size), names, dim)
            written = 0
            for c, n in enumerate(per_class):
                rows = gaussian_classes(per_class[c:c + 1], dim, centres=centres[c:c + 1],
                                        seed=seed + 1 + index * HEAD_CLASSES + c).X
                writer.write_rows(split, written, rows)
                written += int(n)
        writer.mark_complete()
    return {"n_train": int(counts.sum()), "n_val": HEAD_CLASSES * VAL_PER_CLASS,
            "n_test": HEAD_CLASSES * TEST_PER_CLASS, "largest_class": int(counts[0]),
            "smallest_class": int(counts[-1]),
            "features_mb": round(int(counts.sum()) * dim * 4 / 2**20, 1),
            "store_mb": round(path.stat().st_size / 2**20, 1)}


def available_mb() -> float:
    """``MemAvailable`` of ``/proc/meminfo`` in MB: what can be allocated without swapping."""
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) / 1024 for line in meminfo
                    if line.startswith("MemAvailable:"))


def child_linear_head(store: Path, heads: list[str], epochs: int, budget_mb: float | None,
                      out: Path) -> None:
    """In a fresh process: ``fit_classifiers`` as ``featlt fit-classifier STORE --head ...
    --max-epochs EPOCHS --bootstrap 0 [--memory-budget MB]`` runs it (CPU), then print its
    seconds, resident memory and test balanced accuracy per head, and featlt's estimate of the
    in-memory run (:func:`featlt.heads.budget.in_memory_mb`), as one JSON line."""
    for name in FIT_IMPORTS:
        importlib.import_module(name)
    import torch

    from featlt.data.protocol import Protocol, resolve_view
    from featlt.heads.budget import in_memory_mb, view_sizes
    from featlt.heads.registry import head_spec
    from featlt.heads.selection import grid_points
    from featlt.heads.workflow import fit_classifiers
    from featlt.store.feature_store import FeatureStore

    after_imports = status_mb("VmRSS:")
    began = time.perf_counter()
    summary = fit_classifiers(store, heads, out, Protocol(seed=0), device="cpu", seed=0,
                              n_bootstrap=0, overrides={"max_epochs": epochs},
                              memory_budget_mb=budget_mb)
    seconds = time.perf_counter() - began
    peak = status_mb("VmHWM:")
    with FeatureStore(store) as opened:
        estimate = in_memory_mb(heads, view_sizes(opened, resolve_view(opened, Protocol(seed=0))))
    print(json.dumps({
        "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1),
        "rss_after_imports_mb": round(after_imports, 1),
        "peak_above_imports_mb": round(peak - after_imports, 1),
        "balanced_accuracy": {name: round(row["balanced_accuracy"], 4)
                              for name, row in summary["heads"].items()},
        "fit_seconds": {name: round(row["fit_seconds"], 2)
                        for name, row in summary["heads"].items()},
        "selected": {name: row["selected"] for name, row in summary["heads"].items()},
        "grid_points": {name: len(grid_points(head_spec(name).grid)) for name in heads},
        "plan": summary["config"].get("memory_budget"), "torch_threads": torch.get_num_threads(),
        "in_memory_estimate_mb": round(estimate, 1),
    }))


def bench_linear_head(sizes: list[int], dim: int, heads: list[str], epochs: int,
                      budget_mb: float, workdir: Path) -> dict[str, Any]:
    """(f): per size, a synthetic store, then the heads fitted under ``budget_mb`` and in
    memory, each in a fresh process (:func:`child_linear_head`); the in-memory run only where
    the machine has room for featlt's estimate of it (reported by the first run)."""
    out: dict[str, Any] = {}
    for n_rows in sizes:
        store = workdir / f"heads_{n_rows}.h5"
        entry: dict[str, Any] = write_head_store(store, n_rows, dim)
        for path, budget in (("memory_budget", budget_mb), ("in_memory", None)):
            available = available_mb()
            if budget is None and (estimate := entry["memory_budget"]["in_memory_estimate_mb"]
                                   ) * MEMORY_MARGIN > available:
                entry[path] = {"skipped": f"featlt's in-memory estimate {estimate} MB x "
                               f"{MEMORY_MARGIN} is more than the {available:.0f} MB available "
                               "(MemAvailable)"}
                print(f"  {entry['n_train']} rows, {path}: {entry[path]['skipped']}", flush=True)
                continue
            load = load_average()
            done = subprocess.run(
                [sys.executable, __file__, "--child-linear-head", str(store), "--heads",
                 ",".join(heads), "--epochs", str(epochs), "--child-out",
                 str(workdir / f"heads_{n_rows}_{path}"),
                 *([] if budget is None else ["--child-budget", str(budget)])],
                capture_output=True, text=True, cwd=REPO)
            if done.returncode != 0:
                raise SystemExit(f"fit-classifier ({path}, {n_rows} rows) failed:\n"
                                 f"{done.stderr[-3000:]}")
            entry[path] = {**json.loads(done.stdout.strip().splitlines()[-1]),
                           "memory_available_before_mb": round(available),
                           "load_average_before": load, "load_average_after": load_average()}
            print(f"  {entry['n_train']} rows, {path}: {entry[path]['seconds']} s, "
                  f"{entry[path]['peak_above_imports_mb']} MB above imports, balanced accuracy "
                  f"{entry[path]['balanced_accuracy']}", flush=True)
        streamed, memory = entry["memory_budget"], entry["in_memory"]
        entry["within_budget"] = streamed["peak_above_imports_mb"] < budget_mb
        entry["balanced_accuracy_gap_points"] = None if "skipped" in memory else {
            name: round(100 * (streamed["balanced_accuracy"][name] - accuracy), 2)
            for name, accuracy in memory["balanced_accuracy"].items()}
        out[str(n_rows)] = entry
        store.unlink()
    return out


def update_results(path: Path, updates: dict[str, Any]) -> None:
    """Write ``updates`` into the JSON object at ``path``, keeping its other keys (read just
    before writing: other benchmarks write their own keys of the same file)."""
    from featlt.runtime import write_json_atomic

    document = json.loads(path.read_text()) if path.is_file() else {}
    document.update(updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, document)


def run_extract(args: argparse.Namespace) -> dict[str, Any]:
    """Steps (a)-(e): the keys they write, with their run record under ``run``."""
    record = run_record(sys.argv)
    data = data_path()
    if not data.is_file():
        raise SystemExit(f"{data}: absent; set FEATLT_SHARED_DATA to the shared data folder")
    import torch

    with tempfile.TemporaryDirectory(prefix="featlt-scaling-") as tmp:
        folder = Path(tmp)
        one = extract(folder / "one.h5", data, "train", args.images, 1, [])
        two = extract(folder / "two.h5", data, "train", args.images, 2, [])
        pinned_one = extract(folder / "p1.h5", data, "train", args.pinned_images, 1, PINNED)
        pinned_two = extract(folder / "p2.h5", data, "train", args.pinned_images, 2, PINNED)
        cpu = extract(folder / "cpu.h5", data, "test", args.decode_images, 1,
                      ["--decode", "cpu"])
        device = extract(folder / "device.h5", data, "test", args.decode_images, 1,
                         ["--decode", "device"])
        document = {
            "what": "torchrun extraction (2 processes vs 1) and the join on this machine's "
                    "CPUs; the device decode path's code on CPU tensors against the CPU path",
            "model": MODEL, "resolution": RESOLUTION, "batch_size": BATCH,
            "data": "CIFAR-10 (JPEG), ../shared/data/cifar10/cifar10_jpeg_packed.npz, a seeded "
                    "--limit subset",
            "cores": os.cpu_count(),
            "cores_note": f"both processes share this machine's {os.cpu_count()} cores (each "
                          "gets half for its forward and decode workers); the ratio is what "
                          "sharding costs or gains on one CPU machine, not what one GPU per "
                          "process gives",
            "extract_img_per_s": {"1": one["img_per_s"], "2": two["img_per_s"]},
            "ratio_2_to_1": round(two["img_per_s"] / one["img_per_s"], 3),
            "runs": {"1": one, "2": two},
            "join": {"seconds": two["join"]["seconds"],
                     "feature_bytes_copied": two["join"]["feature_bytes_copied"],
                     "joined_file_bytes": two["join"]["file_bytes"],
                     "store_verification": "off: the join reads the shards' attributes and "
                                           "digest tables only, never their rows"},
            "joined_vs_one_process": compare(folder / "one.h5", folder / "two.h5", "train"),
            "pinned": {"flags": PINNED, "runs": {"1": pinned_one, "2": pinned_two},
                       "joined_vs_one_process": compare(folder / "p1.h5", folder / "p2.h5",
                                                        "train")},
            "decode": {
                "pixels": decode_pixels(data, args.decode_images),
                "features": compare(folder / "cpu.h5", folder / "device.h5", "test"),
                "img_per_s_on_cpu": {"cpu": cpu["img_per_s"], "device_code_on_cpu":
                                     device["img_per_s"]},
                "note": "the device path's code on CPU tensors (torchvision decode_jpeg, "
                        "libjpeg-turbo, whose pixels equal Pillow's; the resize in float32 "
                        "passes rounded as Pillow's); nvJPEG on CUDA is not measured here",
            },
            "gpu": None,
            "gpu_reason": ("no CUDA GPU is visible on this machine and none was lent to this "
                           "task: the end-to-end GPU extraction and nvJPEG decoding are not "
                           "measured" if not torch.cuda.is_available() else
                           "a CUDA GPU is visible but this script measures CPU scaling only"),
        }
    document["run"] = finish_record(record)
    print(json.dumps({k: document[k] for k in ("extract_img_per_s", "ratio_2_to_1", "join")},
                     indent=1))
    return document


def run_linear_head(args: argparse.Namespace) -> dict[str, Any]:
    """Step (f): the ``linear_head`` key, with its run record under ``run``."""
    record = run_record(sys.argv)
    heads = [name for name in args.heads.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="featlt-scaling-heads-") as tmp:
        sizes = bench_linear_head([int(n) for n in args.rows.split(",")], args.dim, heads,
                                  args.epochs, args.memory_budget, Path(tmp))
    return {
        "what": "featlt fit-classifier's code path (featlt.heads.workflow.fit_classifiers, CPU) "
                "on synthetic long-tailed stores: features in memory against --memory-budget, "
                "each run in a fresh process",
        "data": f"SYNTHETIC float32 features, D={args.dim}, {HEAD_CLASSES} isotropic Gaussian "
                f"classes (centres of norm {SEPARATION}, noise N(0, I)), training counts "
                f"exponential with imbalance factor {HEAD_IMBALANCE:g}, stored class by class; "
                f"validation {VAL_PER_CLASS} and held-out test {TEST_PER_CLASS} rows per class "
                "(balanced), stored splits",
        "heads": heads, "memory_budget_mb": args.memory_budget,
        "epochs": args.epochs,
        "epochs_note": f"--max-epochs {args.epochs} for every point of each head's selection "
                       "grid (grid_points: lr x weight decay), early stopping on validation as "
                       "usual",
        "bootstrap": 0,
        "memory": "peak_rss_mb is VmHWM at the end of the run, rss_after_imports_mb VmRSS after "
                  "the run's imports; the budget bounds peak_above_imports_mb",
        "store_verification": "on: every block digest checked as features are read",
        **sizes,
        "run": finish_record(record),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated steps: {', '.join(STEPS)} (default: all)")
    parser.add_argument("--images", type=int, default=1536)
    parser.add_argument("--pinned-images", type=int, default=256)
    parser.add_argument("--decode-images", type=int, default=512)
    parser.add_argument("--rows", default="100000,1000000",
                        help="linear_head: training rows of each synthetic store")
    parser.add_argument("--dim", type=int, default=512, help="linear_head: feature width")
    parser.add_argument("--heads", default="linear,crt", help="linear_head: heads fitted")
    parser.add_argument("--epochs", type=int, default=2,
                        help="linear_head: --max-epochs of every trainable head")
    parser.add_argument("--memory-budget", type=float, default=512.0,
                        help="linear_head: the streamed path's --memory-budget (MB)")
    parser.add_argument("--output", default=str(REPO / "results" / "scaling.json"))
    parser.add_argument("--child-linear-head", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-budget", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_linear_head:
        child_linear_head(args.child_linear_head, args.heads.split(","), args.epochs,
                          args.child_budget, args.child_out)
        return
    steps = [step for step in args.steps.split(",") if step]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if "extract" in steps:
        update_results(Path(args.output), run_extract(args))
    if "linear_head" in steps:
        update_results(Path(args.output), {"linear_head": run_linear_head(args)})


if __name__ == "__main__":
    main()
