"""Class-balanced ridge probe scored by exact leave-one-out predictions. Higher is better.

[featlt's design; a candidate cheap score of issue 17] The score estimates what a linear probe
on the frozen features reaches on the rare classes, without training one per held-out row:

- features: centred on the training mean and L2-normalised
  (:func:`featlt.cluster.prototypes.centred_unit`, the kNN/NCM preprocessing);
- targets: one-hot class indicators ``Y`` (n, C);
- sample weights ``s_i = 1 / n_{y_i}`` (every class carries total weight 1);
- a weighted ridge regression with an *unpenalised* intercept,
  ``min_{W, b} sum_i s_i |y_i - b - W^T x_i|^2 + lam |W|^2``, for a grid of ``lam``;
- the prediction of row i by the model fitted without row i, in closed form:
  ``yhat_(-i) = (yhat_i - h_i y_i) / (1 - h_i)`` with ``h_i = s_i / sum(s) + s_i xc_i^T
  (Xc^T S Xc + lam I)^{-1} xc_i`` and ``xc_i`` the row minus the *weighted* feature mean; the
  predicted class is the argmax. The intercept is exact, not approximated: the derivation is in
  docs/methods.md ("Candidate probe scores").

One eigendecomposition serves the whole grid: with ``Xs = S^{1/2} Xc`` and ``G`` the
coordinates of ``Xs`` in the eigenbasis of ``Xs^T Xs`` (D x D, when n >= D) or ``G = U diag(sqrt
e)`` from the eigenbasis of ``Xs Xs^T`` (n x n, when n < D), every ``lam`` costs one (n, r) x
(r, C) product and one (n, r) x (r,) product, r = min(n, D).

What leave-one-out leaves in: the centring mean, the normalisation and the class weights are
computed once on all rows (the row left out keeps none of its own weight in the refit, but the
other rows of its class keep ``1 / n_c``, not ``1 / (n_c - 1)``). A class with a single row has
no example left when that row is held out, so its column is predicted as exactly 0 for it; such a
row is never scored: the class gets NaN recall and is listed in ``excluded_classes`` (as for
kNN / NCM), but it still competes as a candidate class for every other row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from featlt.cluster.prototypes import centred_unit
from featlt.errors import FeatltError
from featlt.evaluation.metrics import mean_over_classes, per_class_recall
from featlt.evaluation.shots import shot_groups
from featlt.separability.scores.common import check_xy, n_classes_of

#: ridge strengths relative to the mean nonzero eigenvalue of the weighted Gram matrix:
#: 1e-6 ... 1e3, four per decade (37 values)
RELATIVE_GRID: tuple[float, ...] = tuple(float(v) for v in np.logspace(-6.0, 3.0, 37))
EIGEN_FLOOR = 1e-12  # eigenvalues below this times the largest are treated as 0
LEVERAGE_CEILING = 1.0 - 1e-10  # h_i above this would make (1 - h_i) meaningless
CHUNK_ENTRIES = 2**25  # float64 entries of the LOO predictions computed at once (256 MiB)
ROW_BLOCK_BYTES = 2**24  # rows of G projected or squared at once (16 MiB of float64)


@dataclass(frozen=True)
class RidgeProbeResult:
    """The leave-one-out class-balanced ridge probe over a grid of ridge strengths."""

    balanced_accuracy: float  # best leave-one-out balanced accuracy over the grid
    tail_recall: float | None  # mean LOO recall of the tail-third classes at the best lam
    best_lambda: float  # the (absolute) ridge strength that gave it; ties: the largest lam
    at_grid_edge: bool  # the first or the last lam of the grid attains the best value
    grid: np.ndarray  # (L,) float64 absolute ridge strengths, ascending
    balanced_accuracies: np.ndarray  # (L,) float64 LOO balanced accuracy at every lam
    per_class_recall: np.ndarray  # (C,) float64 LOO recall at the best lam; NaN: not scored
    excluded_classes: list[int]  # classes with a single row (cannot be scored by LOO)
    eigen_scale: float  # mean nonzero eigenvalue of Xc^T S Xc; grid = eigen_scale * relative
    form: str  # "primal" (D x D eigendecomposition) or "kernel" (n x n)


@dataclass(frozen=True)
class RidgeBasis:
    """What one eigendecomposition leaves for every ridge strength.

    With ``Xs = S^{1/2} Xc`` (n, D) and its thin SVD ``Xs = U diag(sqrt(e)) V^T``:
    ``G = U diag(sqrt(e))`` (n, r), ``e`` (r,) eigenvalues of ``Xs^T Xs`` (= of ``Xs Xs^T``).
    ``G`` is written over ``Xs`` and ``G ** 2`` (the leverages' factor) is formed a block of rows
    at a time, never whole: at the widths of ``rank --pairs`` (12k x 2,560) each whole (n, D)
    copy is 250 MB of fresh memory, which cost seconds on the 2-core VM (docs/methods.md,
    "Cost of scoring").
    """

    G: np.ndarray  # (n, r) float64
    eigvals: np.ndarray  # (r,) float64, >= 0
    GtT: np.ndarray  # (r, C) float64: G^T S^{1/2} (Y - 1 ybar_s^T)
    y_bar: np.ndarray  # (C,) float64 weighted target mean (the intercept's share)
    s: np.ndarray  # (n,) float64 sample weights
    form: str


def _prepare(X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed features (n, D) float64 and sample weights (n,) float64 ``1 / n_{y_i}``."""
    Z = centred_unit(X, X.mean(axis=0, dtype=np.float64), np.float64)
    counts = np.bincount(y, minlength=n_classes)
    return Z, 1.0 / counts[y]


def ridge_basis(Z: np.ndarray, y: np.ndarray, s: np.ndarray, n_classes: int,
                overwrite_features: bool = False) -> RidgeBasis:
    """The eigenbasis of the weighted, weighted-centred features, shared by every ridge strength.

    Args:
        Z: (n, D) float64 features (already preprocessed); y: (n,) int64 class ids in 0..C-1;
        s: (n,) float64 positive sample weights; n_classes: C.
        overwrite_features: work in ``Z``'s memory (afterwards it holds ``Xs``, or ``G`` in the
            primal form) instead of in a copy, as scipy's ``overwrite_a``: for a caller that has
            no further use for ``Z``.
    """
    n, dim = Z.shape
    total = float(s.sum())
    x_bar = (s @ Z) / total  # (D,) weighted mean: the exact intercept centres on it
    Y = np.zeros((n, n_classes))
    Y[np.arange(n), y] = 1.0
    y_bar = (s @ Y) / total
    root = np.sqrt(s)
    Xs = Z if overwrite_features else Z.copy()
    Xs -= x_bar
    Xs *= root[:, None]
    if n >= dim:
        eigvals, V = scipy.linalg.eigh(Xs.T @ Xs, driver="evd", check_finite=False)
        G = _times_in_place(Xs, V)
        form = "primal"
    else:
        eigvals, U = scipy.linalg.eigh(Xs @ Xs.T, driver="evd", check_finite=False)
        eigvals = np.clip(eigvals, 0.0, None)
        G = U * np.sqrt(eigvals)[None, :]
        form = "kernel"
    eigvals = np.clip(eigvals, 0.0, None)
    # eigh returns ascending eigenvalues, so the kept ones are a trailing block: a column slice
    # is a view, where a boolean mask would copy the whole (n, r) G
    first = int(np.searchsorted(eigvals, EIGEN_FLOOR * max(float(eigvals.max()), EIGEN_FLOOR),
                                side="right"))
    G, eigvals = G[:, first:], eigvals[first:]
    T = (Y - y_bar) * root[:, None]
    return RidgeBasis(G=G, eigvals=eigvals, GtT=G.T @ T, y_bar=y_bar, s=s, form=form)


def _row_block(width: int) -> int:
    """Rows per block of a (n, ``width``) float64 array: about :data:`ROW_BLOCK_BYTES`."""
    return max(1, ROW_BLOCK_BYTES // max(1, 8 * width))


def _times_in_place(A: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``A @ V`` written over ``A`` (n, D) float64, for a square ``V`` (D, D), a block of rows at
    a time (each output row needs only its own input row); returns ``A``."""
    step = _row_block(A.shape[1])
    buffer = np.empty((min(step, A.shape[0]), V.shape[1]))
    for start in range(0, A.shape[0], step):
        rows = A[start:start + step]
        out = buffer[:rows.shape[0]]
        np.matmul(rows, V, out=out)
        rows[...] = out
    return A


def _leverages(basis: RidgeBasis, inverse: np.ndarray) -> np.ndarray:
    """(n, L) float64 ``s_i / sum(s) + sum_j G_ij^2 inverse[l, j]``, ``G ** 2`` formed a block of
    rows at a time (:data:`ROW_BLOCK_BYTES`).

    Args:
        inverse: (L, r) float64 ``1 / (e_j + lambda_l)``.
    """
    G = basis.G
    out = np.empty((G.shape[0], inverse.shape[0]))
    step = _row_block(G.shape[1])
    for start in range(0, G.shape[0], step):
        block = G[start:start + step]
        np.matmul(block * block, inverse.T, out=out[start:start + step])
    out += (basis.s / basis.s.sum())[:, None]
    return out


def loo_predictions_grid(basis: RidgeBasis, y: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of the weighted ridge with intercept at several strengths.

    All strengths share one pass over ``G``: the (n, r) x (r, L C) product is compute-bound,
    where one (n, r) x (r, C) product per strength would be bound by reading ``G`` from memory.

    Args:
        basis: from :func:`ridge_basis`; y: (n,) int64 class ids; lambdas: (L,) strengths > 0.
    Returns:
        (L, n, C) float64: entry [l, i] is the model fitted at ``lambdas[l]`` without row i,
        evaluated at row i.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64).reshape(-1)
    inverse = 1.0 / (basis.eigvals[None, :] + lambdas[:, None])  # (L, r)
    n, C = y.size, basis.y_bar.size
    s = basis.s
    weighted = (basis.GtT[None, :, :] * inverse[:, :, None]).transpose(1, 0, 2)  # (r, L, C)
    fitted = (basis.G @ weighted.reshape(weighted.shape[0], -1)).reshape(n, lambdas.size, C)
    fitted /= np.sqrt(s)[:, None, None]
    fitted += basis.y_bar
    leverage = _leverages(basis, inverse)  # (n, L)
    if (leverage > LEVERAGE_CEILING).any():
        row, col = np.unravel_index(int(np.argmax(leverage)), leverage.shape)
        raise FeatltError(
            f"ridge probe: row {int(row)} has leverage {float(leverage[row, col]):.12f} at lambda "
            f"{float(lambdas[col]):g} (its leave-one-out refit is undefined); use larger ridge "
            "strengths"
        )
    fitted[np.arange(n), :, y] -= leverage
    fitted /= (1.0 - leverage)[:, :, None]
    return fitted.transpose(1, 0, 2)


def loo_predictions(basis: RidgeBasis, y: np.ndarray, lam: float) -> np.ndarray:
    """Leave-one-out predictions (n, C) float64 at one strength ``lam`` > 0: row i is the model
    fitted without row i, evaluated at row i (:func:`loo_predictions_grid` with one strength)."""
    return loo_predictions_grid(basis, y, np.array([lam]))[0]


def _grid_chunks(n: int, n_classes: int, n_lambdas: int) -> int:
    """Strengths per :func:`loo_predictions_grid` call: its (L, n, C) output stays near
    :data:`CHUNK_ENTRIES` float64 entries."""
    return max(1, min(n_lambdas, CHUNK_ENTRIES // max(1, n * n_classes)))


def _check(X: np.ndarray, y: np.ndarray, n_classes: int | None) -> tuple[np.ndarray, np.ndarray,
                                                                         int]:
    X32, y = check_xy(X, y, "ridge probe features")  # shapes, finite rows, labels
    # float64 input keeps its precision; float32/float16 input is upcast once
    X = X32 if np.asarray(X).dtype != np.float64 else np.asarray(X)
    C = n_classes_of(y, n_classes)
    counts = np.bincount(y, minlength=C)
    if np.count_nonzero(counts) < 2:
        raise FeatltError(
            f"ridge probe: the labels hold a single class ({int(np.flatnonzero(counts)[0])}); a "
            "probe needs at least 2 classes: pass a view with several classes"
        )
    if np.count_nonzero(counts >= 2) == 0:
        raise FeatltError(
            "ridge probe: every class has a single row, so leave-one-out cannot score any of "
            "them; pass a view with at least 2 rows in some class"
        )
    return X, y, C


def _relative_grid(relative_grid: Sequence[float] | None) -> np.ndarray:
    grid = np.asarray(RELATIVE_GRID if relative_grid is None else relative_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or (grid <= 0).any():
        raise FeatltError(
            f"ridge probe: relative_grid must be a non-empty list of finite positive ridge "
            f"strengths, got {grid.tolist()!r}; pass e.g. numpy.logspace(-6, 3, 37)"
        )
    return np.unique(grid)  # sorted ascending, duplicates dropped


def ridge_probe(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int | None = None,
    relative_grid: Sequence[float] | None = None,
) -> RidgeProbeResult:
    """The best leave-one-out balanced accuracy of a class-balanced ridge probe over a grid.

    Args:
        X: (n, D) finite features (any float dtype; computed in float64).
        y: (n,) non-negative int class ids.
        n_classes: C (default ``y.max() + 1``); absent classes get NaN recall.
        relative_grid: (L,) positive ridge strengths as multiples of the mean nonzero eigenvalue
            of the weighted Gram matrix (default :data:`RELATIVE_GRID`, 1e-6 ... 1e3).
    Returns:
        :class:`RidgeProbeResult`; the tail recall is over the tail third of classes by training
        count (:func:`featlt.evaluation.shots.shot_groups`).
    Raises:
        FeatltError: non-finite or mis-shaped input, a single class, no class with 2 rows, a bad
        grid.
    """
    X, y, C = _check(X, y, n_classes)
    relative = _relative_grid(relative_grid)
    Z, s = _prepare(X, y, C)
    basis = ridge_basis(Z, y, s, C, overwrite_features=True)
    del Z  # overwritten by the basis, which keeps what the grid needs
    counts = np.bincount(y, minlength=C)
    eigen_scale = float(basis.eigvals.mean()) if basis.eigvals.size else 1.0
    grid = eigen_scale * relative
    scored = counts[y] >= 2
    y_scored = y[scored]
    scored_counts = np.bincount(y_scored, minlength=C)
    present = scored_counts > 0
    # Per-lam recall as a bincount (sklearn's recall_score costs ~0.1 s per call at 17k rows);
    # the best lam's per-class recall below comes from featlt's per_class_recall, and a test
    # pins the two to the same balanced accuracy.
    accuracies = np.empty(grid.size)
    step = _grid_chunks(y.size, C, grid.size)
    for start in range(0, grid.size, step):
        loo = loo_predictions_grid(basis, y, grid[start:start + step])
        predicted = loo[:, scored, :].argmax(axis=2)  # (l, m)
        for k, row in enumerate(predicted, start):
            hits = np.bincount(y_scored[row == y_scored], minlength=C)
            accuracies[k] = float((hits[present] / scored_counts[present]).mean())
    best_value = float(accuracies.max())
    best = int(np.flatnonzero(accuracies == best_value)[-1])  # ties: the strongest ridge
    predicted = loo_predictions(basis, y, float(grid[best])).argmax(axis=1)
    recall = per_class_recall(y_scored, predicted[scored], C)
    tail = shot_groups(counts)["tail_third"]
    return RidgeProbeResult(
        balanced_accuracy=best_value,
        tail_recall=None if tail is None else mean_over_classes(recall[tail]),
        best_lambda=float(grid[best]),
        at_grid_edge=bool(accuracies[0] == best_value or accuracies[-1] == best_value),
        grid=grid,
        balanced_accuracies=accuracies,
        per_class_recall=recall,
        excluded_classes=[int(c) for c in np.flatnonzero(counts == 1)],
        eigen_scale=eigen_scale,
        form=basis.form,
    )
