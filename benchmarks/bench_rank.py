"""Benchmark: does featlt's ranking score pick the backbone that reaches the best long-tail
accuracy?

    python3 benchmarks/bench_rank.py --dataset cifar10lt_if100 [--dataset fmnistlt_if100]
    python3 benchmarks/bench_rank.py --smoke            # synthetic stores, end to end, < 1 min

For each dataset, every complete feature set of the zoo (``~/.cache/featlt/zoo/<dataset>/*.h5``,
made by ``benchmarks/zoo_features.py``, which re-creates missing ones) is ranked by
:func:`featlt.rank.ranking.rank_files` in full mode with validation, through the same index view
the zoo was extracted for:

- ``cifar10lt_if100``: ``cao2019`` IF100, validation 20 per class outside the subset, a balanced
  5,000-image test subset (``--test-per-class 500``);
- ``fmnistlt_if100``: ``first`` profile, n_max 6,000, IF100, the same validation and test subset.

Heads: a fixed list of cheaper established heads (``BENCH_HEADS``; all 12 do not fit the CPU
budget: about 3 minutes per feature set on a quiet 2-core machine), each selected on
validation; the measured value of a backbone is the test balanced accuracy of its best
validation-selected head. Each dataset runs in one turn of the shared lock
(``/tmp/featlt-heavy.lock``); the heads of each feature set are saved under ``--heads-dir`` as soon
as they are fitted (partial results: a rerun reuses them), then the ranking is validated.

The truth (issue 17, item 2): the ranking is run once per view seed (``--view-seeds``, default
0-2, all stored by the zoo's ``--view-seeds 0-4``). A view seed draws the 20 validation images
per class (outside the long-tailed subset); the training subset (``cao2019``: Cao et al.'s fixed
shuffle; ``first``: stored order) and the balanced test subset (``TEST_SUBSET_SEED`` in
``featlt/data/protocol.py``) are the same images for every seed, which :func:`pooled_validation`
checks. The heads' own seed is the view seed too, so the truth averages the noise of the
validation draw and of the heads' initialisation. The measured accuracy of a backbone is the
mean over the seeds of the test balanced accuracy of its validation-selected head, with a
percentile interval from one paired bootstrap of the test images shared by every backbone and
every seed; a pair is resolvable when the interval of the seed-pooled difference excludes 0
(:mod:`featlt.rank.resolvable`). Every score (those of the first seed's document; the training
rows they are computed on do not depend on the seed) is validated against it: tau-b, weighted
tau, regret, and the resolvable-pair accuracy with its Wilson interval. The heads of every seed
go to the same ``--heads-dir`` (each folder is keyed by its view), so seed 0 reuses the heads
of earlier runs.

Writes ``results/ranking_validation.json`` (updated per dataset: every score's Kendall tau-b,
weighted tau, interval, pretrained-only and tail-third tau, top-1 regret; the formula and the
commit that fixed it; the goal checks; the run record) and, under ``results/ranking/``, each
dataset's ranking (``<dataset>.csv``, ``<dataset>.txt``, the full document ``<dataset>.json``),
the plot of every score against measured balanced accuracy (``<dataset>_scores.png``) and the
rank-correlation table (``rank_correlation.md``). The seed-pooled validation is under
``<dataset>.pooled``.

``--smoke`` writes four synthetic stores (class separation 1, 2, 3, 5) under ``--work`` (default:
a new temporary folder) and runs the same steps on them (one cheap head, a carved validation
split that each view seed draws anew), writing every output there, never to ``results/``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import finish_record, run_record

CACHE = Path(os.environ.get("FEATLT_CACHE", Path.home() / ".cache" / "featlt"))
LOCK = "/tmp/featlt-heavy.lock"
RESULTS = Path(__file__).resolve().parents[1] / "results"
# The commit that fixed featlt's formula in results/README.md, before any Fashion-MNIST result.
FORMULA_COMMIT = "6eef1be49f6f4518760b4ac277f858f37342b5eb"
BENCH_HEADS = ("linear", "crt", "balanced_softmax", "ldam_drw", "ncm_cosine", "posthoc_la")
PROTOCOLS: dict[str, dict[str, Any]] = {
    "cifar10lt_if100": {"profile": "cao2019", "imbalance_factor": 100.0, "test_per_class": 500},
    "cifar10lt_if10": {"profile": "cao2019", "imbalance_factor": 10.0, "test_per_class": 500},
    "fmnistlt_if100": {"profile": "first", "n_max": 6000, "imbalance_factor": 100.0,
                       "test_per_class": 500},
}
#: The zoo folder of each dataset: CIFAR-10-LT IF10 is a second view of the same files (the zoo
#: extracts ``--imbalance-factor 10 --also-imbalance-factor 100``).
ZOO_FOLDER = {"cifar10lt_if100": "cifar10lt_if100", "cifar10lt_if10": "cifar10lt_if100",
              "fmnistlt_if100": "fmnistlt_if100"}
#: Issue 17's opt-in candidate scores, computed in every benchmark ranking.
CANDIDATES_WITH = ("ridge", "cv_la")
#: The rule that picks featlt's default score (docs/methods.md, "Choosing the default score";
#: fixed 2026-12-06 before any candidate was computed on Fashion-MNIST-LT).
RULE_DATASETS = ("cifar10lt_if100", "cifar10lt_if10")
RULE_CANDIDATES = ("featlt_v1", "logme_ncm", "ridge", "ridge_tail", "cv_la")
#: Extra cost beyond the scores every ranking computes (0: none; 1: the ridge probe; 2: cv_la).
RULE_COST = {"featlt_v1": 0, "logme_ncm": 0, "ridge": 1, "ridge_tail": 1, "cv_la": 2}
RULE_TIE = 0.02
GOAL = {"kendall_tau_min": 0.8, "top1_regret_max_points": 0.5, "min_resolvable_pairs": 15}
SMOKE = "smoke"
SMOKE_PROTOCOL: dict[str, Any] = {"val_source": "carve", "val_fraction": 0.25}
SMOKE_HEADS = ("ncm_cosine",)
SMOKE_SEPARATIONS = (1.0, 2.0, 3.0, 5.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=sorted(PROTOCOLS))
    parser.add_argument("--view-seeds", type=parse_seeds, default=parse_seeds("0-2"),
                        help="View seeds to pool the measured accuracy over (e.g. 0-2 or 0,2); "
                             "the first one's document is the ranking written")
    parser.add_argument("--smoke", action="store_true",
                        help="Run end to end on synthetic stores under --work (no zoo)")
    parser.add_argument("--work", type=Path, default=None,
                        help="--smoke: folder of the stores, heads and outputs "
                             "(default: a new temporary folder)")
    parser.add_argument("--zoo", type=Path, default=CACHE / "zoo")
    parser.add_argument("--heads-dir", type=Path, default=CACHE / "rank-heads")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "ranking_validation.json")
    parser.add_argument("--tables", type=Path, default=RESULTS / "ranking")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cv-folds", type=int, default=5,
                        help="Folds of full mode's cross-validated pick, run on the first view "
                             "seed only (the truth needs only the validation-selected heads; "
                             "0: no cross-validation)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--merge", type=Path, default=None,
                        help="Merge the datasets of another results file of this script (a run "
                             "in another process) into --output, apply the rule and rewrite the "
                             "correlation tables; no ranking is run")
    parser.add_argument("--design", action="store_true",
                        help="Also validate the candidate formulas of the design step "
                             "(CIFAR-10-LT only; for information once the formula is fixed): "
                             "<tables>/design_<dataset>.json")
    args = parser.parse_args(argv)
    if args.smoke:
        if args.dataset or args.design:
            parser.error("--smoke runs on synthetic stores: no --dataset, no --design")
        args.work = args.work or Path(tempfile.mkdtemp(prefix="featlt-bench-rank-smoke-"))
        args.zoo, args.heads_dir = args.work / "zoo", args.work / "heads"
        args.output, args.tables = args.work / "ranking_validation.json", args.work / "ranking"
        args.dataset = [SMOKE]
    elif not args.dataset and args.merge is None:
        parser.error("--dataset is required (or --smoke, or --merge)")
    return args


def parse_seeds(text: str) -> list[int]:
    """``"0-2"`` -> [0, 1, 2]; ``"0,2"`` -> [0, 2] (distinct, in the order given)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            seeds += range(int(low), int(high or low) + 1)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: view seeds are like 0-2 or 0,1,2") from err
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r}: no view seed")
    return list(dict.fromkeys(seeds))


