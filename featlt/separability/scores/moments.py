"""Feature moments streamed class by class: counts, class sums, Gram matrices, covariance.

LogME needs the uncentred Gram matrix ``X^T X`` and the class-balanced one ``sum_i w_i x_i x_i^T``;
PCA needs the covariance. One pass over the rows, grouped by class, gives all three with one
float32 matrix product per block: rows are shifted by an approximate mean before the product (so
float32 rounding acts on small centred values) and the sums are accumulated in float64.
Memory: O(C D + D^2) besides the features; no N x N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_ROWS = 16384


@dataclass(frozen=True)
class FeatureMoments:
    """First and second moments of a labelled feature matrix."""

    n: int
    counts: np.ndarray  # (C,) int64 rows per class
    class_sums: np.ndarray  # (C, D) float64 sum of each class's rows
    mean: np.ndarray  # (D,) float64
    gram: np.ndarray  # (D, D) float64 sum_i x_i x_i^T (uncentred)
    covariance: np.ndarray  # (D, D) float64 population covariance
    class_weights: np.ndarray  # (C,) float64 w_c = n / (C_present n_c); 0 for absent classes
    gram_balanced: np.ndarray  # (D, D) float64 sum_i w_{y_i} x_i x_i^T

    @property
    def total_variance(self) -> float:
        """Trace of the covariance: 0 when all rows are identical."""
        return float(np.trace(self.covariance))


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Class-balanced sample weights ``n / (C_present n_c)`` (sum over samples = n); 0 if absent."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def feature_moments(
    X: np.ndarray, y: np.ndarray, n_classes: int, block_rows: int = BLOCK_ROWS
) -> FeatureMoments:
    """Moments of ``X`` (n, D) float32 with labels ``y`` (n,) int in 0..C-1."""
    n, dim = X.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    weights = class_weights(counts)
    shift = X[: min(n, 4096)].mean(axis=0, dtype=np.float64)
    shift32 = shift.astype(np.float32)
    gram_s = np.zeros((dim, dim))
    gram_w = np.zeros((dim, dim))
    sums_s = np.zeros((n_classes, dim))  # class sums of the shifted rows
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for c in np.flatnonzero(counts):
        rows = order[bounds[c]:bounds[c + 1]]
        gram_c = np.zeros((dim, dim))
        for start in range(0, rows.size, block_rows):
            block = X[rows[start:start + block_rows]] - shift32
            gram_c += block.T @ block
            sums_s[c] += block.sum(axis=0, dtype=np.float64)
        gram_s += gram_c
        gram_w += weights[c] * gram_c
    total_s = sums_s.sum(axis=0)
    total_w = weights @ sums_s
    mean_s = total_s / n
    gram = gram_s + np.outer(shift, total_s) + np.outer(total_s, shift) + n * np.outer(shift, shift)
    gram_balanced = (gram_w + np.outer(shift, total_w) + np.outer(total_w, shift)
                     + n * np.outer(shift, shift))  # sum_i w_i = n
    covariance = gram_s / n - np.outer(mean_s, mean_s)
    return FeatureMoments(
        n=int(n), counts=counts, class_sums=sums_s + counts[:, None] * shift[None, :],
        mean=shift + mean_s, gram=(gram + gram.T) / 2, covariance=(covariance + covariance.T) / 2,
        class_weights=weights, gram_balanced=(gram_balanced + gram_balanced.T) / 2,
    )
