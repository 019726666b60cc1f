"""``evaluate-separability`` / ``rank --memory-budget MB``: how the report keeps a budget.

The budget is resident memory above the level right after imports, as for ``fit-classifier``
(:mod:`featlt.heads.budget`; the units and the glibc setting are :mod:`featlt.store.memory`).
Under a budget the training rows are read from the store a chunk at a time
(:class:`featlt.cluster.rows.StoreRows`): moments, LogME, GBC's class Gaussians, NCM and the kNN
search (the fixed query sample against each chunk, each chunk's top k merged) stream; what is
held whole is per-row bookkeeping, the kNN queries and validation rows, the D x D moment matrices
and the rows each k-means stage (global clustering, density, split) trains on, drawn to fit
(:mod:`featlt.separability.samples`). A budget below the smallest plan (chunks of
:data:`~featlt.store.memory.MIN_CHUNK_ROWS` rows, k-means samples of
:data:`~featlt.separability.samples.MIN_POINTS_PER_CENTROID` rows per centroid) is refused,
naming that plan's budget. Constants are bytes, measured on synthetic stores
(tests/test_separability_budget.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from featlt.cluster.splitting import plan_splits
from featlt.errors import FeatltError
from featlt.evaluation.shots import shot_groups
from featlt.separability.samples import MIN_POINTS_PER_CENTROID
from featlt.separability.scores.clustering import default_restarts
from featlt.separability.scores.neighbours import stratified_query_rows
from featlt.store.memory import MB, MIN_CHUNK_ROWS, return_freed_memory

if TYPE_CHECKING:
    from featlt.data.protocol import DataView
    from featlt.separability.evaluate import SeparabilityConfig
    from featlt.store.feature_store import FeatureStore

# Allocations that do not scale with the data: torch's bfloat16 matmul and faiss on first use,
# HDF5's chunk cache, scikit-learn's NMI, the class x class and bin matrices.
OVERHEAD_MB = 32.0
# Per training row held whole: labels of the split and of the view (int64), the view's rows,
# the k-means labels and distances of every clustering restart, NCM predictions and masks.
ROW_BYTES = 48
RESTART_ROW_BYTES = 12  # per row and global-clustering restart (int64 label, float32 distance)
# Per element of a chunk: the stored block read (4), the selected rows (4), the float32 chunk
# (4), its centred unit copy (4), its bfloat16 copy (2), a class's shifted rows (4), margin (4).
CHUNK_ELEMENT_BYTES = 26
# Per (query, chunk row): the bfloat16 similarities (2) and torch's top-k work space (2).
QUERY_CHUNK_BYTES = 4
# Per element of a query or validation row: read, centred unit copy, bfloat16 copy, gathers.
QUERY_ELEMENT_BYTES = 16
# Per element of a k-means sample: the rows (4) and one working copy (a class's rows, or
# L2-normalised rows) (4).
SAMPLE_ELEMENT_BYTES = 8
MATRIX_COPIES = 10  # D x D float64 matrices alive at once (Gram matrices, covariance, eigh)
FULL_POINTS_PER_CENTROID = 256  # what a sample holds when the budget allows (faiss's default)
GOOD_CHUNK_ROWS = 2048  # chunks kept at least this large when the budget allows (speed)


@dataclass(frozen=True)
class ReportSizes:
    """What a plan is made from."""

    n_train: int
    n_val: int
    dim: int
    n_queries: int  # kNN training queries (at most --knn-queries plus every few-shot row)
    n_centroids: int  # the most centroids of one k-means stage (density, clustering or split)
    n_restarts: int  # global-clustering restarts (their labels are held together)


@dataclass(frozen=True)
class ReportPlan:
    """How a report keeps ``budget_mb``: chunks of ``chunk_rows`` rows, k-means samples of at
    most ``sample_rows`` rows; ``need_mb`` is the estimate of that plan."""

    budget_mb: float
    chunk_rows: int
    sample_rows: int
    need_mb: float

    def record(self) -> dict[str, float | int]:
        return {"mb": self.budget_mb, "chunk_rows": self.chunk_rows,
                "sample_rows": self.sample_rows, "estimate_mb": round(self.need_mb, 1)}


def fixed_mb(sizes: ReportSizes) -> float:
    """What the report holds whatever the chunk and sample sizes."""
    queries = (sizes.n_queries + sizes.n_val) * sizes.dim * QUERY_ELEMENT_BYTES
    rows = sizes.n_train * (ROW_BYTES + RESTART_ROW_BYTES * sizes.n_restarts)
    matrices = MATRIX_COPIES * sizes.dim**2 * 8
    return OVERHEAD_MB + (queries + rows + matrices) / MB


def chunk_row_mb(sizes: ReportSizes) -> float:
    """Memory per row of a chunk."""
    return (sizes.dim * CHUNK_ELEMENT_BYTES
            + (sizes.n_queries + sizes.n_val) * QUERY_CHUNK_BYTES) / MB


def sample_row_mb(sizes: ReportSizes) -> float:
    """Memory per row of a k-means sample."""
    return sizes.dim * SAMPLE_ELEMENT_BYTES / MB


def plan_report(sizes: ReportSizes, budget_mb: float, what: str) -> ReportPlan:
    """Chunk and sample sizes that keep ``budget_mb``, or refuse it.

    The sample comes first, since it decides the k-means stages' results (the chunk size only
    their speed): up to :data:`FULL_POINTS_PER_CENTROID` rows per centroid (as in memory),
    leaving chunks of :data:`GOOD_CHUNK_ROWS` rows (of the smallest chunk when the budget is
    tight); the chunks get the rest (never more than the training rows).

    Args:
        what: the input in words, for messages (``feature file X.h5``).
    Raises:
        FeatltError: the budget is below the smallest plan, naming its budget.
    """
    fixed = fixed_mb(sizes)
    per_chunk, per_sample = chunk_row_mb(sizes), sample_row_mb(sizes)
    least_sample = min(sizes.n_train, sizes.n_centroids * MIN_POINTS_PER_CENTROID)
    least_chunk = min(sizes.n_train, MIN_CHUNK_ROWS)
    minimum = fixed + least_chunk * per_chunk + least_sample * per_sample
    if budget_mb < minimum:
        raise FeatltError(
            f"--memory-budget {budget_mb:g}: below the smallest budget that works on {what} "
            f"(about {math.ceil(minimum)} MB: {fixed:.1f} MB held whole for first-use "
            f"allocations, labels, {sizes.n_queries} kNN queries, {sizes.n_val} validation rows "
            f"and the {sizes.dim} x {sizes.dim} moments, then chunks of {least_chunk} rows and "
            f"k-means samples of {least_sample} rows); pass "
            f"--memory-budget {math.ceil(minimum)} or more"
        )
    left = budget_mb - fixed
    full_sample = min(sizes.n_train, sizes.n_centroids * FULL_POINTS_PER_CENTROID)
    reserve = min(sizes.n_train, GOOD_CHUNK_ROWS)
    if left - reserve * per_chunk < least_sample * per_sample:
        reserve = least_chunk
    sample = int(np.clip((left - reserve * per_chunk) / per_sample, least_sample, full_sample))
    chunk = int(np.clip((left - sample * per_sample) / per_chunk, least_chunk, sizes.n_train))
    return ReportPlan(budget_mb, chunk, sample, fixed + chunk * per_chunk + sample * per_sample)


def report_plan(
    store: FeatureStore, view: DataView, y_train: np.ndarray, n_classes: int,
    config: SeparabilityConfig, budget_mb: float, what: str,
) -> ReportPlan:
    """The plan of the report on ``view`` of an open ``store`` (labels ``y_train`` (N,)) under
    ``budget_mb``, refused below the smallest plan; pins glibc's mmap threshold for the process
    (:func:`featlt.store.memory.return_freed_memory`)."""
    return_freed_memory()
    counts = np.bincount(y_train, minlength=n_classes)
    n, dim = int(y_train.size), store.info(view.train_split).dim
    present = int(np.count_nonzero(counts))
    n_density = min(n, config.density_clusters or max(present, min(256, n // 500)))
    n_split = int(plan_splits(counts, config.split_n_ref, config.split_min_size)[counts > 0].sum())
    queries = stratified_query_rows(y_train, n_classes, config.knn_queries,
                                    shot_groups(counts)["few"], seed=config.seed)
    sampled = min(n, present * config.cluster_max_points_per_centroid)
    sizes = ReportSizes(
        n_train=n, n_val=int(view.val_rows.size), dim=dim, n_queries=int(queries.size),
        n_centroids=max(n_density, present, n_split),
        n_restarts=default_restarts(sampled * present * dim * config.cluster_niter))
    return plan_report(sizes, budget_mb, what)
