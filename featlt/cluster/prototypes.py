"""Unit-norm feature rows, class sums and cosine scores against class means (NCM prototypes).

The one implementation, shared by the NCM head (:mod:`featlt.heads.ncm`), the separability
report's kNN / NCM scores (:mod:`featlt.separability.scores.neighbours`) and spherical k-means
(:mod:`featlt.cluster.faiss_ops`). Nearest class mean on centred, L2-normalised features
("cl2n", Kang et al. 2020) is described in docs/methods.md.

Every function works in the dtype it is given (float32 for the large separability arrays, float64
for the heads), so callers keep their precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NORM_FLOOR = 1e-12  # rows with a smaller norm are divided by this (all-zero rows stay zero)


def l2_normalise(X: Any, dtype: Any = np.float32) -> np.ndarray:
    """Rows of ``X`` (n, D) scaled to unit L2 norm, as a new (n, D) array of ``dtype``.

    A row is divided by ``max(||row||, NORM_FLOOR)`` (``torch.nn.functional.normalize``'s rule),
    so an all-zero row stays zero instead of becoming NaN.
    """
    return _unit_rows_in_place(np.array(X, dtype=dtype))


def centred_unit(X: Any, mean: Any, dtype: Any = np.float32) -> np.ndarray:
    """``l2_normalise(X - mean)``: rows of ``X`` (n, D) centred by ``mean`` (D,), unit norm.

    The subtraction happens in ``dtype``, in place on one copy of ``X`` (no second (n, D)
    temporary); returns a new (n, D) array of ``dtype``.
    """
    centred = np.array(X, dtype=dtype)
    centred -= np.asarray(mean, dtype=dtype)
    return _unit_rows_in_place(centred)


def _unit_rows_in_place(X: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))  # no (n, D) temporary, unlike np.linalg.norm
    X /= np.maximum(norms, NORM_FLOOR)[:, None]
    return X


def class_sums(
    values: Any, y: np.ndarray, n_classes: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """(C, k) float64 per-class sums of the rows of ``values`` (n, k).

    float32 rows are summed in float32 (one block of rows at a time is summed by the caller, the
    blocks' sums added in float64); anything else in float64.

    Args:
        values: (n, k) rows; y: (n,) int class ids in 0..C-1.
        weights: (n,) optional row weights (the sum is then ``sum_i w_i values_i``).
    """
    import scipy.sparse as sp

    values = np.asarray(values)
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    data = np.ones(y.size, dtype) if weights is None else np.asarray(weights, dtype=dtype)
    indicator = sp.csr_matrix((data, (y, np.arange(y.size))), shape=(n_classes, y.size))
    return np.asarray(indicator @ np.asarray(values, dtype=dtype), dtype=np.float64)


def cosine_to_means(U: np.ndarray, means: np.ndarray, zero_mean_score: float) -> np.ndarray:
    """Cosine of every unit row of ``U`` (n, D) with every class mean (C, D): (n, C) float64.

    ``means`` may be class sums instead (the cosine does not depend on their scale). A class
    whose mean is the zero vector (no rows, or rows that cancel) has no direction: its column
    is ``zero_mean_score`` (``-inf`` so it is never predicted, or ``0.0`` for finite logits).
    """
    norms = np.linalg.norm(means, axis=1)
    dots = np.asarray(U, dtype=np.float64) @ np.asarray(means, dtype=np.float64).T
    cos = np.full(dots.shape, float(zero_mean_score))
    np.divide(dots, norms[None, :], out=cos, where=norms[None, :] > 0)
    return cos
