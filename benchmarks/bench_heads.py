"""Benchmark: featlt's long-tail heads against scikit-learn LogisticRegression, one run.

    python benchmarks/bench_heads.py FEATURES.h5 [-o results/heads_cifar10lt.json]

FEATURES.h5 holds a balanced stored train split (the pool), a test split and no val split, e.g.
CIFAR-10 features of EfficientNet-Lite0 at 160 px written by ``featlt extract``. The long-tailed
training set is the ``cao2019`` IF100 index view; validation is 20 images per class from training
images outside it (docs/methods.md); the whole test split is scored once per method.

Measured side by side, each with its hyper-parameters chosen on the same validation rows:

- every established featlt head (``featlt fit-classifier --head all`` less the seed methods
  DLSA, CWS and CIBL, which ``bench_seed_methods.py`` measures), ``fit_seconds`` = its selection
  grid, early stopping and temperature (and its base head's for post-hoc wrappers);
- ``sklearn_logreg``: LogisticRegression (lbfgs) on standardised features, C from ``C_GRID``;
- ``sklearn_logreg_balanced``: the same with ``class_weight="balanced"``;
- ``sklearn_logreg_posthoc_la``: the plain fits with post-hoc logit adjustment, (C, tau) jointly;
- the balanced-data ceiling: the best head's procedure (best by *validation* balanced accuracy)
  on a balanced training set of the same size (``--ceiling-per-class`` images per class).

The best head and the best baseline are both chosen by validation balanced accuracy; test
scores never choose anything.

Writes one JSON document (atomically) with every number, the goals and the configuration.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # LogisticRegression's inverse regularisation
LR_MAX_ITER = 1000
SEED_METHODS = ("dlsa", "cws", "cibl")  # benchmarked by bench_seed_methods.py
REPORTED = ("accuracy", "balanced_accuracy", "balanced_accuracy_ci", "head_third", "mid_third",
            "tail_third", "many", "medium", "few", "worst_class_accuracy", "macro_f1", "nll",
            "ece")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path, help="feature store (.h5) written by featlt")
    parser.add_argument("-o", "--output", type=Path, default=Path("results/heads_cifar10lt.json"))
    parser.add_argument("--profile", default="cao2019", choices=("cao2019", "first"))
    parser.add_argument("--imbalance-factor", type=float, default=100.0)
    parser.add_argument("--ceiling-per-class", type=int, default=1240)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    return parser.parse_args(argv)


def pick(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in REPORTED}


def logreg_grid(arrays: Any, class_weight: str | None, seed: int) -> dict[str, Any]:
    """Standardise, fit LogisticRegression for every C in ``C_GRID``; keep the best on val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from featlt.heads.selection import val_score

    start = time.perf_counter()
    scaler = StandardScaler().fit(arrays.X_train)
    Xtr, Xva = scaler.transform(arrays.X_train), scaler.transform(arrays.X_val)
    runs = []
    for C in C_GRID:
        t0 = time.perf_counter()
        model = LogisticRegression(C=C, class_weight=class_weight, max_iter=LR_MAX_ITER,
                                   random_state=seed).fit(Xtr, arrays.y_train)
        score = val_score(model.decision_function(Xva), arrays.y_val)
        runs.append({"C": C, "model": model, "val": score, "seconds": time.perf_counter() - t0})
    best = max(runs, key=lambda r: (r["val"][0], -r["val"][1]))
    return {"scaler": scaler, "runs": runs, "best": best, "seconds": time.perf_counter() - start}


def logreg_baselines(arrays: Any, seed: int, n_bootstrap: int) -> dict[str, Any]:
    """The three scikit-learn baselines, C (and tau) chosen on validation balanced accuracy."""
    from scipy.special import softmax

    from featlt.evaluation.metrics import evaluate
    from featlt.heads.registry import TAU_GRID
    from featlt.heads.selection import val_score

    def report(proba: np.ndarray, seconds: float, val: float, selected: dict) -> dict[str, Any]:
        metrics = evaluate(arrays.y_test, proba, arrays.train_counts, n_bootstrap, seed)
        return {**pick(metrics), "fit_seconds": seconds, "val_balanced_accuracy": val,
                "selected": selected}

    out: dict[str, Any] = {}
    grids = {}
    for name, class_weight in (("sklearn_logreg", None), ("sklearn_logreg_balanced", "balanced")):
        grid = grids[name] = logreg_grid(arrays, class_weight, seed)
        best = grid["best"]
        proba = best["model"].predict_proba(grid["scaler"].transform(arrays.X_test))
        out[name] = report(proba, grid["seconds"], best["val"][0], {
            "C": best["C"], "n_iter": int(best["model"].n_iter_.max())})
        out[name]["candidates"] = [{"C": r["C"], "val_balanced_accuracy": r["val"][0],
                                    "fit_seconds": r["seconds"]} for r in grid["runs"]]
    # Post-hoc logit adjustment over the plain fits: (C, tau) chosen jointly on validation.
    grid = grids["sklearn_logreg"]
    start = time.perf_counter()
    log_prior = np.log(arrays.train_counts / arrays.train_counts.sum())
    Xva = grid["scaler"].transform(arrays.X_val)
    candidates = []
    for run in grid["runs"]:
        logits = run["model"].decision_function(Xva)
        for tau in TAU_GRID:
            candidates.append((val_score(logits - tau * log_prior, arrays.y_val), tau, run))
    (val, _), tau, run = max(candidates, key=lambda c: (c[0][0], -c[0][1]))
    sweep = time.perf_counter() - start
    logits = run["model"].decision_function(grid["scaler"].transform(arrays.X_test))
    # cost: the plain fits (every C) plus the tau sweep
    out["sklearn_logreg_posthoc_la"] = report(
        softmax(logits - tau * log_prior, axis=1), grid["seconds"] + sweep, val,
        {"C": run["C"], "tau": tau})
    return out