def smoke_stores(folder: Path) -> list[Path]:
    """Four small synthetic stores whose class separation grows (the smoke mode's zoo)."""
    from featlt.data.synthetic import write_synthetic_store

    folder.mkdir(parents=True, exist_ok=True)
    return [write_synthetic_store(folder / f"sep{s:g}.h5", n_classes=5, n_max=120,
                                  imbalance_factor=10, dim=12, separation=s, n_test_per_class=40)
            for s in SMOKE_SEPARATIONS]


@contextmanager
def heavy_lock() -> Iterator[None]:
    """The shared lock of heavy jobs (flock(2), as ``flock /tmp/featlt-heavy.lock`` takes it)."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def complete_files(folder: Path) -> list[Path]:
    """The complete feature stores of a dataset's zoo folder, sorted by name."""
    from featlt.errors import StoreError
    from featlt.store.feature_store import FeatureStore

    files = []
    for path in sorted(folder.glob("*.h5")):
        try:
            FeatureStore(path).close()
            files.append(path)
        except StoreError as err:
            log(f"skipped {path}: {err}")
    return files


def rank_seeds(name: str, files: list[Path], args: argparse.Namespace) -> dict[int, Any]:
    """The full-mode ranking document of ``files`` for every view seed (heads seeded alike)."""
    from featlt.data.protocol import Protocol
    from featlt.rank.measured import HeadSettings
    from featlt.rank.ranking import RankConfig, rank_files

    spec, heads = ((SMOKE_PROTOCOL, SMOKE_HEADS) if name == SMOKE
                   else (PROTOCOLS[name], BENCH_HEADS))
    documents = {}
    for seed in args.view_seeds:
        cv_folds = args.cv_folds if seed == args.view_seeds[0] else 0
        config = RankConfig(full=True, validate=True, heads_dir=args.heads_dir / name,
                            n_bootstrap=args.bootstrap, cv_folds=cv_folds,
                            optional=() if name == SMOKE else CANDIDATES_WITH,
                            heads=HeadSettings(heads=heads, seed=seed,
                                               n_bootstrap=args.bootstrap))
        documents[seed] = rank_files(files, Protocol(**spec, seed=seed), config,
                                     device=args.device, threads=args.threads,
                                     log=lambda line, s=seed: log(f"{name} seed {s} {line}"))
    return documents


