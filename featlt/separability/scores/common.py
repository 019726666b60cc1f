"""Input checks every score shares.

Per-class recall and its means live in :mod:`featlt.evaluation.metrics`, class sums in
:mod:`featlt.cluster.prototypes`.
"""

from __future__ import annotations

import numpy as np

from featlt.cluster.faiss_ops import as_float32_rows
from featlt.errors import FeatltError


def check_xy(X: np.ndarray, y: np.ndarray, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Validate a feature matrix and its labels.

    Args:
        X: (n, D) finite features; y: (n,) non-negative integer class ids.
    Returns:
        (X as C-contiguous float32, y as int64).
    """
    X = as_float32_rows(X, what)
    return X, check_labels(y, X.shape[0], what)


def check_labels(y: np.ndarray, n_rows: int, what: str = "features") -> np.ndarray:
    """``y`` (n_rows,) non-negative integer class ids of ``n_rows`` rows, as int64."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise FeatltError(
            f"{what}: {n_rows} rows but labels of shape {y.shape}; pass one label per row"
        )
    if n_rows == 0:
        raise FeatltError(f"{what}: no rows; pass a non-empty split")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise FeatltError(f"{what}: labels must be non-negative integer class ids")
    return y.astype(np.int64)


def n_classes_of(y: np.ndarray, n_classes: int | None) -> int:
    """C: ``n_classes`` when given (checked against the labels), else ``y.max() + 1``."""
    top = int(y.max()) + 1
    if n_classes is None:
        return top
    if top > n_classes:
        raise FeatltError(
            f"labels reach {top - 1} but n_classes is {n_classes}; pass the right class count"
        )
    return int(n_classes)
