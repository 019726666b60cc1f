"""Benchmark of `featlt evaluate-separability` (issue 4), side by side with scikit-learn.

(a) the classwise split (per-class faiss k-means) against scikit-learn doing the same job:
    ``KMeans(n_clusters=K_c, n_init=1, max_iter=<same iterations>, tol=0, algorithm="lloyd")`` on
    the same points; both inertias computed on the full class with the same code;
(b) the full report (read + every score + split plan) on 12,406 x 1,280 features;
(c) the report's time and peak RSS for N = 10k, 100k, 1M rows of D = 512, each in a fresh process.

Features are SYNTHETIC: long-tailed Gaussian classes (CIFAR-10-LT IF100 counts for (a)/(b), each
class a mixture of sub-clusters so the split has structure to find; 100 classes, IF 100 for (c)).
faiss and BLAS run with one thread. The machine may be shared: the load average is recorded.

    python benchmarks/bench_separability.py          # -> results/separability_benchmark.json
    python benchmarks/bench_separability.py --quick  # small sizes, for a smoke test
    python benchmarks/bench_separability.py --device cuda  # featlt's faiss on a GPU
    python benchmarks/bench_separability.py --steps split,report  # skip (c)

Validation rows (for the kNN/NCM validation scores of (b)) come from the same classes as the
training rows: the same class and sub-class centres, other noise draws.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import finish_record, load_average, run_record

REPO = Path(__file__).resolve().parents[1]
SEED = 0
NITER = 20  # Lloyd iterations for both faiss and scikit-learn


STEPS = ("split", "report", "scaling")


def class_structure(n_classes: int, dim: int, n_sub: int = 8, seed: int = SEED) -> np.ndarray:
    """The sub-centres of every class: (n_classes, n_sub, dim) float64.

    Class centres have norm 6; each class has ``n_sub`` sub-centres at offsets of norm 3 from it.
    Training and validation rows are drawn from the same structure, so they share their classes.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, 1, dim))
    centres *= 6.0 / np.linalg.norm(centres, axis=2, keepdims=True)
    offsets = rng.standard_normal((n_classes, n_sub, dim))
    offsets *= 3.0 / np.linalg.norm(offsets, axis=2, keepdims=True)
    return centres + offsets


def substructured_classes(structure: np.ndarray, counts: np.ndarray, seed: int):
    """Class c: ``counts[c]`` rows, each a random sub-centre of class c plus noise N(0, I).

    Returns:
        X (N, dim) float32, y (N,) int64, classes in order.
    """
    rng = np.random.default_rng(seed)
    n_sub, dim = structure.shape[1:]
    parts, labels = [], []
    for c, n in enumerate(counts):
        sub = rng.integers(0, n_sub, n)
        parts.append(structure[c, sub] + rng.standard_normal((n, dim)))
        labels.append(np.full(n, c))
    return np.concatenate(parts).astype(np.float32), np.concatenate(labels).astype(np.int64)


def full_inertia(X: np.ndarray, centroids: np.ndarray) -> float:
    """Sum over all rows of the squared distance to the nearest centroid (float64)."""
    X64, C64 = X.astype(np.float64), centroids.astype(np.float64)
    dist = (X64**2).sum(1)[:, None] - 2 * X64 @ C64.T + (C64**2).sum(1)[None, :]
    return float(np.maximum(dist.min(axis=1), 0).sum())


