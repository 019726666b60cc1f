"""Paired bootstrap over evaluation rows: per-class recall of several backbones per resample.

Every backbone is scored on the same test images, so one resample of the rows serves all of
them (a *paired* bootstrap): the difference of two backbones' balanced accuracies is resampled
with its correlation intact. One ``bincount`` per chunk of resamples gives every class's hits
and counts (as in :func:`featlt.evaluation.metrics.bootstrap_intervals`).
"""

from __future__ import annotations

import numpy as np

from featlt.errors import FeatltError

CHUNK = 50  # resamples drawn at once (memory: CHUNK x n rows per backbone)
INTERVAL = (2.5, 97.5)  # percentiles of a 95% interval


def resampled_recall(
    y_true: np.ndarray, correct: np.ndarray, n_classes: int, n_bootstrap: int, seed: int
) -> np.ndarray:
    """Per-class recall of every backbone on every paired resample of the rows.

    Args:
        y_true: (n,) int class ids in 0..C-1 of the evaluation rows.
        correct: (M, n) bool, whether backbone m predicted row i right.
        n_bootstrap: B resamples; seed: seeds them.
    Returns:
        (B, M, C) float64 recall; NaN where a class drew no rows.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[1] != y_true.shape[0]:
        raise FeatltError(
            f"paired bootstrap: predictions of shape {correct.shape} do not match "
            f"{y_true.shape[0]} labels; score every backbone on the same rows"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n, n_models = y_true.shape[0], correct.shape[0]
    out = np.empty((n_bootstrap, n_models, n_classes))
    for start in range(0, n_bootstrap, CHUNK):
        b = min(CHUNK, n_bootstrap - start)
        rows = rng.integers(0, n, size=(b, n))
        cell = (np.arange(b)[:, None] * n_classes + y_true[rows]).ravel()
        seen = np.bincount(cell, minlength=b * n_classes).reshape(b, n_classes)
        for m in range(n_models):
            hits = np.bincount(cell, weights=correct[m][rows].ravel().astype(np.float64),
                               minlength=b * n_classes).reshape(b, n_classes)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:start + b, m] = np.where(seen > 0, hits / seen, np.nan)
    return out


def class_mean(recall: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Mean recall over ``classes`` (all when None) on the last axis, skipping NaN (NaN when no
    class is finite): e.g. (B, M, C) -> (B, M)."""
    picked = recall if classes is None else recall[..., np.asarray(classes)]
    finite = np.isfinite(picked)
    total = np.where(finite, picked, 0.0).sum(axis=-1)
    count = finite.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def percentile_interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval ``[low, high]`` of resampled values (B,)."""
    low, high = np.nanpercentile(np.asarray(values, dtype=np.float64), INTERVAL)
    return [float(low), float(high)]


def probability_best(resampled: np.ndarray) -> np.ndarray:
    """(M,) share of resamples in which each backbone has the highest value.

    Args:
        resampled: (B, M) a score of every backbone per resample (NaN counts as lowest).
    Ties share the resample equally.
    """
    values = np.where(np.isnan(resampled), -np.inf, resampled)
    top = values == values.max(axis=1, keepdims=True)
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