def rank_dataset(name: str, args: argparse.Namespace) -> dict[int, Any]:
    """Fit every file's heads for every view seed (saved as they are fitted), then rank and
    validate all files: one document per view seed."""
    if name == SMOKE:
        return rank_seeds(name, smoke_stores(args.zoo / name), args)
    # One turn of the lock per dataset (waiting in the queue once per feature set cost more than
    # the work); each set's heads are saved as soon as they are fitted, so a rerun resumes.
    # The files are listed once the lock is held: every set finished by then is ranked.
    with heavy_lock():
        folder = args.zoo / ZOO_FOLDER[name]
        files = complete_files(folder)
        if len(files) < 2:
            raise SystemExit(f"{name}: {len(files)} complete feature sets in {folder};"
                             " run benchmarks/zoo_features.py first")
        return rank_seeds(name, files, args)


def seed_correct(documents: dict[int, Any]) -> tuple[list[str], Any, Any, int]:
    """Every seed's per-image test outcomes, aligned by backbone label.

    Returns:
        labels (M backbone labels, the first seed's order), true classes (n,), correct
        (S, M, n) bool, and the number of classes C.
    Raises:
        SystemExit: the seeds ranked other backbones, or scored other test images.
    """
    import numpy as np

    from featlt.heads.workflow import TEST_PREDICTIONS_FILE
    from featlt.rank.measured import read_test_predictions

    seeds = list(documents)
    first = documents[seeds[0]]
    labels = [row["label"] for row in first["rows"]]
    reference: tuple[Any, Any] | None = None
    correct = []
    for seed in seeds:
        rows = {row["label"]: row for row in documents[seed]["rows"]}
        if sorted(rows) != sorted(labels):
            raise SystemExit(f"view seed {seed} ranked {sorted(rows)}, seed {seeds[0]} "
                             f"{sorted(labels)}: pool seeds over the same feature sets")
        outcomes = []
        for label in labels:
            row = rows[label]
            positions, truth, predicted = read_test_predictions(
                Path(row["measured"]["head_dir"]) / TEST_PREDICTIONS_FILE, Path(row["file"]),
                "test")
            if reference is None:
                reference = (positions, truth)
            elif not (np.array_equal(positions, reference[0])
                      and np.array_equal(truth, reference[1])):
                raise SystemExit(f"{label}, view seed {seed}: its heads were scored on other "
                                 "test images than the first seed's; the seeds cannot be pooled "
                                 "image by image (use a fixed --test-per-class subset)")
            outcomes.append(predicted == truth)
        correct.append(outcomes)
    assert reference is not None
    n_classes = len(first["separability"][labels[0]]["data"]["class_names"])
    return labels, reference[1], np.array(correct, dtype=bool), n_classes