def bench_split(X: np.ndarray, y: np.ndarray, repeats: int, device: str) -> dict:
    """(a): faiss classwise split vs scikit-learn KMeans, same K_c, same points, same iterations."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from featlt.cluster.splitting import classwise_split, plan_splits

    counts = np.bincount(y)
    k_plan = plan_splits(counts)
    faiss_times, sub_times, balanced_times, sk_times = [], [], [], []
    # The k-means comparison uses plain nearest-centroid assignment (balanced=False), the job
    # scikit-learn does; the default balanced split is timed on its own.
    for _ in range(repeats):
        start = time.perf_counter()
        split = classwise_split(X, y, seed=SEED, niter=NITER, device=device, threads=1,
                                balanced=False)
        faiss_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        sub = classwise_split(X, y, seed=SEED, niter=NITER, device=device, threads=1,
                              max_points_per_centroid=256, balanced=False)
        sub_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        balanced = classwise_split(X, y, seed=SEED, niter=NITER, device=device, threads=1)
        balanced_times.append(time.perf_counter() - start)
    sk_centroids, sk_iters, rnd_centroids, rnd_times = {}, {}, {}, []
    with threadpool_limits(limits=1):
        for init, store, times in (("k-means++", sk_centroids, sk_times),
                                   ("random", rnd_centroids, rnd_times)):
            for _ in range(repeats):
                start = time.perf_counter()
                for c, k in enumerate(k_plan):
                    Xc = X[y == c]
                    if k == 1:
                        store[c] = Xc.mean(axis=0, keepdims=True)
                        continue
                    km = KMeans(n_clusters=int(k), init=init, n_init=1, max_iter=NITER, tol=0,
                                algorithm="lloyd", random_state=SEED).fit(Xc)
                    store[c] = km.cluster_centers_
                    if init == "k-means++":
                        sk_iters[c] = int(km.n_iter_)
                times.append(time.perf_counter() - start)
    per_class = []
    for c, k in enumerate(k_plan):
        if k == 1:
            continue
        Xc = X[y == c]
        per_class.append({
            "class": c, "n": int(Xc.shape[0]), "k": int(k),
            "inertia_faiss": full_inertia(Xc, split.prototypes[split.sub_to_class == c]),
            "inertia_faiss_subsampled": full_inertia(Xc, sub.prototypes[sub.sub_to_class == c]),
            "inertia_sklearn": full_inertia(Xc, sk_centroids[c]),
            "inertia_sklearn_random_init": full_inertia(Xc, rnd_centroids[c]),
            "sklearn_iterations": sk_iters[c],
        })
    total_faiss = sum(r["inertia_faiss"] for r in per_class)
    total_sub = sum(r["inertia_faiss_subsampled"] for r in per_class)
    total_sk = sum(r["inertia_sklearn"] for r in per_class)
    total_rnd = sum(r["inertia_sklearn_random_init"] for r in per_class)
    return {
        "k_per_class": k_plan.tolist(), "niter": NITER, "faiss_device": split.device,
        "faiss_seconds": [round(t, 4) for t in faiss_times],
        "sklearn_seconds": [round(t, 4) for t in sk_times],
        "speedup_vs_sklearn": round(min(sk_times) / min(faiss_times), 2),
        "inertia_ratio_faiss_over_sklearn": round(total_faiss / total_sk, 5),
        "balanced_default": {
            "what": "classwise_split() with its defaults: the same k-means, then a "
                    "size-constrained assignment (sub-class sizes within one of each other) "
                    "and prototypes re-computed as the sub-class means",
            "faiss_seconds": [round(t, 4) for t in balanced_times],
            "imbalance_before": balanced.imbalance_before,
            "imbalance_after": balanced.imbalance_after,
            "imbalance_after_plain_kmeans": split.imbalance_after,
        },
        "subsampled": {
            "what": "classwise_split(max_points_per_centroid=256): faiss trains each class on at "
                    "most 256 points per centroid (its default), all points assigned",
            "faiss_seconds": [round(t, 4) for t in sub_times],
            "speedup_vs_sklearn": round(min(sk_times) / min(sub_times), 2),
            "inertia_ratio_faiss_over_sklearn": round(total_sub / total_sk, 5),
        },
        "sklearn_random_init": {
            "what": "the same scikit-learn call with init='random' (faiss's init); scikit-learn "
                    "stops early once no label changes, even with tol=0",
            "sklearn_seconds": [round(t, 4) for t in rnd_times],
            "speedup_vs_sklearn": round(min(rnd_times) / min(faiss_times), 2),
            "inertia_ratio_faiss_over_sklearn": round(total_faiss / total_rnd, 5),
        },
        "per_class": per_class,
        "baseline": "sklearn.cluster.KMeans(n_clusters=K_c, n_init=1, max_iter=20, tol=0, "
                    "algorithm='lloyd', random_state=0) per class, 1 thread (threadpoolctl); "
                    "init k-means++ (scikit-learn's default) vs faiss's random init",
        "timed": "featlt.cluster.splitting.classwise_split(balanced=False) (whole job, all "
                 "classes) vs the scikit-learn loop over the same classes; min over repeats",
    }


def write_store(path: Path, X: np.ndarray, y: np.ndarray, X_val, y_val, provenance: dict) -> Path:
    from featlt.store.writer import StoreWriter

    names = [f"class_{c}" for c in range(int(y.max()) + 1)]
    with StoreWriter(path, provenance, mode="overwrite") as writer:
        for split, (Xs, ys) in {"train": (X, y), "val": (X_val, y_val)}.items():
            writer.begin_split(split, ys, np.arange(ys.size), names, Xs.shape[1])
            for start in range(0, ys.size, 65536):
                writer.write_rows(split, start, Xs[start:start + 65536])
        writer.mark_complete()
    return path


def bench_report(path: Path, repeats: int, device: str) -> dict:
    """(b): the full report from a store, in this process."""
    from featlt.separability.evaluate import SeparabilityConfig, evaluate_store

    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        report = evaluate_store(path, None, SeparabilityConfig(seed=SEED), device, 1)
        runs.append({"seconds": round(time.perf_counter() - start, 3), "stages": report.timings})
    best = min(runs, key=lambda r: r["seconds"])
    return {"report_seconds": best["seconds"], "runs": runs, "faiss_device": report.faiss,
            "scores": {k: v for k, v in report.scores.items()},
            "n_train": report.data["n_train"], "dim": report.data["dim"],
            "knn_queries": report.knn["n_queries"]}


def write_scaling_store(path: Path, n_rows: int, dim: int = 512, n_classes: int = 100) -> dict:
    """A long-tailed (IF 100) store of about ``n_rows`` rows, generated chunk by chunk."""
    from featlt.data.profiles import long_tail_counts
    from featlt.store.writer import StoreWriter

    ratio = long_tail_counts(10**6, n_classes, 100.0).sum() / 10**6
    counts = long_tail_counts(round(n_rows / ratio), n_classes, 100.0)
    y = np.repeat(np.arange(n_classes), counts)
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((n_classes, dim)).astype(np.float32)
    centres *= 4.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    y_val = np.repeat(np.arange(n_classes), 20)
    names = [f"class_{c}" for c in range(n_classes)]
    provenance = {"backbone": {"arch": "synthetic-gaussian", "dim": dim},
                  "dataset": {"name": "synthetic-lt", "counts": counts.tolist(), "seed": SEED}}
    with StoreWriter(path, provenance, mode="overwrite") as writer:
        for split, labels in (("train", y), ("val", y_val)):
            writer.begin_split(split, labels, np.arange(labels.size), names, dim)
            for start in range(0, labels.size, 65536):
                part = labels[start:start + 65536]
                block = centres[part] + rng.standard_normal((part.size, dim), dtype=np.float32)
                writer.write_rows(split, start, block)
        writer.mark_complete()
    return {"n_train": int(y.size), "n_classes": n_classes, "dim": dim,
            "largest_class": int(counts[0]), "smallest_class": int(counts[-1])}


def child_report(path: Path, device: str) -> None:
    """Run in a fresh process: one report, then print time and peak RSS as JSON."""
    # Warm up the imports the report makes, so that they are not timed.
    import faiss  # noqa: F401
    import scipy.linalg
    import scipy.sparse
    import scipy.special  # noqa: F401
    import sklearn.metrics  # noqa: F401

    from featlt.separability.evaluate import SeparabilityConfig, evaluate_store

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    report = evaluate_store(path, None, SeparabilityConfig(seed=SEED), device, 1)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mb": round(rss_before, 1), "stages": report.timings,
        "knn_queries": report.knn["n_queries"], "faiss_device": report.faiss["device"],
    }))


def bench_scaling(sizes: list[int], workdir: Path, device: str) -> dict:
    """(c): time and peak RSS of the report per N, each report in a fresh process."""
    out = {}
    for n in sizes:
        path = workdir / f"scaling_{n}.h5"
        meta = write_scaling_store(path, n)
        load_before = load_average()
        proc = subprocess.run(
            [sys.executable, __file__, "--child-report", str(path), "--device", device],
            check=True,
            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result.update(meta, features_mb=round(meta["n_train"] * meta["dim"] * 4 / 2**20, 1),
                      load_average_before=load_before)
        out[str(n)] = result
        path.unlink()
        print(f"  N={meta['n_train']}: {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB",
              flush=True)
    keys = list(out)
    for a, b in itertools.pairwise(keys):
        out[b]["seconds_ratio_to_previous"] = round(out[b]["seconds"] / out[a]["seconds"], 2)
        out[b]["rows_ratio_to_previous"] = round(out[b]["n_train"] / out[a]["n_train"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path,
                        default=REPO / "results" / "separability_benchmark.json")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", default="10000,100000,1000000")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="faiss device for featlt (scikit-learn always runs on the CPU)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="comma-separated steps to run: split (a), report (b), scaling (c)")
    parser.add_argument("--child-report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_report:
        child_report(args.child_report, args.device)
        return
    steps = [step for step in args.steps.split(",") if step]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")

    import faiss
    import sklearn

    from featlt.data.profiles import long_tail_counts
    from featlt.runtime import write_json_atomic

    record = run_record(sys.argv)
    n_max, dim, sizes = (500, 128, [2000, 8000]) if args.quick else (
        5000, 1280, [int(s) for s in args.scaling.split(",")])
    counts = long_tail_counts(n_max, 10, 100.0)
    structure = class_structure(counts.size, dim)
    X, y = substructured_classes(structure, counts, seed=SEED)
    split = report = scaling = None
    if "split" in steps:
        print(f"(a) classwise split on {X.shape[0]} x {dim} ...", flush=True)
        split = bench_split(X, y, args.repeats, args.device)
        print(f"    speedup {split['speedup_vs_sklearn']}x, inertia ratio "
              f"{split['inertia_ratio_faiss_over_sklearn']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="featlt-bench-") as tmp:
        workdir = Path(tmp)
        if "report" in steps:
            X_val, y_val = substructured_classes(structure, np.full(counts.size, 20), seed=SEED + 1)
            store = write_store(workdir / "cifar10lt_shape.h5", X, y, X_val, y_val,
                                {"backbone": {"arch": "synthetic-substructured", "dim": dim},
                                 "dataset": {"name": "synthetic CIFAR-10-LT IF100 shape",
                                             "counts": counts.tolist(), "seed": SEED}})
            print("(b) full report ...", flush=True)
            report = bench_report(store, max(2, args.repeats - 1), args.device)
            print(f"    {report['report_seconds']} s", flush=True)
        if "scaling" in steps:
            print("(c) scaling ...", flush=True)
            scaling = bench_scaling(sizes, workdir, args.device)
    results = {
        "steps_run": steps,
        "speedup_vs_sklearn": split and split["speedup_vs_sklearn"],
        "inertia_ratio_faiss_over_sklearn": split and split["inertia_ratio_faiss_over_sklearn"],
        "report_seconds": report and report["report_seconds"],
        "scaling": scaling,
        "threads": 1,
        "split": split,
        "report": report,
        "config": {
            "data": "SYNTHETIC long-tailed features (not a backbone's): (a)/(b) CIFAR-10-LT IF100 "
                    f"counts {counts.tolist()} x D={dim}, each class 8 Gaussian sub-clusters; "
                    "(c) 100 Gaussian classes, IF 100, D=512, validation 20 per class",
            "seed": SEED, "niter": NITER, "quick": args.quick,
            "validation": "20 rows per class drawn from the training classes' own sub-centres "
                          f"(noise seed {SEED + 1})",
            "report_config": "featlt.separability.evaluate.SeparabilityConfig() defaults",
            "device": args.device, "repeats": args.repeats,
        },
        "environment": {
            "numpy": np.__version__, "faiss": faiss.__version__, "sklearn": sklearn.__version__,
            "machine": platform.machine(),
            "note": "shared 2-core machine (other engineers running); timings are noisy",
        },
        "run": finish_record(record),
    }
    write_json_atomic(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
