"""Benchmark of `featlt evaluate-separability` (issue 4), side by side with scikit-learn.

(a) the classwise split (per-class faiss k-means) against scikit-learn doing the same job:
    ``KMeans(n_clusters=K_c, n_init=1, max_iter=<same iterations>, tol=0, algorithm="lloyd")`` on
    the same points; both inertias computed on the full class with the same code;
(b) the full report (read + every score + split plan) on 12,406 x 1,280 features;
(c) issue 19 item 4: the report's time, peak RSS and stage seconds for N = 100k and 1M rows of
    D = 512 (100 classes), each report in a fresh process, in four modes side by side: the
    baseline (featlt before issue 19's report work), the exact computation (``--exact``), the
    default (fast) and the default under ``--memory-budget 512``; each mode's scores against the
    exact ones (kNN balanced accuracy, LogME, NMI, k-means objectives, kNN recall), pass/fail
    against the goals (15 s at 100k, 120 s at 1M); the default's numbers also go to the
    ``separability`` key of results/scaling.json (its other keys are kept).

Features are SYNTHETIC: long-tailed Gaussian classes (CIFAR-10-LT IF100 counts for (a)/(b), each
class a mixture of sub-clusters so the split has structure to find; 100 classes, IF 100 for (c)).
faiss and BLAS run with one thread. The machine may be shared: the load average is recorded.

    python benchmarks/bench_separability.py          # -> results/separability_benchmark.json
    python benchmarks/bench_separability.py --quick  # small sizes, for a smoke test
    python benchmarks/bench_separability.py --device cuda  # featlt's faiss on a GPU
    python benchmarks/bench_separability.py --steps split,report  # skip (c)
    flock /tmp/featlt-heavy.lock python3 benchmarks/bench_separability.py --steps scaling

Validation rows (for the kNN/NCM validation scores of (b)) come from the same classes as the
training rows: the same class and sub-class centres, other noise draws.
"""

from __future__ import annotations

import argparse
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


DEFAULT_OUT = REPO / "results" / "separability_benchmark.json"
BASELINE_COMMIT = "e4511b5790d095cfda0b7eda73cc50f8dbd57785"  # featlt before issue 19's report work
MODES = ("baseline", "exact", "fast", "budget")
GOALS = {"seconds": {"100000": 15.0, "1000000": 120.0}, "knn_bacc_points": 0.5,
         "logme_relative": 1e-3, "nmi": 0.01, "kmeans_objective_relative": 0.01}
BUDGET_MB = 512.0


def child_report(path: Path, device: str, mode: str) -> None:
    """Run in a fresh process: one report in ``mode``, then print time, peak RSS and what the
    tolerances are computed from as JSON.

    ``baseline`` runs featlt as of :data:`BASELINE_COMMIT` (the parent puts its source first
    on PYTHONPATH); ``exact`` is ``SeparabilityConfig(exact=True)``; ``fast`` the default;
    ``budget`` the default under ``--memory-budget`` :data:`BUDGET_MB`.
    """
    # Warm up the imports the report makes, so that they are not timed.
    import faiss  # noqa: F401
    import scipy.linalg
    import scipy.sparse
    import scipy.special  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch  # noqa: F401

    import featlt
    from featlt.separability.evaluate import SeparabilityConfig, evaluate_store

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open("/proc/self/status") as status:
        rss_now = next(int(line.split()[1]) / 1024 for line in status
                       if line.startswith("VmRSS:"))
    start = time.perf_counter()
    if mode == "baseline":
        report = evaluate_store(path, None, SeparabilityConfig(seed=SEED), device, 1)
    else:
        config = SeparabilityConfig(seed=SEED, exact=mode == "exact")
        report = evaluate_store(path, None, config, device, 1,
                                BUDGET_MB if mode == "budget" else None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "mode": mode, "featlt_source": str(Path(featlt.__file__).parent),
        "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1),
        "rss_after_imports_mb": round(rss_now, 1),
        "peak_above_imports_mb": round(peak - max(rss_before, rss_now), 1),
        "stages": report.timings, "scores": report.scores,
        "knn_queries": report.knn["n_queries"], "knn_search": report.knn.get("search"),
        "clustering_inertia": report.clustering["inertia"],
        "split_objective_per_row": report.split_plan.get("objective_per_row"),
        "densest_fraction": report.densest_fraction["groups"],
        "memory_budget": (report.input or {}).get("memory_budget"),
        "faiss_device": report.faiss["device"],
    }, default=float))


