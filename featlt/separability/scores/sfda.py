"""SFDA (Shao et al., ECCV 2022): Self-challenging Fisher Discriminant Analysis. Higher is better.

What the score computes, written here from the formulas as the authors' code
(TencentARC/SFDA) evaluates them [code]; the notation follows docs/methods.md:

1. Regularised Fisher discriminant with the empirical class priors ``pi_c = n_c / N``:
   within-class scatter ``S_w = sum_c pi_c Cov_c`` (population covariances), shrunk towards a
   scaled identity, ``S_w(l) = (1 - l) S_w + l tr(S_w) / D I`` with the adaptive strength
   ``l = max(exp(-5 lambda_max(S_w)), 1e-10)``. The authors project onto every generalised
   eigenvector of ``(S_b, S_w(l))``; since those vectors ``V`` satisfy ``V V^T = S_w(l)^-1``, the
   class scores are the shrunk-LDA discriminants
   ``g_c(x) = x S_w(l)^-1 mu_c - 1/2 mu_c S_w(l)^-1 mu_c + log pi_c`` and ``p(c | x)`` their
   softmax. (The authors estimate ``lambda_max`` with three power iterations; featlt takes the
   largest eigenvalue to convergence, by Lanczos.)
2. ConfMix (the self-challenging step): the probabilities are softened by a second softmax,
   ``q = softmax(p)``, and every sample moves towards the mean of the *other* classes' means,
   ``x_i <- q_i x_i + (1 - q_i) m_{-y_i}``, ``q_i = q(y_i | x_i)``,
   ``m_{-c} = mean_{k != c} mu_k`` (unweighted), with the class means of the original features.
3. The same discriminant (same ``l``) is fitted again on the mixed features; the score is the
   mean probability of the true class, ``1/N sum_i p'(y_i | x'_i)`` (no logarithm, as in the
   authors' code).

Prior-weighted throughout, so head classes dominate, as the issue and docs/methods.md say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from featlt.cluster.prototypes import class_sums
from featlt.cluster.rows import Rows
from featlt.errors import FeatltError
from featlt.separability.scores.common import check_labels, check_xy, n_classes_of

MIN_SHRINKAGE = 1e-10  # the authors' floor on the adaptive shrinkage
SHRINKAGE_RATE = 5.0  # l = exp(-5 lambda_max(S_w))
EIGEN_FLOOR = 1e-12  # relative floor on S_w(l)'s eigenvalues before inverting (rank-deficient X)
BLOCK_ROWS = 8192  # rows per float64 block (memory: BLOCK_ROWS x D x 8 bytes)
SMALL_DIM = 16  # up to this many dimensions the largest eigenvalue comes from a full eigvalsh


@dataclass(frozen=True)
class SFDAResult:
    """SFDA and the quantities behind it."""

    score: float  # mean true-class probability after ConfMix, in (0, 1]
    shrinkage: float  # the adaptive strength l used by both discriminants
    first_pass_score: float  # mean true-class probability before ConfMix


@dataclass(frozen=True)
class _Discriminant:
    """A shrunk-LDA fitted on (X, y): ``g(X) = X @ coef.T + intercept``."""

    coef: np.ndarray  # (C, D) float64 S_w(l)^-1 mu_c, rows of absent classes unused
    intercept: np.ndarray  # (C,) float64, -inf for absent classes
    means: np.ndarray  # (C, D) float64 class means

    def proba(self, X: np.ndarray) -> np.ndarray:
        """(n, C) float64 class probabilities of the rows of X (n, D)."""
        return softmax(X.astype(np.float64) @ self.coef.T + self.intercept, axis=1)


Blocks = Callable[[], Iterator[tuple[int, np.ndarray]]]  # (first row, (b, D) rows), re-iterable


def _within_scatter(blocks: Blocks, y: np.ndarray, n_classes: int, dim: int) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:
    """(S_w (D, D), class means (C, D), priors (C,)) with S_w = sum_c pi_c Cov_c, in float64,
    from two passes over the (n, D) rows ``blocks()`` gives.

    The rows are centred on their class mean before the product (float64 blocks): the
    shrinkage can be as small as 1e-10 of the mean variance, far below float32 rounding.
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, dim))
    for first, block in blocks():
        sums += class_sums(block.astype(np.float64), y[first:first + block.shape[0]], n_classes)
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    scatter = np.zeros((dim, dim))
    for first, block in blocks():
        centred = block.astype(np.float64) - means[y[first:first + block.shape[0]]]
        scatter += centred.T @ centred
    scatter /= y.shape[0]
    return (scatter + scatter.T) / 2, means, counts / y.shape[0]


