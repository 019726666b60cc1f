"""Benchmark: does featlt's ranking score pick the backbone that reaches the best long-tail
accuracy?

    python3 benchmarks/bench_rank.py --dataset cifar10lt_if100 [--dataset fmnistlt_if100]

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

Writes ``results/ranking_validation.json`` (updated per dataset: every score's Kendall tau-b,
weighted tau, interval, pretrained-only and tail-third tau, top-1 regret; the formula and the
commit that fixed it; the goal checks; the run record) and, under ``results/ranking/``, each
dataset's ranking (``<dataset>.csv``, ``<dataset>.txt``, the full document ``<dataset>.json``),
the plot of every score against measured balanced accuracy (``<dataset>_scores.png``) and the
rank-correlation table (``rank_correlation.md``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
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
    "fmnistlt_if100": {"profile": "first", "n_max": 6000, "imbalance_factor": 100.0,
                       "test_per_class": 500},
}
GOAL = {"kendall_tau_min": 0.8, "top1_regret_max_points": 0.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=sorted(PROTOCOLS), required=True)
    parser.add_argument("--zoo", type=Path, default=CACHE / "zoo")
    parser.add_argument("--heads-dir", type=Path, default=CACHE / "rank-heads")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "ranking_validation.json")
    parser.add_argument("--tables", type=Path, default=RESULTS / "ranking")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--design", action="store_true",
                        help="Also validate the candidate formulas of the design step "
                             "(CIFAR-10-LT only; for information once the formula is fixed): "
                             "<tables>/design_<dataset>.json")
    return parser.parse_args(argv)


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


def rank_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fit every file's heads (saved as they are fitted), then rank and validate all files."""
    from featlt.data.protocol import Protocol
    from featlt.rank.measured import HeadSettings
    from featlt.rank.ranking import RankConfig, rank_files

    protocol = Protocol(**PROTOCOLS[name])
    config = RankConfig(full=True, validate=True, heads_dir=args.heads_dir / name,
                        n_bootstrap=args.bootstrap,
                        heads=HeadSettings(heads=BENCH_HEADS, n_bootstrap=args.bootstrap))
    # One turn of the lock per dataset (waiting in the queue once per feature set cost more than
    # the work); each set's heads are saved as soon as they are fitted, so a rerun resumes.
    # The files are listed once the lock is held: every set finished by then is ranked.
    with heavy_lock():
        files = complete_files(args.zoo / name)
        if len(files) < 2:
            raise SystemExit(f"{name}: {len(files)} complete feature sets in {args.zoo / name};"
                             " run benchmarks/zoo_features.py first")
        return rank_files(files, protocol, config, device=args.device, threads=args.threads,
                          log=lambda line: log(f"{name} {line}"))


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
    from featlt.rank.ranking import SCORE_COLUMNS

    datasets = [d for d in results if d in PROTOCOLS]
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

    for score in SCORE_COLUMNS:
        cells = []
        for d in datasets:
            r = results[d][score]
            cells += [fmt(r["kendall_tau"], r["ci"]),
                      fmt(r.get("kendall_tau_pretrained"), r.get("ci_pretrained")),
                      fmt(r.get("kendall_tau_tail_third")),
                      "-" if r["top1_regret"] is None else f"{r['top1_regret']:.2f}"]
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
    for name in args.dataset:
        document = rank_dataset(name, args)
        if args.design:
            if name != "cifar10lt_if100":
                raise SystemExit("--design: the formula is designed on cifar10lt_if100 only")
            result = {"design": design(document, args.bootstrap), "run": finish_record(record)}
            args.tables.mkdir(parents=True, exist_ok=True)
            write_json_atomic(args.tables / f"design_{name}.json", result)
            log(f"{name}: design candidates written to {args.tables}")
        write_tables(name, document, args.tables)
        results[name] = summary(document)
        results["formula"] = FORMULA
        results["formula_commit"] = FORMULA_COMMIT
        results["heads"] = {"list": list(BENCH_HEADS), "note": "a fixed list of cheaper "
                            "established heads; all 12 do not fit the CPU budget"}
        results.setdefault("runs", {})[name] = finish_record(record)
        write_json_atomic(args.output, results)
        (args.tables / "rank_correlation.md").write_text(correlation_table(results))
        log(f"{name}: written to {args.output} and {args.tables}")


if __name__ == "__main__":
    main()