def pooled_validation(documents: dict[int, Any], n_bootstrap: int, seed: int = 0) -> dict[str, Any]:
    """Every score against the seed-pooled measured accuracy (see the module docstring)."""
    import numpy as np

    from featlt.rank.resolvable import (
        pair_accuracy,
        pooled_resamples,
        resolvable_labels,
        resolvable_matrix,
    )
    from featlt.rank.validation import tie_matrix, validate_score

    seeds = list(documents)
    labels, truth, correct, n_classes = seed_correct(documents)
    pooled = pooled_resamples(truth, correct, n_classes, n_bootstrap, seed)
    measured, resampled = pooled["measured"], pooled["resampled"]
    ties, better = tie_matrix(resampled), resolvable_matrix(resampled)
    first_rows = {row["label"]: row for row in documents[seeds[0]]["rows"]}
    pretrained = np.array([first_rows[label]["pretrained"] for label in labels])
    keep = np.flatnonzero(pretrained)
    out: dict[str, Any] = {
        "view_seeds": seeds, "n_bootstrap": n_bootstrap, "n_test": int(truth.size),
        "backbones": [{
            "label": label, "pretrained": bool(pretrained[m]),
            "balanced_accuracy": float(measured[m]),
            "balanced_accuracy_ci": pooled["interval"][m].tolist(),
            "per_seed": [{"seed": s, "head": {r["label"]: r for r in documents[s]["rows"]}[
                label]["measured"]["head"], "balanced_accuracy": float(pooled["per_seed"][i, m])}
                for i, s in enumerate(seeds)],
        } for m, label in enumerate(labels)],
        "resolvable_pairs": resolvable_labels(better, labels),
        "n_resolvable": int(better.sum()),
        "n_resolvable_pretrained": int(better[np.ix_(keep, keep)].sum()),
        "ties": [[labels[i], labels[j]] for i in range(len(labels))
                 for j in range(i + 1, len(labels)) if ties[i, j]],
        "scores": {},
    }
    for score in first_rows[labels[0]]["scores"]:
        column = [first_rows[label]["scores"].get(score) for label in labels]
        result = {**validate_score(column, measured, resampled, ties),
                  **pair_accuracy(column, better)}
        if result["top1"] is not None:
            result["top1"] = labels[result["top1"]]
        if keep.size >= 2:
            sub_column = [column[i] for i in keep]
            sub = validate_score(sub_column, measured[keep], resampled[:, keep],
                                 ties[np.ix_(keep, keep)])
            pre = pair_accuracy(sub_column, better[np.ix_(keep, keep)])
            result.update({f"{key}_pretrained": sub[key] for key in
                           ("kendall_tau", "weighted_tau", "ci", "top1_regret")})
            result.update({f"{key}_pretrained": value for key, value in pre.items()})
        out["scores"][score] = result
    out["goal"] = resolvable_goal(out)
    return out