def adaptive_shrinkage(scatter: np.ndarray) -> float:
    """``max(exp(-5 lambda_max(S_w)), 1e-10)`` for the within-class scatter (D, D)."""
    from scipy.sparse.linalg import eigsh

    if scatter.shape[0] <= SMALL_DIM:
        top = float(np.linalg.eigvalsh(scatter)[-1])
    else:  # Lanczos: the largest eigenvalue alone, ~20x faster than a full decomposition
        top = float(eigsh(scatter, k=1, which="LA", return_eigenvectors=False)[0])
    return max(float(np.exp(-SHRINKAGE_RATE * top)), MIN_SHRINKAGE)


def _solve(shrunk: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(C, D) ``means @ shrunk^-1`` for the symmetric (D, D) ``shrunk``: Cholesky when it is
    positive definite, else an eigendecomposition with its eigenvalues floored."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    try:
        return cho_solve(cho_factor(shrunk), means.T).T
    except LinAlgError:
        eigvals, eigvecs = np.linalg.eigh(shrunk)
        eigvals = np.maximum(eigvals, EIGEN_FLOOR * max(float(eigvals.max()), EIGEN_FLOOR))
        return ((means @ eigvecs) / eigvals) @ eigvecs.T


def _fit(
    blocks: Blocks, y: np.ndarray, n_classes: int, dim: int, shrinkage: float | None
) -> tuple[_Discriminant, float]:
    scatter, means, priors = _within_scatter(blocks, y, n_classes, dim)
    if shrinkage is None:
        shrinkage = adaptive_shrinkage(scatter)
    dim = scatter.shape[0]
    shrunk = (1.0 - shrinkage) * scatter
    shrunk.flat[:: dim + 1] += shrinkage * np.trace(scatter) / dim
    coef = _solve(shrunk, means)  # (C, D) = means S_w(l)^-1
    with np.errstate(divide="ignore"):
        intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return _Discriminant(coef=coef, intercept=intercept, means=means), shrinkage


def _true_class_probability(
    disc: _Discriminant, block: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """(b,) float64 p(y_i | x_i) of the rows of ``block`` (b, D) with labels (b,)."""
    proba = disc.proba(block)
    return proba[np.arange(proba.shape[0]), labels]


def _blocks(X: np.ndarray | Rows) -> Blocks:
    """The re-iterable blocks of an array (of :data:`BLOCK_ROWS` rows) or of ``Rows``."""
    if isinstance(X, np.ndarray):
        return lambda: ((s, X[s:s + BLOCK_ROWS]) for s in range(0, X.shape[0], BLOCK_ROWS))
    return X.blocks


def sfda(X: np.ndarray | Rows, y: np.ndarray, n_classes: int | None = None) -> SFDAResult:
    """SFDA of features ``X`` (n, D) (an array, or :class:`~featlt.cluster.rows.Rows` read by
    chunks: seven passes, nothing of size n x D held) for labels ``y`` (n,) in 0..C-1; higher
    is better.

    Needs at least two classes with samples; absent classes are ignored (prior 0).
    """
    if isinstance(X, np.ndarray):
        X, y = check_xy(X, y, "SFDA features")
    else:
        y = check_labels(y, X.shape[0], "SFDA features")
    n_classes = n_classes_of(y, n_classes)
    present = np.flatnonzero(np.bincount(y, minlength=n_classes))
    if present.size < 2:
        raise FeatltError(
            f"SFDA features: only {present.size} class has samples; SFDA needs at least 2"
        )
    dim, blocks = X.shape[1], _blocks(X)
    first, shrinkage = _fit(blocks, y, n_classes, dim, None)
    # ConfMix: the true-class probability of the softened posteriors mixes each sample with
    # the mean of the other present classes' means.
    soft, first_pass = np.empty(y.shape[0]), np.empty(y.shape[0])
    for start, block in blocks():
        labels = y[start:start + block.shape[0]]
        proba = first.proba(block)
        first_pass[start:start + labels.size] = proba[np.arange(labels.size), labels]
        posterior = softmax(proba, axis=1)
        soft[start:start + labels.size] = posterior[np.arange(labels.size), labels]
    means = first.means[present]
    other_means = np.zeros_like(first.means)
    other_means[present] = (means.sum(axis=0) - means) / (present.size - 1)

    def mixed() -> Iterator[tuple[int, np.ndarray]]:
        for start, block in blocks():
            part = slice(start, start + block.shape[0])
            yield start, (soft[part, None] * block + (1.0 - soft[part, None])
                          * other_means[y[part]]).astype(np.float32)

    second, _ = _fit(mixed, y, n_classes, dim, shrinkage)
    final = np.concatenate([_true_class_probability(second, block, y[s:s + block.shape[0]])
                            for s, block in mixed()])
    return SFDAResult(score=float(final.mean()), shrinkage=shrinkage,
                      first_pass_score=float(first_pass.mean()))
