"""A global k-means: purity and NMI.

Purity and NMI [standard]: faiss k-means with K = the number of present classes on the training
features; purity is the share of samples whose cluster's majority class is their class, NMI is
scikit-learn's ``normalized_mutual_info_score`` between classes and clusters. Both in [0, 1],
higher is better; both are sample-weighted, so head classes dominate them.

The density mixture and its densest fraction live in :mod:`featlt.cluster.density` (the DLSA
stages reuse them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featlt.cluster.faiss_ops import FaissContext, kmeans


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