def resolvable_goal(pooled: dict[str, Any], ours: str = "featlt") -> dict[str, Any]:
    """The issue 17 goal on the pooled truth: ``ours``'s resolvable-pair accuracy at least every
    comparator's (all sets, pretrained sets) and top-1 regret <= 0.5 points, each counted only
    where at least 15 pairs are resolvable (None otherwise)."""
    scores = pooled["scores"]
    if ours not in scores:
        return {"score": ours, "note": f"no score {ours!r} in this run"}
    out: dict[str, Any] = {"score": ours, "n_resolvable": pooled["n_resolvable"],
                           "n_resolvable_pretrained": pooled["n_resolvable_pretrained"]}
    for suffix, n in (("", pooled["n_resolvable"]),
                      ("_pretrained", pooled["n_resolvable_pretrained"])):
        mine = scores[ours].get(f"resolvable_pair_accuracy{suffix}")
        others = {k: v.get(f"resolvable_pair_accuracy{suffix}") for k, v in scores.items()
                  if k != ours and v.get(f"resolvable_pair_accuracy{suffix}") is not None}
        counted = n >= GOAL["min_resolvable_pairs"] and mine is not None
        out[f"accuracy_at_least_every_comparator{suffix}"] = (
            all(mine >= v for v in others.values()) if counted else None)
        regret = scores[ours].get(f"top1_regret{suffix}")
        out[f"top1_regret_at_most_0.5_points{suffix}"] = (
            regret <= GOAL["top1_regret_max_points"] if counted and regret is not None
            else None)
    return out


def default_score_rule(results: dict[str, Any]) -> dict[str, Any]:
    """featlt's default score by the committed rule (docs/methods.md, "Choosing the default
    score"): the candidate with the highest mean seed-pooled resolvable-pair accuracy over
    :data:`RULE_DATASETS`; candidates within :data:`RULE_TIE` of the best are tied, and the
    cheapest tied one wins (then the higher mean pretrained accuracy, then the lower mean top-1
    regret, then the order of :data:`RULE_CANDIDATES`).

    Returns:
        ``{"chosen": name or None, "candidates": {name: means}, "note": ...}``; ``chosen`` is
        None until every design dataset has a seed-pooled validation.
    """
    missing = [d for d in RULE_DATASETS if "pooled" not in results.get(d, {})]
    if missing:
        return {"chosen": None, "note": f"not yet measured on {', '.join(missing)}"}

    def mean(name: str, key: str) -> float | None:
        values = [results[d]["pooled"]["scores"].get(name, {}).get(key) for d in RULE_DATASETS]
        return None if any(v is None for v in values) else sum(values) / len(values)

    table = {name: {"resolvable_pair_accuracy": mean(name, "resolvable_pair_accuracy"),
                    "resolvable_pair_accuracy_pretrained":
                        mean(name, "resolvable_pair_accuracy_pretrained"),
                    "top1_regret": mean(name, "top1_regret"), "cost": RULE_COST[name]}
             for name in RULE_CANDIDATES}
    scored = {n: t for n, t in table.items() if t["resolvable_pair_accuracy"] is not None}
    if not scored:
        return {"chosen": None, "candidates": table, "note": "no candidate was measured"}
    best = max(t["resolvable_pair_accuracy"] for t in scored.values())
    tied = [n for n, t in scored.items() if t["resolvable_pair_accuracy"] >= best - RULE_TIE]

    def order(name: str) -> tuple[float, float, float, int]:
        t = scored[name]
        pretrained, regret = t["resolvable_pair_accuracy_pretrained"], t["top1_regret"]
        return (t["cost"], -(pretrained if pretrained is not None else -1.0),
                regret if regret is not None else float("inf"), RULE_CANDIDATES.index(name))
    chosen = min(tied, key=order)
    return {"chosen": chosen, "datasets": list(RULE_DATASETS), "best_mean": best,
            "tie_margin": RULE_TIE, "tied": tied, "candidates": table}


def apply_rule(results: dict[str, Any]) -> None:
    """Write the rule's choice into ``results`` and, once it is made, the issue's goal for the
    chosen candidate on every dataset with a seed-pooled validation (``pooled.goal_default``)."""
    rule = results["default_score_rule"] = default_score_rule(results)
    if rule["chosen"] is None:
        return
    for entry in results.values():
        if isinstance(entry, dict) and "pooled" in entry:
            entry["pooled"]["goal_default"] = resolvable_goal(entry["pooled"], rule["chosen"])


