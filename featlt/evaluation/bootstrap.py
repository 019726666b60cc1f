"""The one bootstrap over evaluation rows and the one NaN-aware mean over classes in featlt.

- :func:`class_mean`: mean of per-class values over the classes present (finite), on the last
  axis of any array, e.g. (C,) -> (), (B, M, C) -> (B, M); NaN where no class is present.
  :func:`featlt.evaluation.metrics.mean_over_classes` is its scalar form (None for NaN).
- :func:`paired_bootstrap`: ``n_bootstrap`` resamples (with replacement, seeded) of the indices
  of the evaluation rows; every model is scored on the *same* resample (a paired bootstrap, so
  the difference of two models keeps its correlation). One ``bincount`` per chunk of resamples
  gives every class's hits and counts (a call of ``per_class_recall`` per resample would be
  ~100x slower). It feeds the intervals of :func:`featlt.evaluation.metrics.evaluate` (one
  model) and the measured ranking of ``featlt rank`` (several backbones).
- :func:`percentile_interval`: the 2.5-97.5 percentile interval of resampled values.
- :func:`probability_best`: the share of resamples in which each model has the highest value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featlt.errors import FeatltError

CHUNK = 50  # resamples drawn at once (memory: CHUNK x n rows per model)
INTERVAL = (2.5, 97.5)  # percentiles of a 95% interval


def class_mean(values: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Mean over the classes on the last axis, skipping NaN (classes not evaluated).

    Args:
        values: (..., C) per-class values, NaN (or inf) where a class was not evaluated.
        classes: class ids to average over (None: all C).
    Returns:
        (...) float64 mean over the finite entries; NaN where none is finite.
    """
    values = np.asarray(values, dtype=np.float64)
    picked = values if classes is None else values[..., np.asarray(classes, dtype=np.int64)]
    finite = np.isfinite(picked)
    total = np.where(finite, picked, 0.0).sum(axis=-1)
    count = finite.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class PairedResamples:
    """Every model's scores on every paired resample of the evaluation rows."""

    recall: np.ndarray  # (B, M, C) float64 per-class recall; NaN where a class drew no rows
    accuracy: np.ndarray  # (B, M) float64 share of the resampled rows predicted right


def paired_bootstrap(
    y_true: np.ndarray, correct: np.ndarray, n_classes: int, n_bootstrap: int, seed: int
) -> PairedResamples:
    """Per-class recall and accuracy of every model on every paired resample of the rows.

    Resample ``b`` draws ``n`` row indices uniformly with replacement
    (``numpy.random.default_rng(SeedSequence(seed)).integers(0, n, (chunk, n))``, chunks of
    :data:`CHUNK` resamples), the same indices for every model.

    Args:
        y_true: (n,) int class ids in 0..C-1 of the evaluation rows.
        correct: (M, n) bool, whether model m predicted row i right ((n,) for one model, M = 1).
        n_classes: C.
        n_bootstrap: B resamples (at least 1).
        seed: seeds the resamples.
    Returns:
        :class:`PairedResamples` with recall (B, M, C) and accuracy (B, M).
    Raises:
        FeatltError: ``correct`` does not have one entry per row, or there are no rows.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim == 1:
        correct = correct[None, :]
    if correct.ndim != 2 or correct.shape[1] != y_true.shape[0] or y_true.shape[0] == 0:
        raise FeatltError(
            f"paired bootstrap: predictions of shape {correct.shape} do not match "
            f"{y_true.shape[0]} labels; score every model on the same, non-empty rows"
        )
    if n_bootstrap < 1:
        raise FeatltError(f"paired bootstrap: {n_bootstrap} resamples; ask for at least 1")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n, n_models = y_true.shape[0], correct.shape[0]
    recall = np.empty((n_bootstrap, n_models, n_classes))
    accuracy = np.empty((n_bootstrap, n_models))
    for start in range(0, n_bootstrap, CHUNK):
        b = min(CHUNK, n_bootstrap - start)
        rows = rng.integers(0, n, size=(b, n))
        cell = (np.arange(b)[:, None] * n_classes + y_true[rows]).ravel()
        seen = np.bincount(cell, minlength=b * n_classes).reshape(b, n_classes)
        for m in range(n_models):
            hit = correct[m][rows].astype(np.float64)
            accuracy[start:start + b, m] = hit.mean(axis=1)
            hits = np.bincount(cell, weights=hit.ravel(),
                               minlength=b * n_classes).reshape(b, n_classes)
            with np.errstate(invalid="ignore", divide="ignore"):
                recall[start:start + b, m] = np.where(seen > 0, hits / seen, np.nan)
    return PairedResamples(recall=recall, accuracy=accuracy)


def percentile_interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval ``[low, high]`` of resampled values (B,), NaN skipped."""
    low, high = np.nanpercentile(np.asarray(values, dtype=np.float64), INTERVAL)
    return [float(low), float(high)]


def probability_best(resampled: np.ndarray) -> np.ndarray:
    """(M,) share of resamples in which each model has the highest value.

    Args:
        resampled: (B, M) a score of every model per resample (NaN counts as lowest).
    Ties share the resample equally.
    """
    values = np.where(np.isnan(resampled), -np.inf, resampled)
    top = values == values.max(axis=1, keepdims=True)
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
