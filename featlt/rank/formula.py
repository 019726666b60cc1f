"""``featlt_v1``, featlt's first long-tail-aware ranking score, computed from a separability
report (featlt's default score, the ``featlt`` column, is :data:`featlt.rank.model.DEFAULT_SCORE`
since 2026-12-06; docs/methods.md, "Choosing the default score").

    featlt = 1/2 * mean_c r_c + 1/2 * mean_{c in tail third} r_c,
    r_c    = (kNN recall_c + NCM recall_c) / 2,

with kNN and NCM recall the leave-one-out per-class recalls of the report (training rows of the
index view; kNN on the stratified queries, every tail-third sample included) and the tail third
the rarest third of the classes by training count (docs/methods.md, "Ranking backbones"). Every
class counts equally in the first mean, and the rarest third counts again in the second, so a
backbone that keeps rare classes apart ranks higher. The formula was fixed on CIFAR-10-LT before
any Fashion-MNIST-LT result existed (results/README.md).

Its uncertainty (:func:`resampled_featlt_score`) is a parametric bootstrap: each class's recall
is redrawn as a binomial share of the rows it was measured on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featlt.evaluation.bootstrap import class_mean

FORMULA = ("featlt = 1/2 mean_c r_c + 1/2 mean_{c in tail third} r_c, "
           "r_c = (kNN recall_c + NCM recall_c) / 2 (leave-one-out on the training view)")


def score_from_recalls(knn: np.ndarray, ncm: np.ndarray, tail: np.ndarray | None) -> np.ndarray:
    """The formula on per-class recalls ``(..., C)``; returns ``(...)``.

    Args:
        knn, ncm: (..., C) per-class recall, NaN for classes not evaluated.
        tail: class ids of the tail third (None: no tail term, the balanced mean alone).
    """
    recall = (np.asarray(knn, dtype=np.float64) + np.asarray(ncm, dtype=np.float64)) / 2
    balanced = class_mean(recall)
    if tail is None or len(tail) == 0:
        return balanced
    return 0.5 * balanced + 0.5 * class_mean(recall, tail)


def _recalls(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    per_class = report["per_class"]
    tail = report["data"]["shot_groups"].get("tail_third")
    return (np.asarray(per_class["knn_recall"], dtype=np.float64),
            np.asarray(per_class["ncm_recall"], dtype=np.float64),
            None if tail is None else np.asarray(tail, dtype=np.int64))


def featlt_score(report: dict[str, Any]) -> float | None:
    """featlt's score of a separability report (its JSON form); None when undefined."""
    knn, ncm, tail = _recalls(report)
    value = float(score_from_recalls(knn, ncm, tail))
    return None if np.isnan(value) else value


def resampled_featlt_score(report: dict[str, Any], n_bootstrap: int, seed: int) -> np.ndarray:
    """(B,) featlt's score with every class's recalls redrawn (binomial on its rows)."""
    knn, ncm, tail = _recalls(report)
    knn_rows = np.asarray(report["knn"]["queries_per_class"], dtype=np.int64)
    ncm_rows = np.asarray(report["data"]["train_counts"], dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(seed))

    def redraw(recall: np.ndarray, rows: np.ndarray) -> np.ndarray:
        known = np.isfinite(recall) & (rows > 0)
        p = np.where(known, recall, 0.0)
        draws = rng.binomial(np.maximum(rows, 1), p, size=(n_bootstrap, recall.size))
        return np.where(known, draws / np.maximum(rows, 1), np.nan)

    return score_from_recalls(redraw(knn, knn_rows), redraw(ncm, ncm_rows), tail)