def machine(start: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run record of benchmarks/common.py (commit, command, host, cores, load average, date)
    and torch's settings: taken at the start without ``start``, finished when given it."""
    import torch
    from common import finish_record, run_record

    run = run_record(sys.argv) if start is None else finish_record(start)
    return {**run, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from featlt.data.protocol import Protocol, load_arrays
    from featlt.heads.registry import list_heads
    from featlt.heads.workflow import fit_classifiers
    from featlt.runtime import write_json_atomic
    from featlt.store.feature_store import FeatureStore

    args = parse_args(argv)
    protocol = Protocol(profile=args.profile, imbalance_factor=args.imbalance_factor,
                        seed=args.seed)
    with FeatureStore(args.features) as store:
        arrays = load_arrays(store, protocol)
    config = {"features": str(args.features), "protocol": arrays.provenance["view"],
              "feature_provenance": arrays.provenance["features"], "c_grid": list(C_GRID),
              "lr_max_iter": LR_MAX_ITER, "device": args.device, "seed": args.seed,
              "bootstrap": args.bootstrap, "machine_start": machine()}
    print(f"train {arrays.X_train.shape}  val {arrays.X_val.shape}  test {arrays.X_test.shape}",
          file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        names = [name for name in list_heads() if name not in SEED_METHODS]
        summary = fit_classifiers(args.features, names, Path(tmp) / "lt", protocol,
                                  device=args.device, seed=args.seed,
                                  n_bootstrap=args.bootstrap)
        heads_seconds = time.perf_counter() - start
        heads = {name: {**{k: row.get(k) for k in REPORTED}, "fit_seconds": row["fit_seconds"],
                        "val_balanced_accuracy": row["val_balanced_accuracy"],
                        "selected": row["selected"]}
                 for name, row in summary["heads"].items()}
        print(f"{len(names)} established heads: {heads_seconds:.1f} s", file=sys.stderr)
        best = max(heads, key=lambda n: heads[n]["val_balanced_accuracy"])
        ceiling_protocol = Protocol(profile="balanced", balanced_per_class=args.ceiling_per_class,
                                    seed=args.seed)
        ceiling = fit_classifiers(args.features, [best], Path(tmp) / "ceiling",
                                  ceiling_protocol, device=args.device, seed=args.seed,
                                  n_bootstrap=args.bootstrap)
    row = ceiling["heads"][best]
    balanced_ceiling = {"head": best, **{k: row.get(k) for k in REPORTED},
                        "fit_seconds": row["fit_seconds"], "selected": row["selected"],
                        "protocol": ceiling["provenance"]["view"]}
    baselines = logreg_baselines(arrays, args.seed, args.bootstrap)
    best_baseline = max(baselines, key=lambda n: baselines[n]["val_balanced_accuracy"])
    bacc = heads[best]["balanced_accuracy"]
    linear, logreg = heads["linear"], baselines["sklearn_logreg"]
    goals = {
        "best_head_by_validation": best,
        # for information only: what a choice on test would have picked
        "best_head_by_test": max(heads, key=lambda n: heads[n]["balanced_accuracy"]),
        "best_baseline_by_validation": best_baseline,
        "margin_over_best_baseline": bacc - baselines[best_baseline]["balanced_accuracy"],
        "beats_best_baseline_by_1_point": bacc - baselines[best_baseline]["balanced_accuracy"]
        >= 0.01,
        "ratio_to_ceiling": bacc / row["balanced_accuracy"],
        "reaches_0.97_of_ceiling": bacc / row["balanced_accuracy"] >= 0.97,
        # --head all less the seed methods (selection, test evaluation, saving)
        "established_heads_seconds": heads_seconds,
        "established_heads_under_5_minutes": heads_seconds < 300,
        "linear_speedup_over_logreg": logreg["fit_seconds"] / linear["fit_seconds"],
        "linear_minus_logreg_balanced_accuracy": linear["balanced_accuracy"]
        - logreg["balanced_accuracy"],
        "linear_5x_faster_within_half_a_point":
            logreg["fit_seconds"] / linear["fit_seconds"] >= 5
            and linear["balanced_accuracy"] >= logreg["balanced_accuracy"] - 0.005,
    }
    config["machine_end"] = machine(config["machine_start"])
    document = {"heads": heads, "baselines": baselines, "balanced_ceiling": balanced_ceiling,
                "goals": goals, "established_heads_seconds": heads_seconds,
                "config": config}
    write_json_atomic(args.output, document)
    print(f"wrote {args.output}", file=sys.stderr)
    for name, values in {**heads, **baselines}.items():
        print(f"{name:<26} bal.acc {values['balanced_accuracy']:.4f}  acc "
              f"{values['accuracy']:.4f}  fit {values['fit_seconds']:7.1f} s", file=sys.stderr)
    print(f"ceiling ({best}) {row['balanced_accuracy']:.4f}", file=sys.stderr)
    return document


if __name__ == "__main__":
    main()
