"""Drawn rows for the report's k-means stages (global clustering, density, classwise split).

A k-means with K centroids trains on at most K times ``max_points_per_centroid`` rows (faiss's
own rule, 256 by default); the report draws those rows itself when it does not hold every row
(``evaluate-separability --memory-budget``) and, by default, for the density mixture and the
classwise split (:class:`featlt.separability.evaluate.SeparabilityConfig`). ``sample_rows`` caps
what any one stage holds at once; a stage gets fewer points per centroid under a tight cap, never
fewer than :data:`MIN_POINTS_PER_CENTROID`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from featlt.cluster.faiss_ops import FaissContext
from featlt.cluster.rows import Rows
from featlt.cluster.splitting import ClasswiseSplit, classwise_split, default_n_ref, plan_splits

if TYPE_CHECKING:
    from featlt.separability.evaluate import SeparabilityConfig

MIN_POINTS_PER_CENTROID = 39  # below this faiss warns that the centroids are poorly estimated


def points_per_centroid(configured: int, k: int, sample_rows: int | None, n: int) -> int:
    """The training points per centroid of a k-means with ``k`` centroids on ``n`` rows:
    ``configured``, lowered to what ``sample_rows`` rows hold when they cannot hold
    ``min(n, k x configured)`` (never below :data:`MIN_POINTS_PER_CENTROID`)."""
    if sample_rows is None or sample_rows >= min(n, k * configured):
        return configured
    return max(MIN_POINTS_PER_CENTROID, min(configured, sample_rows // max(k, 1)))


def split_sample(
    y: np.ndarray, k_plan: np.ndarray, per_centroid: int, seed: int
) -> np.ndarray:
    """(s,) sorted rows: every row of a class with ``n_c <= K_c x per_centroid``, else that many
    drawn rows of the class (seeded per class)."""
    counts = np.bincount(y, minlength=k_plan.size)
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    seeds = np.random.SeedSequence(seed).spawn(k_plan.size)
    chosen = []
    for c in np.flatnonzero(counts):
        rows = order[bounds[c]:bounds[c + 1]]
        cap = int(k_plan[c]) * per_centroid
        if rows.size > cap:
            rows = np.random.default_rng(seeds[c]).choice(rows, cap, replace=False)
        chosen.append(rows)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def sampled_split(
    X: Rows, y: np.ndarray, n_classes: int, config: SeparabilityConfig, context: FaissContext,
    sample_rows: int | None,
) -> ClasswiseSplit:
    """The classwise split planned on every row's class counts, each class's k-means and
    balanced assignment run on at most ``K_c x split_max_points_per_centroid`` drawn rows (fewer
    when ``sample_rows`` caps the total). The split's counts (``class_counts``, ``sub_counts``)
    are those of the drawn rows; ``k_planned`` and ``n_ref`` those of every row."""
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    k_plan = plan_splits(counts, config.split_n_ref, config.split_min_size)
    per_centroid = points_per_centroid(config.split_max_points_per_centroid,
                                       int(k_plan[counts > 0].sum()), sample_rows, y.size)
    rows = split_sample(y, k_plan, per_centroid, config.seed)
    split = classwise_split(
        X.take(rows), y[rows], n_classes=n_classes, k_per_class=k_plan, m_min=config.split_min_size,
        seed=config.seed, niter=config.cluster_niter, device=context.requested,
        threads=context.threads)
    n_ref = default_n_ref(counts) if config.split_n_ref is None else float(config.split_n_ref)
    return replace(split, n_ref=n_ref, rows_drawn=int(rows.size),
                   max_points_per_centroid=per_centroid)
