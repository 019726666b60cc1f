"""A global k-means (purity, NMI) and the density mixture behind DLSA's observation.

Purity and NMI [standard]: faiss k-means with K = the number of present classes on the training
features; purity is the share of samples whose cluster's majority class is their class, NMI is
scikit-learn's ``normalized_mutual_info_score`` between classes and clusters. Both in [0, 1],
higher is better; both are sample-weighted, so head classes dominate them.

Density and the densest fraction [featlt's design, ALGORITHMS.md §3, a reconstruction]: a faiss
k-means with K_d clusters becomes a mixture ``log p(z) = log sum_k pi_k N(z; mu_k, s_k^2 I)`` with
``pi_k = n_k / N`` (cluster sizes) and ``s_k^2`` the cluster's per-dimension variance shrunk toward
the global one with ``prior_strength`` pseudo-samples. DLSA observed that the densest samples are
dominated by head classes; the make-up of the top ``rho`` fraction by ``log p`` against the make-up
of all training samples shows how strongly this backbone does that. It is descriptive (no
better/worse direction).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featlt.faiss_ops import FaissContext, kmeans

BLOCK_ROWS = 32768


@dataclass(frozen=True)
class ClusteringScores:
    """Purity and NMI of a global k-means."""

    purity: float  # in [0, 1]; higher is better
    nmi: float  # in [0, 1]; higher is better
    n_clusters: int
    inertia: float
    n_train_points: int
    max_points_per_centroid: int
    n_empty: int
    device: dict[str, Any] = field(default_factory=dict)


def purity_score(y: np.ndarray, clusters: np.ndarray) -> float:
    """Share of samples whose cluster's majority class is their own class."""
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    _, class_ids = np.unique(y, return_inverse=True)
    n_classes = int(class_ids.max()) + 1
    table = np.bincount(cluster_ids * n_classes + class_ids,
                        minlength=(int(cluster_ids.max()) + 1) * n_classes)
    return float(table.reshape(-1, n_classes).max(axis=1).sum() / y.size)


def global_clustering(
    X: np.ndarray, y: np.ndarray, context: FaissContext, n_clusters: int | None = None,
    seed: int = 0, niter: int = 20, max_points_per_centroid: int = 256,
) -> ClusteringScores:
    """Purity and NMI of a seeded faiss k-means of ``X`` (n, D) against labels ``y`` (n,).

    Args:
        n_clusters: K; None: the number of distinct labels.
        max_points_per_centroid: faiss trains on at most K times this many sampled points; all
            points are assigned.
    """
    from sklearn.metrics import normalized_mutual_info_score

    k = int(np.unique(y).size) if n_clusters is None else int(n_clusters)
    result = kmeans(X, k, context, seed=seed, niter=niter,
                    max_points_per_centroid=max_points_per_centroid,
                    what="global clustering features")
    return ClusteringScores(
        purity=purity_score(y, result.labels),
        nmi=float(normalized_mutual_info_score(y, result.labels)),
        n_clusters=k, inertia=result.inertia, n_train_points=result.n_train_points,
        max_points_per_centroid=result.max_points_per_centroid, n_empty=result.n_empty,
        device=context.record(),
    )


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


def log_density(X: np.ndarray, mixture: DensityMixture) -> np.ndarray:
    """(n,) float64 ``log p(z)`` of the rows of ``X`` (n, D) under the mixture (blockwise)."""
    from scipy.special import logsumexp

    dim = X.shape[1]
    centroids = mixture.centroids.astype(np.float32)
    c_sq = (centroids.astype(np.float64) ** 2).sum(axis=1)
    const = mixture.log_weights - 0.5 * dim * np.log(2 * np.pi * mixture.variances)
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], BLOCK_ROWS):
        block = X[start:start + BLOCK_ROWS]
        x_sq = (block.astype(np.float64) ** 2).sum(axis=1)
        dist = np.maximum(x_sq[:, None] + c_sq[None, :] - 2.0 * (block @ centroids.T), 0.0)
        out[start:start + block.shape[0]] = logsumexp(
            const[None, :] - dist / (2 * mixture.variances[None, :]), axis=1)
    return out


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
