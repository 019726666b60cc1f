"""A global k-means: purity and NMI.

Purity and NMI [standard]: faiss k-means with K = the number of present classes on the training
features; purity is the share of samples whose cluster's majority class is their class, NMI is
scikit-learn's ``normalized_mutual_info_score`` between classes and clusters. Both in [0, 1],
higher is better; both are sample-weighted, so head classes dominate them.

One k-means run can land in a poor local optimum, so the score would move with ``--seed``
(purity 1.0 vs 0.67 on three small classes). k-means is therefore restarted up to 10 times
(as many as a fixed compute budget allows; large problems, which are stable, get fewer) from
seeds derived from ``--seed``, and the run with the lowest inertia (the k-means objective,
which never looks at the labels) gives the scores, as in scikit-learn's ``KMeans(n_init=...)``;
the range of purity and NMI over the restarts is reported beside them.

The density mixture and its densest fraction live in :mod:`featlt.cluster.density` (the DLSA
stages reuse them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featlt.cluster.faiss_ops import FaissContext, KMeansResult, assign, kmeans, training_rows
from featlt.cluster.rows import Rows, take_in_order


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
    n_init: int = 1  # k-means restarts; the lowest-inertia run gives the scores
    purity_range: tuple[float, float] = (0.0, 0.0)  # (min, max) over the restarts
    nmi_range: tuple[float, float] = (0.0, 0.0)


def purity_score(y: np.ndarray, clusters: np.ndarray) -> float:
    """Share of samples whose cluster's majority class is their own class."""
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    _, class_ids = np.unique(y, return_inverse=True)
    n_classes = int(class_ids.max()) + 1
    table = np.bincount(cluster_ids * n_classes + class_ids,
                        minlength=(int(cluster_ids.max()) + 1) * n_classes)
    return float(table.reshape(-1, n_classes).max(axis=1).sum() / y.size)


# Restarts are cheap where they matter: a small problem (few points per class) flips between
# optima with the seed; a large one averages over many points and is stable from one start.
RESTART_BUDGET = 2e10  # multiply-adds of all restarts together (a few seconds on 2 CPU cores)
MAX_RESTARTS = 10


def default_restarts(work_per_run: float) -> int:
    """k-means restarts that fit :data:`RESTART_BUDGET`: 1..MAX_RESTARTS."""
    return int(np.clip(RESTART_BUDGET // max(work_per_run, 1.0), 1, MAX_RESTARTS))


def global_clustering(
    X: np.ndarray | Rows, y: np.ndarray, context: FaissContext, n_clusters: int | None = None,
    seed: int = 0, niter: int = 20, max_points_per_centroid: int = 256, n_init: int | None = None,
) -> ClusteringScores:
    """Purity and NMI of the best of ``n_init`` seeded faiss k-means of ``X`` (n, D) against
    labels ``y`` (n,); best = lowest inertia.

    Args:
        X: an (n, D) array (faiss draws each run's training sample), or
            :class:`~featlt.cluster.rows.Rows` read block by block (each run reads the rows
            faiss would draw, so the centroids equal the in-memory run's; then every row is
            assigned block by block).
        n_clusters: K; None: the number of distinct labels.
        max_points_per_centroid: faiss trains on at most K times this many sampled points; all
            points are assigned.
        n_init: restarts, seeded from ``seed``; None: :func:`default_restarts`.
    """
    from sklearn.metrics import normalized_mutual_info_score

    k = int(np.unique(y).size) if n_clusters is None else int(n_clusters)
    n, dim = X.shape
    n_sampled = min(n, k * max_points_per_centroid)
    n_init = n_init or default_restarts(n_sampled * k * dim * niter)
    seeds = np.random.SeedSequence(seed).generate_state(n_init)
    if isinstance(X, np.ndarray):
        runs = [kmeans(X, k, context, seed=int(run_seed) % 2**31, niter=niter,
                       max_points_per_centroid=max_points_per_centroid,
                       what="global clustering features") for run_seed in seeds]
    else:
        runs = _sampled_runs(X, k, context, seeds, niter, max_points_per_centroid)
    purity = [purity_score(y, run.labels) for run in runs]
    nmi = [float(normalized_mutual_info_score(y, run.labels)) for run in runs]
    best = int(np.argmin([run.inertia for run in runs]))
    result = runs[best]
    return ClusteringScores(
        purity=purity[best], nmi=nmi[best],
        n_clusters=k, inertia=result.inertia, n_train_points=result.n_train_points,
        max_points_per_centroid=max_points_per_centroid, n_empty=result.n_empty,
        device=context.record(), n_init=n_init,
        purity_range=(min(purity), max(purity)), nmi_range=(min(nmi), max(nmi)),
    )


def _sampled_runs(
    rows: Rows, k: int, context: FaissContext, seeds: np.ndarray, niter: int,
    max_points_per_centroid: int,
) -> list[KMeansResult]:
    """One k-means per seed on the rows faiss would draw for it (:func:`training_rows`, read
    from ``rows``: the centroids of the in-memory run), every row then assigned block by block
    (labels, squared distances and inertia over all n rows)."""
    n = rows.shape[0]
    runs = []
    for run_seed in seeds:
        run_seed = int(run_seed) % 2**31
        sample = take_in_order(rows, training_rows(n, k, max_points_per_centroid, run_seed))
        run = kmeans(sample, k, context, seed=run_seed, niter=niter,
                     max_points_per_centroid=None, what="global clustering features")
        del sample
        labels, sq = np.empty(n, np.int64), np.empty(n, np.float32)
        for first, block in rows.blocks():
            part = slice(first, first + block.shape[0])
            sq[part], labels[part] = assign(block, run.centroids, context)
        runs.append(replace(run, labels=labels, sq_distances=sq,
                            inertia=float(sq.sum(dtype=np.float64)),
                            n_empty=int(k - np.unique(labels).size)))
    return runs
