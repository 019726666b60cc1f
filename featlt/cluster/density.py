"""The density mixture: each sample's log-density under a cluster-size-weighted Gaussian mixture.

[featlt's reconstruction of DLSA's density observation; docs/methods.md, "Density mixture"]
A faiss k-means with K_d clusters becomes a mixture
``log p(z) = log sum_k pi_k N(z; mu_k, s_k^2 I)`` with ``pi_k = n_k / N`` (cluster sizes) and
``s_k^2`` the cluster's per-dimension variance shrunk
toward the global one with ``prior_strength`` pseudo-samples. The separability report reads the
make-up of the densest fraction from it; the DLSA stages route samples with it.

Layer: cluster (may import errors, runtime, store, data, evaluation and featlt.cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from featlt.cluster.faiss_ops import FaissContext, kmeans, training_rows
from featlt.cluster.rows import Rows, selected_blocks, take_in_order

BLOCK_ELEMENTS = 2**19  # rows x clusters per block of log-densities (a few float64 copies)


@dataclass(frozen=True)
class DensityMixture:
    """A cluster-size-weighted isotropic Gaussian mixture on k-means clusters."""

    centroids: np.ndarray  # (K, D) float32
    log_weights: np.ndarray  # (K,) float64 log(n_k / N); -inf for empty clusters
    variances: np.ndarray  # (K,) float64 shrunk per-dimension variances
    global_variance: float  # per-dimension variance of all training rows
    prior_strength: float
    train_log_density: np.ndarray  # (N,) float64 log p(z) of the training rows


def fit_density(
    X: np.ndarray, context: FaissContext, n_clusters: int, global_variance: float,
    seed: int = 0, niter: int = 20, max_points_per_centroid: int = 256,
    prior_strength: float = 10.0,
) -> DensityMixture:
    """Fit the mixture on ``X`` (n, D) and return it with the training log-densities.

    Args:
        global_variance: per-dimension variance of X (trace of the covariance / D), > 0.
        prior_strength: pseudo-samples of ``global_variance`` added to each cluster's variance.
    """
    n, dim = X.shape
    result = kmeans(X, min(n_clusters, n), context, seed=seed, niter=niter,
                    max_points_per_centroid=max_points_per_centroid,
                    what="density clustering features")
    sizes = np.bincount(result.labels, minlength=result.k).astype(np.float64)
    scatter = np.bincount(result.labels, weights=result.sq_distances.astype(np.float64),
                          minlength=result.k) / dim
    variances = (scatter + prior_strength * global_variance) / (sizes + prior_strength)
    with np.errstate(divide="ignore"):
        log_weights = np.log(sizes / n)
    mixture = DensityMixture(
        centroids=result.centroids, log_weights=log_weights, variances=variances,
        global_variance=float(global_variance), prior_strength=float(prior_strength),
        train_log_density=np.empty(0),
    )
    return replace(mixture, train_log_density=log_density(X, mixture))


def sampled_densest_fraction(
    rows: Rows, y: np.ndarray, context: FaissContext, n_clusters: int, global_variance: float,
    groups: dict[str, np.ndarray | None], rho: float, n_fit: int, n_scored: int, seed: int = 0,
    niter: int = 20, prior_strength: float = 10.0,
) -> tuple[DensityMixture, dict[str, Any]]:
    """The mixture fitted on about ``n_fit`` rows of ``rows`` (n, D), the ones faiss would draw
    (:func:`~featlt.cluster.faiss_ops.training_rows`: the in-memory k-means' centroids; cluster
    sizes and variances from those rows too), and the densest-fraction make-up of ``n_scored``
    drawn rows (their log-densities computed block by block; ``y`` (n,) labels).

    Returns:
        (mixture with the fitting sample's ``train_log_density``, :func:`densest_fraction` of
        the scored sample with ``n_scored`` added).
    """
    n = rows.shape[0]
    k = min(n_clusters, n)
    fit_rows = training_rows(n, k, max(1, n_fit // k), seed)
    mixture = fit_density(take_in_order(rows, fit_rows), context, n_clusters, global_variance,
                          seed=seed, niter=niter, max_points_per_centroid=fit_rows.size,
                          prior_strength=prior_strength)
    rng = np.random.default_rng(seed)
    scored = np.sort(rng.choice(n, min(n, n_scored), replace=False))
    log_p = np.empty(scored.size)
    for first, block in selected_blocks(rows, scored):
        log_p[first:first + block.shape[0]] = log_density(block, mixture)
    dense = densest_fraction(log_p, y[scored], groups, rho)
    return mixture, {**dense, "n_scored": int(scored.size)}


def log_density(X: np.ndarray, mixture: DensityMixture) -> np.ndarray:
    """(n,) float64 ``log p(z)`` of the rows of ``X`` (n, D) under the mixture (blockwise)."""
    return log_density_and_cluster(X, mixture)[0]


def log_density_and_cluster(
    X: np.ndarray, mixture: DensityMixture
) -> tuple[np.ndarray, np.ndarray]:
    """``log p(z)`` (n,) float64 and the most likely component ``argmax_k pi_k N(z; mu_k,
    s_k^2 I)`` (n,) int64 of the rows of ``X`` (n, D), blockwise."""
    dim = X.shape[1]
    centroids = mixture.centroids.astype(np.float32)
    c_sq = (centroids.astype(np.float64) ** 2).sum(axis=1)
    const = mixture.log_weights - 0.5 * dim * np.log(2 * np.pi * mixture.variances)
    out = np.empty(X.shape[0])
    cluster = np.empty(X.shape[0], dtype=np.int64)
    step = max(1, BLOCK_ELEMENTS // centroids.shape[0])
    for start in range(0, X.shape[0], step):
        block = X[start:start + step]
        x_sq = (block.astype(np.float64) ** 2).sum(axis=1)
        dist = np.maximum(x_sq[:, None] + c_sq[None, :] - 2.0 * (block @ centroids.T), 0.0)
        joint = const[None, :] - dist / (2 * mixture.variances[None, :])
        best = joint.argmax(axis=1)
        top = joint[np.arange(best.size), best]
        with np.errstate(invalid="ignore"):  # -inf - -inf: an empty component, exp gives 0
            shifted = np.exp(joint - top[:, None])
        out[start:start + block.shape[0]] = top + np.log(np.nansum(shifted, axis=1))
        cluster[start:start + block.shape[0]] = best
    return out, cluster


def densest_fraction(
    log_p: np.ndarray, y: np.ndarray, groups: dict[str, np.ndarray | None], rho: float = 0.3
) -> dict[str, Any]:
    """Shot-group make-up of the top ``rho`` fraction of samples by density.

    Args:
        log_p: (n,) log-densities; y: (n,) labels.
        groups: shot group name -> class ids (None: empty group, reported as null).
    Returns:
        ``{"rho", "n_dense", "groups": {name: {"share_dense", "share_all", "enrichment"}}}``
        where enrichment = share_dense / share_all (> 1: over-represented among dense samples).
    """
    n_dense = max(1, int(np.ceil(rho * y.size)))
    dense = np.argsort(-log_p, kind="stable")[:n_dense]
    report: dict[str, Any] = {"rho": float(rho), "n_dense": n_dense, "groups": {}}
    for name, members in groups.items():
        if members is None:
            report["groups"][name] = None
            continue
        share_all = float(np.isin(y, members).mean())
        share_dense = float(np.isin(y[dense], members).mean())
        report["groups"][name] = {
            "share_dense": share_dense, "share_all": share_all,
            "enrichment": share_dense / share_all if share_all > 0 else None,
        }
    return report
