"""Feature moments streamed block by block: counts, class sums, Gram matrices, covariance.

LogME needs the uncentred Gram matrix ``X^T X`` and the class-balanced one ``sum_i w_i x_i x_i^T``;
PCA needs the covariance. One pass over the rows (block by block, rows grouped by class inside
a block) gives all three with one float32 matrix product per class and block: rows are shifted
by an approximate mean before the product (so float32 rounding acts on small centred values)
and the sums are accumulated in float64.
Memory: O(C D + D^2) besides the features; no N x N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featlt.cluster.rows import Rows, as_rows

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
    X: np.ndarray | Rows, y: np.ndarray, n_classes: int, block_rows: int = BLOCK_ROWS
) -> FeatureMoments:
    """Moments of ``X`` (n, D) float32 (an array, or :class:`~featlt.cluster.rows.Rows`
    read block by block) with labels ``y`` (n,) int in 0..C-1.

    Each block's rows are grouped by class, so a class's Gram matrix is one product per block
    (a store written class by class gives about one class per block).
    """
    rows = as_rows(X)
    n, dim = rows.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    weights = class_weights(counts)
    shift: np.ndarray | None = None
    gram_s = np.zeros((dim, dim))
    gram_w = np.zeros((dim, dim))
    sums_s = np.zeros((n_classes, dim))  # class sums of the shifted rows
    for first, block in rows.blocks():
        if shift is None:  # an approximate mean: rows are shifted by it before the products
            shift = block[: min(block.shape[0], 4096)].mean(axis=0, dtype=np.float64)
            shift32 = shift.astype(np.float32)
        labels = y[first:first + block.shape[0]]
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        edges = np.flatnonzero(np.diff(sorted_labels)) + 1
        for part in np.split(order, edges):
            for start in range(0, part.size, block_rows):
                piece = block[part[start:start + block_rows]] - shift32
                c = int(labels[part[0]])
                gram_c = (piece.T @ piece).astype(np.float64)
                gram_s += gram_c
                gram_w += weights[c] * gram_c
                sums_s[c] += piece.sum(axis=0, dtype=np.float64)
    assert shift is not None
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
