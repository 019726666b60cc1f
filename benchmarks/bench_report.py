"""Benchmark: how long ``featlt report`` takes and how large its page is.

    python3 benchmarks/bench_report.py [--demo DIR] [--out results/report_benchmark.json]

- ``synthetic``: result files of 10 backbones x 15 heads x 100 classes written here (a rank JSON
  with validation and an embedded separability report per backbone; per backbone a
  fit-classifier folder: summary.json, and per head head.json and a 2,000-row
  test_predictions.csv, 20 test images per class), in the shapes featlt writes them. The issue's
  limits: under 5 s on 2 cores and a page under 5 MB.
- ``demo`` (with ``--demo DIR``): the output folder of ``featlt demo``.

Each case runs ``python3 -m featlt report ... -o FILE`` as a new process (interpreter start and
imports included, as a user would run it), ``--repeats`` times; the median wall time and the
page's bytes are recorded with the run record of ``benchmarks/common.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, finish_record, run_record
from safetensors.numpy import save_file

N_BACKBONES, N_HEADS, N_CLASSES, TEST_PER_CLASS = 10, 15, 100, 20
HEADS = ("linear", "crt", "tau_norm", "lws", "la_loss", "posthoc_la", "balanced_softmax",
         "ldam_drw", "cosine", "ncm", "ncm_cosine", "cws", "dlsa", "cibl", "cibl_knob")
GROUPS = ("head_third", "mid_third", "tail_third", "many", "medium", "few")
SCORES = ("featlt", "logme", "gbc", "sfda", "knn", "ncm", "params", "imagenet_top1",
          "featlt_v1", "logme_ncm")
LIMIT_SECONDS, LIMIT_BYTES = 5.0, 5_000_000


def _counts() -> list[int]:
    """CIFAR-100-LT-like training counts: 500 down to 5 (IF 100)."""
    return [int(500 * 100 ** (-c / (N_CLASSES - 1))) for c in range(N_CLASSES)]


def _view(counts: list[int]) -> dict[str, Any]:
    return {"protocol": {"profile": "cao2019", "imbalance_factor": 100.0, "n_max": 500,
                         "seed": 0}, "train": {"split": "train", "n": sum(counts)},
            "test": {"split": "test", "n": N_CLASSES * TEST_PER_CLASS},
            "train_class_counts": counts}


def _features(label: str) -> dict[str, Any]:
    return {"backbone": {"model": f"synthetic.{label}", "resolution": 224,
                         "weights": {"source": "zoo", "tensors_sha256": "ab" * 32}},
            "data": {"uri": "synthetic-100", "sha256": "cd" * 32, "origin": "bench_report"},
            "run": {"versions": {"featlt": "bench"}, "started": "2026-12-06T00:00:00+0000",
                    "threads": 2}}


def _group_values(rng: np.random.Generator) -> dict[str, float]:
    return {g: float(rng.uniform(0.3, 0.9)) for g in GROUPS}


def _separability(label: str, names: list[str], counts: list[int],
                  rng: np.random.Generator) -> dict[str, Any]:
    groups = ["head_third", "mid_third", "tail_third"]
    return {
        "kind": "featlt.separability.evaluate", "report_version": 1,
        "input": {"file": f"/bench/{label}.h5", "features": _features(label),
                  "view": _view(counts)},
        "scores": {"logme": float(rng.normal()), "knn_balanced_accuracy": float(rng.random())},
        "score_info": {"logme": {"higher_is_better": True, "description": "LogME",
                                 "source": "[paper]"},
                       "knn_balanced_accuracy": {"higher_is_better": True,
                                                 "description": "kNN", "source": "[standard]"}},
        "data": {"class_names": names, "train_counts": counts},
        "per_class": {"count": counts, "knn_recall": rng.random(N_CLASSES).tolist()},
        "bin_matrices": {"relative": {"groups": groups,
                                      "knn_confusion": rng.random((3, 3)).tolist(),
                                      "bhattacharyya": rng.random((3, 3)).tolist()}},
        "densest_fraction": {"rho": 0.3, "groups": {
            g: {"share_dense": s, "share_all": 1 / 3, "enrichment": 3 * s}
            for g, s in zip(groups, (0.7, 0.2, 0.1), strict=True)}},
        "split_plan": {"k_per_class": [max(1, c // 50) for c in counts], "class_counts": counts,
                       "imbalance_before": 100.0, "imbalance_after": 12.0,
                       "n_subclasses": sum(max(1, c // 50) for c in counts)},
    }


def _heads_folder(folder: Path, label: str, names: list[str], counts: list[int],
                  rng: np.random.Generator) -> dict[str, Any]:
    """One fit-classifier folder; returns the best head's row (the rank document's measured)."""
    labels = np.repeat(np.arange(N_CLASSES), TEST_PER_CLASS)
    rows: dict[str, Any] = {}
    for name in HEADS:
        skill = rng.uniform(0.4, 0.9)
        hit = rng.random(labels.size) < skill * (0.5 + 0.5 * np.repeat(
            np.asarray(counts) / max(counts), TEST_PER_CLASS) ** 0.2)
        predictions = np.where(hit, labels, rng.integers(0, N_CLASSES, labels.size))
        confidence = np.clip(rng.normal(skill, 0.15, labels.size), 0.01, 1.0)
        head_dir = folder / name
        head_dir.mkdir(parents=True)
        text = "row,label,prediction,confidence\n" + "".join(
            f"{i},{y},{p},{c!r}\n" for i, (y, p, c) in enumerate(
                zip(labels, predictions, confidence.tolist(), strict=True)))
        (head_dir / "test_predictions.csv").write_text(text)
        fitted: dict[str, Any] = {}
        if name == "cws":
            fitted["split_plan_"] = {"k_per_class": [max(1, c // 50) for c in counts],
                                     "class_counts": counts, "imbalance_before": 100.0,
                                     "imbalance_after": 12.0, "n_subclasses": 150}
        if name == "dlsa":
            fitted["stages_"] = [{"stage": s + 1, "kind": kind, "threshold": -float(s),
                                  "entering": {"n": 5000}, "train": {
                                      "n": 3000, "n_classes": N_CLASSES, "imbalance_factor": 50.0,
                                      "make_up": {"head_third": 0.6, "mid_third": 0.3,
                                                  "tail_third": 0.1}},
                                  "val": {"n": 500, "accuracy": 0.7}}
                                 for s, kind in enumerate(("cluster-aided", "final"))]
        # as featlt.heads.io stores an array of more than 32 numbers: in head.safetensors,
        # referenced from head.json
        recall = (hit.reshape(N_CLASSES, TEST_PER_CLASS).mean(axis=1)).astype(np.float64)
        key = "document/metrics/test/per_class_accuracy"
        save_file({key: recall}, str(head_dir / "head.safetensors"))
        (head_dir / "head.json").write_text(json.dumps({
            "head": {"fitted": fitted},
            "metrics": {"test": {"ece_groups": _group_values(rng),
                                 "per_class_accuracy": {"$tensor": key}}},
            "tensors_sha256": hashlib.sha256(
                (head_dir / "head.safetensors").read_bytes()).hexdigest()}))
        rows[name] = {"balanced_accuracy": float(hit.mean()),
                      "balanced_accuracy_ci": [float(hit.mean()) - 0.02,
                                               float(hit.mean()) + 0.02],
                      **_group_values(rng), "worst_class_accuracy": 0.1, "macro_f1": 0.5,
                      "ece": float(rng.uniform(0.02, 0.2)),
                      "val_balanced_accuracy": float(rng.uniform(0.4, 0.9)),
                      "dir": str(head_dir), "test_predictions": str(head_dir /
                                                                    "test_predictions.csv"),
                      "test_predictions_sha256": hashlib.sha256(text.encode()).hexdigest()}
    summary = {"config": {"feature_file": f"/bench/{label}.h5", "heads": list(HEADS),
                          "seed": 0, "n_bootstrap": 1000},
               "provenance": {"features": _features(label), "view": _view(counts)},
               "class_names": names, "heads": rows}
    (folder / "summary.json").write_text(json.dumps(summary))
    best = max(rows, key=lambda h: rows[h]["val_balanced_accuracy"])
    return {"head": best, **{k: rows[best][k] for k in ("balanced_accuracy",
                                                         "balanced_accuracy_ci", "tail_third")}}


def write_synthetic(folder: Path, seed: int = 0) -> Path:
    """Result files of N_BACKBONES x N_HEADS x N_CLASSES under ``folder``; returns it."""
    rng = np.random.default_rng(seed)
    counts = _counts()
    names = [f"class {c:03d}" for c in range(N_CLASSES)]
    rows, separability = [], {}
    for b in range(N_BACKBONES):
        label = f"backbone-{b:02d}"
        measured = _heads_folder(folder / "heads" / label, label, names, counts, rng)
        separability[label] = _separability(label, names, counts, rng)
        rows.append({"label": label, "file": f"/bench/{label}.h5", "backbone": label,
                     "scores": {s: float(rng.normal()) for s in SCORES}, "measured": measured})
    validation = {"backbones": [r["label"] for r in rows], "n_bootstrap": 1000,
                  "scores": {s: {"kendall_tau": float(rng.uniform(-1, 1)),
                                 "weighted_tau": float(rng.uniform(-1, 1)),
                                 "ci": [-0.5, 0.9], "top1_regret": 0.01, "top1": "backbone-00"}
                             for s in SCORES}}
    document = {"kind": "featlt.rank", "version": 3, "config": {"full": True, "validate": True,
                                                                 "n_bootstrap": 1000},
                "view": _view(counts), "rows": rows, "separability": separability,
                "notes": [], "validation": validation,
                "recommendation": {"sentence": f"Use {rows[0]['label']} (synthetic)."}}
    (folder / "ranking.json").write_text(json.dumps(document))
    return folder


def time_report(inputs: list[Path], out: Path, repeats: int) -> dict[str, Any]:
    """Median wall seconds of ``featlt report`` over ``repeats`` runs, and the page's bytes."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "featlt", "report", *map(str, inputs), "-o",
                        str(out)], check=True, cwd=REPO, capture_output=True)
        seconds.append(time.perf_counter() - start)
    size = out.stat().st_size
    median = statistics.median(seconds)
    return {"seconds": round(median, 3), "seconds_each": [round(s, 3) for s in seconds],
            "bytes": size, "seconds_under_limit": median < LIMIT_SECONDS,
            "bytes_under_limit": size < LIMIT_BYTES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=None,
                        help="also time the report of this `featlt demo` output folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "report_benchmark.json")
    args = parser.parse_args()
    record = run_record(sys.argv)
    document: dict[str, Any] = {
        "limits": {"seconds": LIMIT_SECONDS, "bytes": LIMIT_BYTES},
        "synthetic": {"backbones": N_BACKBONES, "heads": N_HEADS, "classes": N_CLASSES,
                      "test_rows_per_head": N_CLASSES * TEST_PER_CLASS}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_synthetic(Path(tmp) / "results")
        document["synthetic"].update(time_report([folder], Path(tmp) / "report.html",
                                                 args.repeats))
        if args.demo is not None:
            document["demo"] = {"folder": str(args.demo), **time_report(
                [args.demo], Path(tmp) / "demo.html", args.repeats)}
    document["run"] = finish_record(record)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: v for k, v in document.items() if k != "run"}, indent=2))


if __name__ == "__main__":
    main()