def commit_source(workdir: Path, commit: str) -> Path:
    """featlt's source at ``commit``, unpacked with ``git archive`` (no checkout): the reports
    run the committed code, whatever the working tree holds meanwhile."""
    folder = workdir / commit
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "featlt"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def tolerances(reference: dict, other: dict) -> dict:
    """What item 4 bounds, ``other`` against ``reference`` (the exact computation)."""
    ref, got = reference["scores"], other["scores"]
    knn = max(abs(got[k] - ref[k]) * 100 for k in ("knn_balanced_accuracy",
                                                    "knn_balanced_accuracy_val"))
    logme = max(abs(got[k] - ref[k]) / abs(ref[k]) for k in ("logme", "logme_balanced"))
    objective = abs(other["clustering_inertia"] / reference["clustering_inertia"] - 1)
    split = None
    if reference["split_objective_per_row"] and other["split_objective_per_row"]:
        split = abs(other["split_objective_per_row"] / reference["split_objective_per_row"] - 1)
    dense = max(abs(other["densest_fraction"][g]["share_dense"]
                    - reference["densest_fraction"][g]["share_dense"])
                for g in reference["densest_fraction"] if reference["densest_fraction"][g])
    values = {
        "knn_bacc_points": round(knn, 3), "logme_relative": logme,
        "nmi": round(abs(got["nmi"] - ref["nmi"]), 5),
        "kmeans_objective_relative": round(objective, 6),
        "split_objective_relative": None if split is None else round(split, 6),
        "ncm_bacc_points": round(abs(got["ncm_balanced_accuracy"]
                                     - ref["ncm_balanced_accuracy"]) * 100, 4),
        "gbc_relative": abs(got["gbc"] / ref["gbc"] - 1),
        "densest_share_abs": round(dense, 4),
        "knn_recall_at_k": (other.get("knn_search") or {}).get("recall_at_k"),
    }
    bounded = ["knn_bacc_points", "logme_relative", "nmi", "kmeans_objective_relative"]
    values["within_goals"] = all(values[k] <= GOALS[k] for k in bounded) and (
        split is None or split <= GOALS["kmeans_objective_relative"])
    return values


def run_child(path: Path, device: str, mode: str, source: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(source)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child-report", str(path), "--device", device,
         "--mode", mode], check=True, capture_output=True, text=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_scaling(
    sizes: list[int], workdir: Path, device: str, modes: list[str], commit: str
) -> dict:
    """(c): each mode's report per N, each in a fresh process running featlt as of ``commit``
    (the baseline: :data:`BASELINE_COMMIT`); tolerances against ``exact``."""
    sources = {"baseline": commit_source(workdir, BASELINE_COMMIT)} if "baseline" in modes else {}
    current = commit_source(workdir, commit)
    out = {}
    for n in sizes:
        path = workdir / f"scaling_{n}.h5"
        meta = write_scaling_store(path, n)
        entry: dict = {**meta, "features_mb": round(meta["n_train"] * meta["dim"] * 4 / 2**20, 1)}
        for mode in modes:
            load_before = load_average()
            result = run_child(path, device, mode, sources.get(mode, current))
            result["load_average_before"] = load_before
            entry[mode] = result
            print(f"  N={meta['n_train']} {mode}: {result['seconds']} s, peak RSS "
                  f"{result['peak_rss_mb']} MB", flush=True)
        if "exact" in entry:
            entry["tolerances"] = {mode: tolerances(entry["exact"], entry[mode])
                                   for mode in ("fast", "budget", "baseline") if mode in entry}
        goal = GOALS["seconds"].get(str(n))
        if goal is not None and "fast" in entry:
            entry["goal_seconds"] = goal
            entry["fast_within_goal_seconds"] = entry["fast"]["seconds"] <= goal
        out[str(n)] = entry
        path.unlink()
    return out


