"""PCA, GBC and Bhattacharyya overlaps between class Gaussians.

GBC (Pandy et al., CVPR 2022) [code]: features reduced to 64 dimensions by PCA fitted on the
training features; each class a Gaussian with the per-dimension (population) variances floored at
1e-4 — spherical by default (the mean of those variances), diagonal optional; the score is minus
the sum over ordered class pairs (c, c'), c != c', of the Bhattacharyya coefficient
``exp(-D_B(c, c'))``. It is <= 0; higher (closer to 0) is better. As in the reference code, the
spherical log-determinant term uses the scalar variance once (a D-dimensional spherical Gaussian
would multiply it by D).

Bhattacharyya overlap matrix [featlt's design]: diagonal Gaussians in the same PCA space, each
class's variances shrunk toward the pooled within-class variance,
``v_c = (n_c v_c_raw + k v_pooled) / (n_c + k)``, so a tail class with fewer samples than
dimensions still gets a usable covariance; the coefficient uses the exact diagonal-Gaussian
formula. Reduced to shot-group x shot-group means in :mod:`featlt.separability.scores.bins`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from featlt.cluster.prototypes import class_sums
from featlt.cluster.rows import Rows, as_rows
from featlt.errors import FeatltError
from featlt.separability.scores.common import check_xy, n_classes_of
from featlt.separability.scores.moments import FeatureMoments, feature_moments

GBC_DIM = 64  # PCA dimensions, as in Pandy et al.
VARIANCE_FLOOR = 1e-4  # as in the reference code
PRIOR_STRENGTH = 10.0  # pseudo-samples of pooled variance added to each class (overlap matrix)
PAIR_BLOCK = 256  # rows of the class x class matrix computed at once

GaussianType = Literal["spherical", "diagonal"]


@dataclass(frozen=True)
class PCABasis:
    """A PCA fitted on training features."""

    mean: np.ndarray  # (D,) float64
    components: np.ndarray  # (D, k) float64, orthonormal columns, by decreasing variance
    explained_variance: np.ndarray  # (k,) float64

    def project(self, block: np.ndarray) -> np.ndarray:
        """(b, k) float64 coordinates of the rows of ``block`` (b, D), computed in float32
        (centred first, so rounding acts on small values)."""
        centred = np.asarray(block, dtype=np.float32) - self.mean.astype(np.float32)
        return (centred @ self.components.astype(np.float32)).astype(np.float64)


def pca_basis(moments: FeatureMoments, n_components: int = GBC_DIM) -> PCABasis:
    """The top ``min(n_components, D, N - 1)`` principal directions (at least 1)."""
    dim = moments.mean.size
    k = max(1, min(int(n_components), dim, moments.n - 1))
    import scipy.linalg

    values, vectors = scipy.linalg.eigh(moments.covariance, subset_by_index=[dim - k, dim - 1])
    order = np.argsort(values)[::-1]
    return PCABasis(mean=moments.mean, components=vectors[:, order],
                    explained_variance=np.clip(values[order], 0.0, None))


@dataclass(frozen=True)
class ClassGaussians:
    """Per-class Gaussians in a PCA space."""

    counts: np.ndarray  # (C,) int64
    means: np.ndarray  # (C, k) float64; NaN rows for absent classes
    variances: np.ndarray  # (C, k) float64 population variances (0 for one-sample classes)


def class_gaussians(
    Z: np.ndarray | Rows, y: np.ndarray, n_classes: int,
    project: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ClassGaussians:
    """Class means and per-dimension variances of the rows of ``Z`` (n, k) (an array or
    :class:`~featlt.cluster.rows.Rows`), each block mapped by ``project`` first when given
    (e.g. :meth:`PCABasis.project` of (n, D) features): one pass, class sums of the values and
    of their squares in float64."""
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    sums = squares = None
    for first, block in as_rows(Z).blocks():
        values = project(block) if project is not None else np.asarray(block, np.float64)
        labels = y[first:first + block.shape[0]]
        part, part_sq = class_sums(values, labels, n_classes), class_sums(values**2, labels,
                                                                           n_classes)
        sums, squares = (part, part_sq) if sums is None else (sums + part, squares + part_sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
        variances = np.maximum(squares / counts[:, None] - means**2, 0.0)
    return ClassGaussians(counts=counts, means=means, variances=variances)


def shrink_variances(
    gaussians: ClassGaussians, prior_strength: float = PRIOR_STRENGTH
) -> np.ndarray:
    """(C, k) class variances shrunk toward the pooled within-class variance (floored)."""
    present = gaussians.counts > 0
    n = gaussians.counts[present].sum()
    pooled = (gaussians.counts[present, None] * gaussians.variances[present]).sum(0) / n
    counts = gaussians.counts[:, None].astype(np.float64)
    shrunk = (counts * np.nan_to_num(gaussians.variances) + prior_strength * pooled) / (
        counts + prior_strength)
    return np.maximum(shrunk, VARIANCE_FLOOR)


def bhattacharyya_rows(
    means: np.ndarray, variances: np.ndarray, gaussian: GaussianType, block: int = PAIR_BLOCK
) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks of the (C, C) Bhattacharyya distance matrix, never the whole matrix at once.

    Args:
        means: (C, k); variances: (C, k) per-dimension variances (floored by the caller).
        gaussian: ``spherical`` (GBC reference: scalar variance, log term once) or ``diagonal``
            (exact diagonal-Gaussian formula).
    Yields:
        (start, distances): distances (b, C) float64 for classes start..start+b-1.
    """
    n_classes = means.shape[0]
    if gaussian == "spherical":
        var = variances.mean(axis=1)
        sq = (means**2).sum(1)
        for start in range(0, n_classes, block):
            rows = slice(start, start + block)
            dist2 = np.maximum(sq[rows, None] + sq[None, :] - 2 * means[rows] @ means.T, 0.0)
            avg = (var[rows, None] + var[None, :]) / 2
            log_term = np.log(avg) - 0.5 * np.log(var[rows, None]) - 0.5 * np.log(var[None, :])
            yield start, dist2 / (8 * avg) + 0.5 * log_term
    elif gaussian == "diagonal":
        log_var = np.log(variances)
        for start in range(0, n_classes, block):
            mu, var, lv = means[start:start + block], variances[start:start + block], log_var[
                start:start + block]
            avg = (var[:, None, :] + variances[None, :, :]) / 2
            quad = ((mu[:, None, :] - means[None, :, :]) ** 2 / (8 * avg)).sum(-1)
            log_term = (np.log(avg) - 0.5 * lv[:, None, :] - 0.5 * log_var[None, :, :]).sum(-1)
            yield start, quad + 0.5 * log_term
    else:
        raise FeatltError(f"Gaussian type '{gaussian}': unknown; use spherical or diagonal")