def merge_results(results: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the datasets (and their run records) of ``other``, a results file of the
    same script written by another process (datasets run side by side), and the rule applied."""
    merged = dict(results)
    for name in (d for d in other if d in PROTOCOLS):
        merged[name] = other[name]
        merged.setdefault("runs", {})[name] = other["runs"][name]
    apply_rule(merged)
    return merged


def pick_regrets(document: dict[str, Any], pooled: dict[str, Any]) -> dict[str, Any]:
    """Full mode's cross-validated pick and the validation-only pick, each with its regret in
    points: against the best backbone of this view seed (its validation-selected head's test
    balanced accuracy) and against the seed-pooled truth (the picked backbone's pooled value)."""
    recommendation = document["recommendation"]
    measured = {row["label"]: row["measured"]["balanced_accuracy"] for row in document["rows"]}
    truth = {b["label"]: b["balanced_accuracy"] for b in pooled["backbones"]}
    best_seed, best_truth = max(measured.values()), max(truth.values())

    def entry(label: str, head: str, test: float) -> dict[str, Any]:
        return {"label": label, "head": head, "balanced_accuracy": test,
                "regret_points": round(100 * (best_seed - test), 3),
                "regret_points_pooled": round(100 * (best_truth - truth[label]), 3)}
    out = {}
    if "n_folds" in recommendation:
        out["cross_validated"] = entry(recommendation["label"], recommendation["head"],
                                       recommendation["balanced_accuracy"])
        validation = recommendation["validation_pick"]
    else:
        validation = recommendation
    out["validation_only"] = entry(validation["label"], validation["head"],
                                   validation["balanced_accuracy"] if "balanced_accuracy" in
                                   validation else measured[validation["label"]])
    return out


def design_candidates(report: dict[str, Any]) -> dict[str, float | None]:
    """Candidate long-tail-aware formulas from one separability report (design step only)."""
    import numpy as np

    from featlt.evaluation.bootstrap import class_mean

    knn = np.asarray(report["per_class"]["knn_recall"], dtype=np.float64)
    ncm = np.asarray(report["per_class"]["ncm_recall"], dtype=np.float64)
    tail = report["data"]["shot_groups"]["tail_third"]
    scores = report["scores"]

    def mix(recall: np.ndarray, tail_weight: float) -> float:
        return float((1 - tail_weight) * class_mean(recall) + tail_weight * class_mean(recall,
                                                                                      tail))
    both = (knn + ncm) / 2
    return {
        "knn_balanced": mix(knn, 0.0), "ncm_balanced": mix(ncm, 0.0),
        "knn_ncm_balanced": mix(both, 0.0), "knn_ncm_tail_half": mix(both, 0.5),
        "knn_ncm_tail_only": mix(both, 1.0), "ncm_tail_half": mix(ncm, 0.5),
        "knn_tail_half": mix(knn, 0.5), "logme_balanced": scores["logme_balanced"],
        "knn_ncm_val": None if scores["knn_balanced_accuracy_val"] is None else
        (scores["knn_balanced_accuracy_val"] + scores["ncm_balanced_accuracy_val"]) / 2,
    }


def design(document: dict[str, Any], n_bootstrap: int, seed: int = 0) -> dict[str, Any]:
    """Every candidate formula validated like the scores (CIFAR-10-LT only, before fixing)."""
    import numpy as np

    from featlt.evaluation.bootstrap import class_mean, paired_bootstrap
    from featlt.heads.workflow import TEST_PREDICTIONS_FILE
    from featlt.rank.measured import read_test_predictions
    from featlt.rank.validation import tie_matrix, validate_score

    rows = document["rows"]
    predictions = [read_test_predictions(Path(r["measured"]["head_dir"]) / TEST_PREDICTIONS_FILE,
                                         Path(r["file"]), "test") for r in rows]
    labels = predictions[0][1]
    correct = np.stack([p[2] == p[1] for p in predictions])
    n_classes = len(document["separability"][rows[0]["label"]]["data"]["class_names"])
    resampled = class_mean(paired_bootstrap(labels, correct, n_classes, n_bootstrap, seed).recall)
    measured = np.array([r["measured"]["balanced_accuracy"] for r in rows])
    ties = tie_matrix(resampled)
    candidates = [design_candidates(document["separability"][r["label"]]) for r in rows]
    out: dict[str, Any] = {"backbones": [r["label"] for r in rows],
                           "measured": measured.tolist(), "candidates": {}}
    for name in candidates[0]:
        values = [c[name] for c in candidates]
        result = validate_score(values, measured, resampled, ties)
        out["candidates"][name] = {"values": values, **result}
    return out


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """The results-file entry of one dataset: per score its validation, plus the backbones."""
    validation = document["validation"]
    out: dict[str, Any] = {name: result for name, result in validation["scores"].items()}
    out["backbones"] = [{
        "label": row["label"], "backbone": row["backbone"], "pretrained": row["pretrained"],
        "best_head": row["measured"]["head"],
        "balanced_accuracy": row["measured"]["balanced_accuracy"],
        "balanced_accuracy_ci": row["measured"]["balanced_accuracy_ci"],
        "tail_third": row["measured"]["tail_third"], "scores": row["scores"],
    } for row in document["rows"]]
    out["ties"] = validation["ties"]
    out["probability_best"] = dict(zip(validation["backbones"], validation["probability_best"],
                                       strict=True))
    out["recommendation"] = document["recommendation"]["sentence"]
    out["view"] = document["view"]["protocol"]
    out["goal"] = goal_check(validation["scores"])
    return out


def goal_check(scores: dict[str, Any]) -> dict[str, Any]:
    """The issue's goal for featlt's score on one dataset, each part true/false/None."""
    ours = scores["featlt"]
    others = {k: v for k, v in scores.items() if k != "featlt"}
    pre = ours.get("kendall_tau_pretrained")
    beaten = {k: v.get("kendall_tau_pretrained") for k, v in others.items()
              if v.get("kendall_tau_pretrained") is not None}
    return {
        "kendall_tau_at_least_0.8": None if ours["kendall_tau"] is None
        else ours["kendall_tau"] >= GOAL["kendall_tau_min"],
        "pretrained_tau_at_least_every_comparator": None if pre is None
        else all(pre >= v for v in beaten.values()),
        "pretrained_tau_above_logme": None if pre is None or "logme" not in beaten
        else pre > beaten["logme"],
        "top1_regret_at_most_0.5_points": ours["top1_regret"] <= GOAL["top1_regret_max_points"],
        "comparators_pretrained_tau": beaten,
    }


def correlation_table(results: dict[str, Any]) -> str:
    """Markdown: Kendall tau-b of every score, full zoo and pretrained sets, per dataset."""
    from featlt.rank.model import SCORE_COLUMNS

    datasets = [d for d in results if d in PROTOCOLS or d == SMOKE]
    header = "| score | " + " | ".join(
        f"{d} all | {d} pretrained | {d} tail-third | {d} regret (pts)" for d in datasets) + " |"
    lines = ["Kendall tau-b against the measured balanced accuracy of the best "
             "validation-selected head [95% bootstrap interval]; ties: pairs inside their "
             "paired bootstrap interval. Written by benchmarks/bench_rank.py.", "",
             header, "|" + "---|" * (1 + 4 * len(datasets))]

    def fmt(value: Any, ci: Any = None) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    for score in [c for c in SCORE_COLUMNS if any(c in results[d] for d in datasets)]:
        cells = []
        for d in datasets:
            r = results[d].get(score) or {"kendall_tau": None, "top1_regret": None}
            cells += [fmt(r["kendall_tau"], r.get("ci")),
                      fmt(r.get("kendall_tau_pretrained"), r.get("ci_pretrained")),
                      fmt(r.get("kendall_tau_tail_third")),
                      "-" if r["top1_regret"] is None else f"{r['top1_regret']:.2f}"]
        lines.append(f"| {score} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def resolvable_table(results: dict[str, Any]) -> str:
    """Markdown: every score against the seed-pooled truth (tau-b, regret, resolvable-pair
    accuracy [Wilson interval] over n resolvable pairs), all sets and pretrained, per dataset."""
    datasets = [d for d in results if (d in PROTOCOLS or d == SMOKE) and "pooled" in results[d]]
    if not datasets:
        return ""
    header = "| score | " + " | ".join(
        f"{d} tau-b | {d} regret (pts) | {d} resolvable-pair acc. (n) | "
        f"{d} pretrained acc. (n)" for d in datasets) + " |"
    seeds = {d: results[d]["pooled"]["view_seeds"] for d in datasets}
    lines = ["Against the test balanced accuracy of the validation-selected head, averaged over "
             f"view seeds {seeds}; resolvable pairs: the paired-bootstrap interval of the "
             "seed-pooled difference excludes 0; resolvable-pair accuracy: share of them the "
             "score orders right (ties 1/2) [95% Wilson interval]. Written by "
             "benchmarks/bench_rank.py.", "", header, "|" + "---|" * (1 + 4 * len(datasets))]

    def share(value: Any, ci: Any, n: int) -> str:
        if value is None:
            return f"- ({n})"
        return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] ({n})"

    names = list(results[datasets[0]]["pooled"]["scores"])
    for score in names:
        cells = []
        for d in datasets:
            r = results[d]["pooled"]["scores"].get(score, {})
            cells += ["-" if r.get("kendall_tau") is None else f"{r['kendall_tau']:.2f}",
                      "-" if r.get("top1_regret") is None else f"{r['top1_regret']:.2f}",
                      share(r.get("resolvable_pair_accuracy"),
                            r.get("resolvable_pair_accuracy_ci"), r.get("n_resolvable", 0)),
                      share(r.get("resolvable_pair_accuracy_pretrained"),
                            r.get("resolvable_pair_accuracy_ci_pretrained"),
                            r.get("n_resolvable_pretrained", 0))]
        lines.append(f"| {score} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(name: str, document: dict[str, Any], folder: Path) -> None:
    from featlt.rank.plots import write_ranking_plot
    from featlt.rank.table import ranking_text, write_csv
    from featlt.runtime import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{name}.json", document)
    write_csv(folder / f"{name}.csv", document)
    (folder / f"{name}.txt").write_text(ranking_text(document) + "\n")
    write_ranking_plot(document, folder / f"{name}_scores.png")


def main(argv: list[str] | None = None) -> None:
    from featlt.rank.formula import FORMULA
    from featlt.runtime import write_json_atomic

    args = parse_args(argv)
    record = run_record(sys.argv)
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    if args.merge is not None:
        results = merge_results(results, json.loads(args.merge.read_text()))
        write_json_atomic(args.output, results)
        args.tables.mkdir(parents=True, exist_ok=True)
        (args.tables / "rank_correlation.md").write_text(correlation_table(results)
                                                         + "\n" + resolvable_table(results))
        log(f"merged {args.merge} into {args.output}; rule: {results['default_score_rule']}")
        return
    for name in args.dataset:
        documents = rank_dataset(name, args)
        document = documents[args.view_seeds[0]]
        if args.design:
            if name != "cifar10lt_if100":
                raise SystemExit("--design: the formula is designed on cifar10lt_if100 only")
            result = {"design": design(document, args.bootstrap), "run": finish_record(record)}
            args.tables.mkdir(parents=True, exist_ok=True)
            write_json_atomic(args.tables / f"design_{name}.json", result)
            log(f"{name}: design candidates written to {args.tables}")
        write_tables(name, document, args.tables)
        results[name] = summary(document)
        results[name]["pooled"] = pooled_validation(documents, args.bootstrap)
        results[name]["picks"] = pick_regrets(document, results[name]["pooled"])
        apply_rule(results)
        results["formula"] = FORMULA
        results["formula_commit"] = FORMULA_COMMIT
        results["heads"] = {"list": list(BENCH_HEADS), "note": "a fixed list of cheaper "
                            "established heads; all 12 do not fit the CPU budget"}
        results.setdefault("runs", {})[name] = finish_record(record)
        write_json_atomic(args.output, results)
        (args.tables / "rank_correlation.md").write_text(correlation_table(results)
                                                         + "\n" + resolvable_table(results))
        log(f"{name}: written to {args.output} and {args.tables}")


if __name__ == "__main__":
    main()
