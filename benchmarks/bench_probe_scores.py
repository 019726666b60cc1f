"""Cost of the candidate probe scores of issue 17 (item 3) beside LogME, on one synthetic file.

Times, in one process and on the same data:

- ``ridge_probe``: the class-balanced ridge probe with closed-form leave-one-out predictions over
  its default grid (:mod:`featlt.separability.scores.ridge_probe`);
- ``cv_head``: the 5-fold cross-validated logit-adjusted linear head, 30 epochs per fold
  (:mod:`featlt.rank.cv_head_score`);
- ``logme`` and ``logme_balanced``: featlt's existing LogME scores, the baseline;
- ``cheap_mode``: ``featlt rank``'s cheap mode on one file holding the same training rows (its
  every score, the opt-in ones included, timed part by part: the separability report's steps,
  SFDA, each opt-in score), the number the issue's 30 s budget is about.

Features are SYNTHETIC: 17,000 x 1,280 float32, 10 isotropic Gaussian classes
(:func:`featlt.data.synthetic.gaussian_classes`) with long-tailed counts at imbalance factor 100
(``long_tail_counts(6852, 10, 100)``, 17,001 rows). BLAS runs with ``--threads`` threads
(threadpoolctl, as the separability report does; default 2); each score is called
``--repeats`` times (default 3) and every wall time is kept; the head's training loop uses
torch's CPU thread count of featlt's training config (1). The machine may be shared: the load
average is recorded. The issue's budget: cheap mode <= 30 s per file at 17k x 1280.

    python benchmarks/bench_probe_scores.py           # -> results/probe_scores_cost.json
    python benchmarks/bench_probe_scores.py --quick   # 2,000 x 128, for a smoke test (no file)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import finish_record, run_record

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "results" / "probe_scores_cost.json"
SEED = 0


def timed(fn: Any, *args: Any, repeats: int = 3, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` ``repeats`` times; the last output and the wall times (the first call is cold:
    imports, page faults; on a shared machine the median is the number to quote)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(round(time.perf_counter() - start, 3))
    return out, {"seconds_median": float(np.median(times)), "seconds_min": min(times),
                 "seconds_each": times}


def cheap_mode(counts: np.ndarray, dim: int, threads: int, repeats: int) -> dict[str, Any]:
    """``featlt rank`` cheap mode on one synthetic store of ``counts`` training rows (C,) at
    ``dim`` dimensions (the generator of :func:`main`, 20 validation rows per class), with
    every opt-in score: the wall time per file and each part's seconds, per repeat."""
    import tempfile

    from featlt.data.protocol import Protocol
    from featlt.data.synthetic import write_synthetic_store
    from featlt.rank.model import OPTIONAL_SCORES, RankConfig
    from featlt.rank.ranking import rank_files

    runs = []
    with tempfile.TemporaryDirectory(prefix="featlt-cheap-mode-") as folder:
        path = write_synthetic_store(Path(folder) / "one.h5", n_classes=counts.size,
                                     n_max=int(counts.max()), imbalance_factor=float(
                                         counts.max() / counts.min()), dim=dim, separation=4.0,
                                     n_test_per_class=50, n_val_per_class=20, seed=SEED)
        config = RankConfig(optional=tuple(OPTIONAL_SCORES))
        for _ in range(repeats):
            start = time.perf_counter()
            document = rank_files([path], Protocol(seed=SEED), config, device="cpu",
                                  threads=threads)
            wall = round(time.perf_counter() - start, 3)
            row = document["rows"][0]
            report = document["separability"][row["label"]]
            parts = dict(report["timings"])
            for name, detail in report.get("candidate_scores", {}).items():
                parts[name] = detail["seconds"]
            runs.append({"wall_seconds": wall, "score_seconds": row["score_seconds"],
                         "parts_seconds": parts})
    return {"rows": int(counts.sum()), "dim": dim, "optional": list(OPTIONAL_SCORES),
            "runs": runs}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per score")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv[1:])
    record = run_record(argv)

    import threadpoolctl
    import torch

    from featlt.data.profiles import long_tail_counts
    from featlt.data.synthetic import gaussian_classes
    from featlt.rank.cv_head_score import CV_HEAD_PARAMS, DEFAULT_FOLDS, cv_head_score
    from featlt.separability.scores.logme import balanced_logme, logme
    from featlt.separability.scores.ridge_probe import ridge_probe

    n_max, dim = (800, 128) if args.quick else (6852, 1280)
    counts = long_tail_counts(n_max, 10, 100)
    data = gaussian_classes(counts, dim=dim, separation=4.0, noise=1.0, seed=SEED)
    X, y = data.X, data.y
    results: dict[str, Any] = {}
    with threadpoolctl.threadpool_limits(limits=args.threads):
        probe, seconds = timed(ridge_probe, X, y, repeats=args.repeats)
        results["ridge_probe"] = {
            **seconds, "balanced_accuracy": probe.balanced_accuracy,
            "tail_recall": probe.tail_recall, "best_lambda": probe.best_lambda,
            "best_relative_lambda": probe.best_lambda / probe.eigen_scale,
            "at_grid_edge": probe.at_grid_edge, "grid_size": int(probe.grid.size),
            "form": probe.form,
        }
        print(f"ridge_probe {results['ridge_probe']}", flush=True)
        cv, seconds = timed(cv_head_score, X, y, seed=SEED, repeats=args.repeats)
        results["cv_head"] = {
            **seconds, "balanced_accuracy": cv.balanced_accuracy,
            "tail_recall": cv.tail_recall, "n_folds": DEFAULT_FOLDS,
            "max_epochs": CV_HEAD_PARAMS["max_epochs"],
            "fold_balanced_accuracies": cv.fold_balanced_accuracies.tolist(),
        }
        print(f"cv_head {results['cv_head']}", flush=True)
        for name, fn in (("logme", logme), ("logme_balanced", balanced_logme)):
            value, seconds = timed(fn, X, y, repeats=args.repeats)
            results[name] = {**seconds, "score": value.score}
            print(f"{name} {results[name]}", flush=True)
    results["cheap_mode"] = cheap_mode(counts, dim, args.threads, args.repeats)
    print(f"cheap_mode {results['cheap_mode']}", flush=True)
    out = {
        "kind": "probe_scores_cost",
        "issue": 17,
        "data": {"synthetic": "gaussian_classes(long_tail_counts(n_max, 10, 100), separation=4, "
                              "noise=1)", "rows": int(y.size), "dim": int(dim),
                 "dtype": str(X.dtype), "counts": counts.tolist(), "imbalance_factor": 100},
        "threads": {"blas": args.threads, "torch_training": 1,
                    "torch_default": torch.get_num_threads()},
        "budget_seconds_per_file_cheap_mode": 30,
        "scores": results,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "run": finish_record(record),
    }
    if args.quick:
        print(json.dumps(out, indent=2))
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