@dataclass(frozen=True)
class GBCResult:
    """GBC and its per-class terms."""

    score: float  # -sum_{c != c'} BC(c, c'); <= 0, higher (closer to 0) is better
    per_class: np.ndarray  # (C,) -sum_{c' != c} BC(c, c'); NaN for absent classes
    n_components: int
    gaussian: str
    variance_floor: float


def gbc_from_gaussians(
    gaussians: ClassGaussians, gaussian: GaussianType = "spherical"
) -> GBCResult:
    """GBC over the classes present in ``gaussians``."""
    present = np.flatnonzero(gaussians.counts > 0)
    means = gaussians.means[present]
    variances = np.maximum(gaussians.variances[present], VARIANCE_FLOOR)
    per_present = np.zeros(present.size)
    for start, dist in bhattacharyya_rows(means, variances, gaussian):
        coeff = np.exp(-dist)
        coeff[np.arange(coeff.shape[0]), start + np.arange(coeff.shape[0])] = 0.0
        per_present[start:start + coeff.shape[0]] = -coeff.sum(1)
    per_class = np.full(gaussians.counts.size, np.nan)
    per_class[present] = per_present
    return GBCResult(score=float(per_present.sum()), per_class=per_class,
                     n_components=int(gaussians.means.shape[1]), gaussian=gaussian,
                     variance_floor=VARIANCE_FLOOR)


def gbc(
    X: np.ndarray, y: np.ndarray, n_classes: int | None = None, n_components: int = GBC_DIM,
    gaussian: GaussianType = "spherical",
) -> GBCResult:
    """GBC of ``X`` (n, D) with labels ``y`` (n,): PCA fitted on X, then class Gaussians.

    Higher (closer to 0) is better.
    """
    X, y = check_xy(X, y, "GBC features")
    n_classes = n_classes_of(y, n_classes)
    basis = pca_basis(feature_moments(X, y, n_classes), n_components)
    return gbc_from_gaussians(class_gaussians(X, y, n_classes, basis.project), gaussian)