def scaling_summary(scaling: dict) -> dict:
    """The ``separability`` entry of results/scaling.json: the default (fast) report per N."""
    summary: dict = {"memory_budget_mb": BUDGET_MB}
    for n, entry in scaling.items():
        fast = entry.get("fast")
        if fast is None:
            continue
        summary[n] = {
            "n_train": entry["n_train"], "seconds": fast["seconds"],
            "peak_rss_mb": fast["peak_rss_mb"],
            "tolerances": (entry.get("tolerances") or {}).get("fast"),
            "exact": entry.get("exact") and {"seconds": entry["exact"]["seconds"],
                                             "peak_rss_mb": entry["exact"]["peak_rss_mb"]},
            "baseline": entry.get("baseline") and {
                "seconds": entry["baseline"]["seconds"],
                "peak_rss_mb": entry["baseline"]["peak_rss_mb"], "commit": BASELINE_COMMIT},
            "memory_budget": entry.get("budget") and {
                "seconds": entry["budget"]["seconds"],
                "peak_rss_mb": entry["budget"]["peak_rss_mb"],
                "peak_above_imports_mb": entry["budget"]["peak_above_imports_mb"],
                "tolerances": (entry.get("tolerances") or {}).get("budget")},
            "within_goal_seconds": entry.get("fast_within_goal_seconds"),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", default="100000,1000000")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="faiss device for featlt (scikit-learn always runs on the CPU)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="comma-separated steps to run: split (a), report (b), scaling (c)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="(c) reports per N: baseline (featlt before issue 19), exact, fast "
                             f"(the default), budget (--memory-budget {BUDGET_MB:g})")
    parser.add_argument("--child-report", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="fast", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_report:
        child_report(args.child_report, args.device, args.mode)
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
            scaling = bench_scaling(sizes, workdir, args.device,
                                    [m for m in args.modes.split(",") if m],
                                    record["git_commit"] or "HEAD")
    # A step not run keeps its previous result (with the run record it was measured under).
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    run = finish_record(record)
    kept = {step: previous.get("runs_by_step", {}).get(step, previous.get("run"))
            for step in STEPS if step not in steps}
    results = {
        "steps_run": steps,
        "speedup_vs_sklearn": split["speedup_vs_sklearn"] if split else previous.get(
            "speedup_vs_sklearn"),
        "inertia_ratio_faiss_over_sklearn": split["inertia_ratio_faiss_over_sklearn"] if split
        else previous.get("inertia_ratio_faiss_over_sklearn"),
        "report_seconds": report["report_seconds"] if report else previous.get("report_seconds"),
        "scaling": scaling if scaling is not None else previous.get("scaling"),
        "threads": 1,
        "split": split or previous.get("split"),
        "report": report or previous.get("report"),
        "goals": GOALS,
        "scaling_modes": {
            "baseline": f"featlt at {BASELINE_COMMIT} (before issue 19's report work), run from "
                        "its source unpacked with git archive",
            "exact": "SeparabilityConfig(exact=True): exact float32 kNN search, density mixture "
                     "and classwise split on every row (the reference of the tolerances)",
            "fast": "the default: kNN by bfloat16 candidates re-ranked exactly, density and "
                    "split on drawn rows",
            "budget": f"the default under --memory-budget {BUDGET_MB:g} (rows read by chunks)",
        },
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
        "run": run,
        "runs_by_step": {**{step: run for step in steps}, **kept},
    }
    write_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    if scaling is not None and not args.quick and args.out == DEFAULT_OUT:
        scaling_path = REPO / "results" / "scaling.json"
        document = json.loads(scaling_path.read_text()) if scaling_path.exists() else {}
        document["separability"] = {**scaling_summary(scaling), "run": run,
                                    "details": "results/separability_benchmark.json (scaling)"}
        write_json_atomic(scaling_path, document)
        print(f"wrote the separability key of {scaling_path}")


if __name__ == "__main__":
    main()
