"""The separability report: how well a feature space keeps rare classes apart (docs/methods.md).

:func:`evaluate_separability` computes every score of :mod:`featlt.separability.scores` on training
features (and held-out validation features where given) plus the classwise split plan;
:func:`evaluate_store` does it on any index view of a feature store and records the view and the
store's provenance. Every scalar score is listed in :data:`SCORES` with its direction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featlt.cluster.density import densest_fraction, fit_density, sampled_densest_fraction
from featlt.cluster.faiss_ops import FaissContext, resolve_faiss
from featlt.cluster.rows import ArrayRows, Rows, StoreRows
from featlt.cluster.splitting import classwise_split
from featlt.errors import FeatltError
from featlt.evaluation.metrics import group_means, mean_over_classes
from featlt.evaluation.shots import (
    ABSOLUTE_GROUPS,
    RELATIVE_GROUPS,
    class_group_labels,
    shot_groups,
)
from featlt.separability.budget import report_plan
from featlt.separability.samples import points_per_centroid, sampled_split
from featlt.separability.scores.bins import bhattacharyya_bin_matrix, knn_bin_matrix
from featlt.separability.scores.clustering import ClusteringScores, global_clustering
from featlt.separability.scores.common import check_labels, check_xy, n_classes_of
from featlt.separability.scores.gaussian import (
    ClassGaussians,
    class_gaussians,
    gbc_from_gaussians,
    pca_basis,
    shrink_variances,
)
from featlt.separability.scores.logme import logme_from_moments
from featlt.separability.scores.moments import FeatureMoments, feature_moments
from featlt.separability.scores.neighbours import (
    KNNResult,
    fit_ncm,
    knn_evaluate,
    ncm_holdout,
    ncm_loo,
    stratified_query_rows,
)

REPORT_KIND = "featlt.separability.evaluate"
REPORT_VERSION = 1


@dataclass(frozen=True)
class ScoreInfo:
    """What a scalar score means."""

    higher_is_better: bool
    description: str  # one line
    source: str  # [paper] / [code] / [standard] / [featlt design]


SCORES: dict[str, ScoreInfo] = {
    "knn_balanced_accuracy": ScoreInfo(
        True, "mean per-class leave-one-out kNN recall on the stratified training queries",
        "[standard]"),
    "knn_tail_recall": ScoreInfo(
        True, "mean leave-one-out kNN recall of the tail-third classes", "[featlt design]"),
    "ncm_balanced_accuracy": ScoreInfo(
        True, "mean per-class leave-one-out nearest-class-mean recall (cosine, centred)",
        "[code] Kang et al. 2020"),
    "ncm_tail_recall": ScoreInfo(
        True, "mean leave-one-out NCM recall of the tail-third classes", "[featlt design]"),
    "knn_balanced_accuracy_val": ScoreInfo(
        True, "kNN balanced accuracy of validation rows against the training rows", "[standard]"),
    "ncm_balanced_accuracy_val": ScoreInfo(
        True, "NCM balanced accuracy of validation rows, class means from training rows",
        "[code] Kang et al. 2020"),
    "logme": ScoreInfo(
        True, "LogME: mean over classes of the one-vs-rest max log evidence per sample",
        "[paper] You et al. 2021"),
    "logme_balanced": ScoreInfo(
        True, "LogME with class-balanced sample weights (each class the same total weight)",
        "[featlt design]"),
    "gbc": ScoreInfo(
        True, "GBC: minus the summed Bhattacharyya coefficients of class pairs after PCA-64 (<= 0)",
        "[code] Pandy et al. 2022"),
    "purity": ScoreInfo(
        True, "purity of a k-means with K = number of classes (sample-weighted)", "[standard]"),
    "nmi": ScoreInfo(
        True, "normalised mutual information between classes and k-means clusters",
        "[standard]"),
}


@dataclass(frozen=True)
class SeparabilityConfig:
    """Every setting of the report; echoed into it."""

    knn_k: int = 10  # neighbours that vote
    knn_queries: int = 2000  # stratified training queries (every few-shot sample included)
    knn_metric: str = "cosine"  # cosine: centred + L2-normalised features; l2: raw features
    pca_dim: int = 64  # GBC and the overlap matrix work in this many PCA dimensions (Pandy et al.)
    gbc_gaussian: str = "spherical"  # the GBC reference default; "diagonal" optional
    overlap_prior_strength: float = 10.0  # pseudo-samples of pooled variance per class (overlap)
    cluster_niter: int = 20  # Lloyd iterations of every k-means
    cluster_max_points_per_centroid: int = 256  # global clustering: faiss's default, set explicitly
    density_clusters: int | None = None  # K_d; None: max(C, min(256, N // 500))
    density_max_points_per_centroid: int = 256  # faiss's default, set explicitly
    density_prior_strength: float = 10.0  # pseudo-samples of global variance per cluster
    dense_fraction: float = 0.3  # DLSA's rho: the densest share of training samples examined
    split_n_ref: float | None = None  # CWS target sub-class size; None: median class size
    split_min_size: int = 20  # CWS m_min
    seed: int = 0
    # exact: the reference computation: exact float32 kNN search, the density mixture and the
    # classwise split on every row. Otherwise (default): kNN by bfloat16 candidates re-ranked
    # exactly (recall checked on a few queries), the density mixture fitted on
    # K_d x density_sample_points_per_centroid rows (of faiss's draw) and scored on density_rows
    # drawn rows, each class split on at most K_c x split_max_points_per_centroid drawn rows
    # (benchmarks/bench_separability.py measures both in one run; docs/scaling.md).
    exact: bool = False
    density_sample_points_per_centroid: int = 128
    density_rows: int = 200_000
    split_max_points_per_centroid: int = 256

    def check(self) -> None:
        """Raise :class:`FeatltError` for a setting outside its range."""
        if self.knn_k < 1:
            raise FeatltError(f"--knn-k {self.knn_k}: must be at least 1; pass e.g. 10")
        if self.knn_queries < 1:
            raise FeatltError(f"--knn-queries {self.knn_queries}: must be at least 1")
        if self.knn_metric not in ("cosine", "l2"):
            raise FeatltError(f"kNN metric '{self.knn_metric}': unknown; use cosine or l2")
        if self.pca_dim < 1:
            raise FeatltError(f"--pca-dim {self.pca_dim}: must be at least 1; pass e.g. 64")
        if self.gbc_gaussian not in ("spherical", "diagonal"):
            raise FeatltError(f"GBC Gaussian '{self.gbc_gaussian}': use spherical or diagonal")
        if not 0 < self.dense_fraction <= 1:
            raise FeatltError(f"dense fraction {self.dense_fraction}: must be in (0, 1]")
        if self.density_clusters is not None and self.density_clusters < 1:
            raise FeatltError(f"density clusters {self.density_clusters}: must be at least 1")
        if min(self.density_rows, self.split_max_points_per_centroid,
               self.density_sample_points_per_centroid) < 1:
            raise FeatltError(
                f"density rows {self.density_rows} / points per centroid of the density "
                f"{self.density_sample_points_per_centroid} and split "
                f"{self.split_max_points_per_centroid}: must be at least 1; e.g. 200000, 128, "
                "256")


@dataclass(frozen=True)
class SeparabilityReport:
    """The full report; ``record()`` is its JSON form."""

    scores: dict[str, float | None]
    data: dict[str, Any]
    per_class: dict[str, Any]
    group_scores: dict[str, Any]
    bin_matrices: dict[str, Any]
    densest_fraction: dict[str, Any]
    clustering: dict[str, Any]
    knn: dict[str, Any]
    split_plan: dict[str, Any]
    config: SeparabilityConfig
    faiss: dict[str, Any]
    timings: dict[str, float]
    input: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """JSON-able report: kind, version, input provenance, config, scores with directions."""
        from featlt import __version__

        return {
            "kind": REPORT_KIND, "report_version": REPORT_VERSION, "featlt_version": __version__,
            "input": self.input, "config": asdict(self.config), "faiss": self.faiss,
            "scores": self.scores,
            "score_info": {name: asdict(info) for name, info in SCORES.items()},
            "data": self.data, "per_class": self.per_class, "group_scores": self.group_scores,
            "bin_matrices": self.bin_matrices, "densest_fraction": self.densest_fraction,
            "clustering": self.clustering, "knn": self.knn, "split_plan": self.split_plan,
            "notes": self.notes, "timings": self.timings,
        }


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)


def _matrix_record(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in matrix]


def evaluate_separability(
    X_train: np.ndarray | Rows,
    y_train: np.ndarray,
    n_classes: int | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    config: SeparabilityConfig | None = None,
    context: FaissContext | None = None,
    class_names: list[str] | None = None,
    sample_rows: int | None = None,
) -> SeparabilityReport:
    """Every separability score of training features, and of validation features where given.

    Args:
        X_train: (N, D) training features, or :class:`~featlt.cluster.rows.Rows` read by chunks
            (a store under a memory budget); y_train: (N,) int class ids in 0..C-1.
        n_classes: C; None: ``y_train.max() + 1``.
        X_val, y_val: (n_val, D) and (n_val,) held-out rows (kNN and NCM only); optional.
        context: faiss device and threads; None: ``resolve_faiss("auto")`` (1 thread).
        sample_rows: at most this many rows are held by a k-means stage (None: no limit).
    """
    import threadpoolctl

    config = config or SeparabilityConfig()
    config.check()
    context = context or resolve_faiss("auto")
    if isinstance(X_train, np.ndarray):
        X, y = check_xy(X_train, y_train, "training features")
        rows: Rows = ArrayRows(X)
    else:  # read from a store, whose reader refuses non-finite rows
        rows, y = X_train, check_labels(y_train, X_train.shape[0], "training features")
    n_classes = n_classes_of(y, n_classes)
    if X_val is not None and y_val is not None and len(y_val) > 0:
        X_val, y_val = check_xy(X_val, y_val, "validation features")
        n_classes_of(y_val, n_classes)
        if X_val.shape[1] != rows.shape[1]:
            raise FeatltError(
                f"validation features have {X_val.shape[1]} dimensions, training "
                f"{rows.shape[1]}; "
                "use features of the same backbone"
            )
    else:
        X_val = y_val = None
    with threadpoolctl.threadpool_limits(limits=context.threads):
        return _evaluate(rows, y, n_classes, X_val, y_val, config, context, class_names,
                         sample_rows)


@dataclass
class _ReportParts:
    """What the steps of :func:`_evaluate` add to the report, in the order they run."""

    per_class: dict[str, Any]  # class -> value arrays, starting with "count" (C,)
    scores: dict[str, float | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _evaluate(
    X: Rows, y: np.ndarray, n_classes: int, X_val: np.ndarray | None,
    y_val: np.ndarray | None, config: SeparabilityConfig, context: FaissContext,
    class_names: list[str] | None, sample_rows: int | None = None,
) -> SeparabilityReport:
    """Every score of checked training rows ``X`` (N, D) (in memory, or read from a store by
    chunks), ``y`` (N,) (and validation rows).

    Args:
        sample_rows: at most this many rows are held at once by the k-means stages (global
            clustering, density, split: each trains on a drawn sample); None: no limit.
    """
    counts = _training_counts(y, n_classes)
    parts = _ReportParts(per_class={"count": counts})
    moments = _moments(X, y, n_classes, parts)
    groups = shot_groups(counts)
    absent = np.flatnonzero(counts == 0)
    if absent.size:
        parts.notes.append(f"classes {absent.tolist()} have no training samples and are left out")
    _logme_scores(moments, parts)
    gaussians, shrunk = _gaussian_scores(X, y, n_classes, moments, config, parts)
    clustering = _clustering_scores(X, y, config, context, parts, sample_rows)
    dense = _densest_fraction(X, y, moments, groups, int(np.count_nonzero(counts)), config,
                              context, parts, sample_rows)
    queries, knn_train = _neighbour_scores(
        X, y, n_classes, X_val, y_val, groups, moments.mean, config, context, parts)
    with _timed(parts.timings, "bins"):
        matrices = {grouping: _bin_matrices(counts, grouping, knn_train, gaussians.means, shrunk)
                    for grouping in ("relative", "absolute")}
    with _timed(parts.timings, "split"):
        if config.exact and isinstance(X, ArrayRows):
            split = classwise_split(
                X.X, y, n_classes=n_classes, n_ref=config.split_n_ref,
                m_min=config.split_min_size, seed=config.seed, niter=config.cluster_niter,
                device=context.requested, threads=context.threads)
        else:
            split = sampled_split(X, y, n_classes, config, context, sample_rows)
    if split.kept_whole:
        parts.notes.append(f"split plan: classes {sorted(split.kept_whole)} kept whole "
                           "(see split_plan.kept_whole)")
    group_scores = {name: group_means(parts.per_class[name], groups)
                    for name in ("knn_recall", "ncm_recall", "logme", "logme_balanced", "gbc")}
    _, relative = class_group_labels(counts, "relative")
    _, absolute = class_group_labels(counts, "absolute")
    parts.per_class["group_relative"] = [RELATIVE_GROUPS[g] for g in relative]
    parts.per_class["group_absolute"] = [ABSOLUTE_GROUPS[g] for g in absolute]
    return SeparabilityReport(
        scores=parts.scores,
        data=_data_record(X, y_val, n_classes, class_names, counts, groups, knn_train),
        per_class=parts.per_class, group_scores=group_scores, bin_matrices=matrices,
        densest_fraction=dense,
        clustering={**asdict(clustering), "method": "faiss k-means, K = classes present"},
        knn=_knn_record(knn_train, queries, counts, groups, X.shape[0], config),
        split_plan=split.plan_record(), config=config, faiss=context.record(),
        timings=parts.timings, notes=parts.notes,
    )


def _training_counts(y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) int64 training rows per class; at least two classes must have rows."""
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    present = int(np.count_nonzero(counts))
    if present < 2:
        raise FeatltError(
            f"training features: only {present} class present; separability needs at "
            "least 2 classes with training samples"
        )
    return counts


def _moments(X: Rows, y: np.ndarray, n_classes: int, parts: _ReportParts) -> FeatureMoments:
    """The shared feature moments; the rows must not all be identical."""
    with _timed(parts.timings, "moments"):
        moments = feature_moments(X, y, n_classes)
    if moments.total_variance <= 0:
        raise FeatltError(
            f"training features: all {X.shape[0]} rows are identical, so no class can be told "
            "apart; check the backbone weights and the feature layer, then re-extract"
        )
    return moments


def _logme_scores(moments: FeatureMoments, parts: _ReportParts) -> None:
    """LogME, plain and class-balanced."""
    with _timed(parts.timings, "logme"):
        plain = logme_from_moments(moments)
        balanced = logme_from_moments(moments, balanced=True)
    parts.scores["logme"], parts.scores["logme_balanced"] = plain.score, balanced.score
    parts.per_class["logme"], parts.per_class["logme_balanced"] = (plain.per_class,
                                                                   balanced.per_class)


def _gaussian_scores(
    X: Rows, y: np.ndarray, n_classes: int, moments: FeatureMoments,
    config: SeparabilityConfig, parts: _ReportParts,
) -> tuple[ClassGaussians, np.ndarray]:
    """GBC on PCA-projected class Gaussians; returns the Gaussians and their shrunk variances
    (for the Bhattacharyya overlap matrix)."""
    with _timed(parts.timings, "gaussians"):
        basis = pca_basis(moments, config.pca_dim)
        gaussians = class_gaussians(X, y, n_classes, basis.project)
        gbc_result = gbc_from_gaussians(gaussians, config.gbc_gaussian)
        shrunk = shrink_variances(gaussians, config.overlap_prior_strength)
    parts.scores["gbc"] = gbc_result.score
    parts.per_class["gbc"] = gbc_result.per_class
    return gaussians, shrunk


def _clustering_scores(
    X: Rows, y: np.ndarray, config: SeparabilityConfig, context: FaissContext,
    parts: _ReportParts, sample_rows: int | None,
) -> ClusteringScores:
    """Purity and NMI of one k-means with K = classes present (exact: faiss draws each run's
    training rows from the array; otherwise one drawn sample of at most ``sample_rows`` rows,
    the same in memory and from a store)."""
    with _timed(parts.timings, "clustering"):
        k = int(np.count_nonzero(np.bincount(y)))
        clustering = global_clustering(
            X.X if config.exact and isinstance(X, ArrayRows) else X, y, context, seed=config.seed,
            niter=config.cluster_niter,
            max_points_per_centroid=points_per_centroid(
                config.cluster_max_points_per_centroid, k, sample_rows, y.size))
    parts.scores["purity"], parts.scores["nmi"] = clustering.purity, clustering.nmi
    return clustering


def _densest_fraction(
    X: Rows, y: np.ndarray, moments: FeatureMoments, groups: dict[str, np.ndarray | None],
    n_present: int, config: SeparabilityConfig, context: FaissContext, parts: _ReportParts,
    sample_rows: int | None,
) -> dict[str, Any]:
    """Which classes fill the densest share of the training rows under the density mixture
    (``n_present``: classes with training rows, the least number of mixture clusters); exact:
    on every row, else fitted and scored on drawn rows (:func:`sampled_densest_fraction`)."""
    with _timed(parts.timings, "density"):
        n_rows, dim = X.shape
        n_dense_clusters = config.density_clusters or max(n_present, min(256, n_rows // 500))
        variance = moments.total_variance / dim
        if config.exact and isinstance(X, ArrayRows):
            mixture = fit_density(
                X.X, context, n_dense_clusters, variance, seed=config.seed,
                niter=config.cluster_niter,
                max_points_per_centroid=config.density_max_points_per_centroid,
                prior_strength=config.density_prior_strength)
            dense = densest_fraction(mixture.train_log_density, y, groups, config.dense_fraction)
        else:
            ppc = points_per_centroid(config.density_sample_points_per_centroid,
                                      min(n_dense_clusters, n_rows), sample_rows, n_rows)
            mixture, dense = sampled_densest_fraction(
                X, y, context, n_dense_clusters, variance, groups, config.dense_fraction,
                n_fit=min(n_dense_clusters, n_rows) * ppc, n_scored=config.density_rows,
                seed=config.seed, niter=config.cluster_niter,
                prior_strength=config.density_prior_strength)
        dense.update(n_clusters=int(mixture.centroids.shape[0]),
                     prior_strength=mixture.prior_strength,
                     method="cluster-size-weighted isotropic Gaussian mixture on faiss k-means "
                            "[featlt design, docs/methods.md, Density mixture]")
    return dense


def _neighbour_scores(
    X: Rows, y: np.ndarray, n_classes: int, X_val: np.ndarray | None,
    y_val: np.ndarray | None, groups: dict[str, np.ndarray | None], mean: np.ndarray,
    config: SeparabilityConfig, context: FaissContext, parts: _ReportParts,
) -> tuple[np.ndarray, KNNResult]:
    """Leave-one-out kNN and NCM on training rows, and both on validation rows where given.

    Returns the kNN query rows (q,) and the leave-one-out kNN result (for the bin matrices).
    """
    with _timed(parts.timings, "knn"):
        # Every sample of a few-shot class (n_c < 20, at most 19 C rows) is a query; the rest of
        # the budget is water-filled, so the tail third is whole whenever the budget allows.
        queries = stratified_query_rows(y, n_classes, config.knn_queries, groups["few"],
                                        seed=config.seed)
        knn_train, knn_val = knn_evaluate(
            X, y, n_classes, queries, context, X_val, y_val, k=config.knn_k,
            metric=config.knn_metric, mean=mean, search="exact" if config.exact else "bf16")
    with _timed(parts.timings, "ncm"):
        ncm_fit = fit_ncm(X, y, n_classes, mean)
        ncm_train = ncm_loo(X, y, n_classes, fit=ncm_fit)
        ncm_val = None if X_val is None else ncm_holdout(X, y, X_val, y_val, n_classes,
                                                         fit=ncm_fit)
    tail = groups["tail_third"]
    for name, train in (("knn", knn_train), ("ncm", ncm_train)):
        parts.scores[f"{name}_balanced_accuracy"] = train.balanced_accuracy
        parts.scores[f"{name}_tail_recall"] = None if tail is None else mean_over_classes(
            train.per_class_recall[tail])
        parts.per_class[f"{name}_recall"] = train.per_class_recall
    if knn_train.excluded_classes:
        parts.notes.append(f"classes {knn_train.excluded_classes} have a single training "
                           "sample: left out of the leave-one-out kNN/NCM scores")
    parts.scores["knn_balanced_accuracy_val"] = parts.scores["ncm_balanced_accuracy_val"] = None
    if knn_val is not None and ncm_val is not None:
        for name, val in (("knn", knn_val), ("ncm", ncm_val)):
            parts.scores[f"{name}_balanced_accuracy_val"] = val.balanced_accuracy
            parts.per_class[f"{name}_recall_val"] = val.per_class_recall
    return queries, knn_train


def _bin_matrices(
    counts: np.ndarray, grouping: str, knn_train: KNNResult, means: np.ndarray, shrunk: np.ndarray
) -> dict[str, Any]:
    """Shot-group x shot-group kNN confusion and Bhattacharyya overlap under ``grouping``."""
    names, group_of = class_group_labels(counts, grouping)
    group_of = np.where(counts > 0, group_of, -1)
    return {
        "groups": list(names),
        "knn_confusion": _matrix_record(knn_bin_matrix(
            knn_train.query_labels, knn_train.neighbour_labels, group_of, len(names))),
        "bhattacharyya": _matrix_record(bhattacharyya_bin_matrix(
            means, shrunk, group_of, len(names))),
    }


def _data_record(
    X: Rows, y_val: np.ndarray | None, n_classes: int, class_names: list[str] | None,
    counts: np.ndarray, groups: dict[str, np.ndarray | None], knn_train: KNNResult,
) -> dict[str, Any]:
    """The report's ``data`` section: sizes, classes, counts and shot groups."""
    present = counts[counts > 0]
    return {
        "n_train": int(X.shape[0]), "n_val": 0 if y_val is None else int(y_val.size),
        "dim": int(X.shape[1]), "n_classes": n_classes,
        "class_names": class_names or [str(c) for c in range(n_classes)],
        "train_counts": counts, "shot_groups": groups,
        "absent_classes": np.flatnonzero(counts == 0),
        "loo_excluded_classes": knn_train.excluded_classes,
        "imbalance_factor": float(present.max() / present.min()),
    }


def _knn_record(
    knn_train: KNNResult, queries: np.ndarray, counts: np.ndarray,
    groups: dict[str, np.ndarray | None], n_train: int, config: SeparabilityConfig,
) -> dict[str, Any]:
    """The report's ``knn`` section: settings and which classes were queried in full."""
    tail, few, per_class = groups["tail_third"], groups["few"], knn_train.queries_per_class
    return {
        "k": knn_train.k, "metric": config.knn_metric, "leave_one_out": True,
        "n_queries_requested": config.knn_queries, "n_queries": int(queries.size),
        "queries_per_class": per_class,
        "all_few_shot_samples_included": None if few is None else bool(
            np.array_equal(per_class[few], counts[few])),
        "all_tail_third_samples_included": bool(
            tail is None or np.array_equal(per_class[tail], counts[tail])),
        "exact_all_rows": bool(queries.size == n_train),
        "search": knn_train.search,
    }


def _read_rows(store: Any, split: str, rows: np.ndarray) -> np.ndarray:
    """(len(rows), D) float32 features of sorted ``rows``: the whole split as one block (no
    copy), else filled block by block (peak memory ~ one copy)."""
    info = store.info(split)
    if 0 < rows.size == info.n_rows:  # sorted and unique: every row, in order
        budget_mb = rows.size * info.dim * 4 / 2**20 + 1
        ((_, values),) = store.iter_rows(split, None, budget_mb=budget_mb)
        return values
    out = np.empty((rows.size, info.dim), dtype=np.float32)
    for positions, values in store.iter_rows(split, rows):
        out[positions[0]:positions[-1] + 1] = values  # positions: consecutive, a slice
    return out


def evaluate_store(
    path: str | Path,
    protocol: Any = None,
    config: SeparabilityConfig | None = None,
    device: str = "auto",
    threads: int | None = None,
    memory_budget_mb: float | None = None,
) -> SeparabilityReport:
    """The separability report of a feature store under an index view.

    Reads only the training and validation rows of ``protocol``'s view (never the test split),
    and records the store's provenance and ``view.record()`` in ``report.input``.

    Args:
        protocol: a :class:`featlt.data.protocol.Protocol`; None: ``Protocol()`` (every stored
            training row; validation from a stored 'val' split, else carved from the training rows).
        memory_budget_mb: read the training rows chunk by chunk so that resident memory above the
            level after imports stays under this many MB (:mod:`featlt.separability.budget`,
            recorded in ``report.input["memory_budget"]``); None: read them into memory.
    """
    from dataclasses import replace

    from featlt.data.protocol import resolve_view
    from featlt.store.feature_store import FeatureStore

    path = Path(path)
    config = config or SeparabilityConfig()
    try:
        context = resolve_faiss(device, threads)
        total = time.perf_counter()
        with FeatureStore(path) as store:
            view = resolve_view(store, protocol)
            y_train = store.labels(view.train_split)[view.train_rows]
            X_val = _read_rows(store, view.val_split, view.val_rows)
            y_val = store.labels(view.val_split)[view.val_rows]
            record = {"file": str(path), "store": str(path), "features": store.provenance,
                      "view": view.record(), "created": store.created,
                      "featlt_version": store.featlt_version}
            class_names = view.class_names
            if memory_budget_mb is None:
                X_train: np.ndarray | Rows = _read_rows(store, view.train_split, view.train_rows)
                sample_rows = None
            else:
                plan = report_plan(store, view, y_train, len(class_names), config,
                                   memory_budget_mb, f"feature file {path}")
                record["memory_budget"] = plan.record()
                X_train = StoreRows(store, view.train_split, view.train_rows, plan.chunk_rows,
                                    store.info(view.train_split).dim)
                sample_rows = plan.sample_rows
            read_seconds = round(time.perf_counter() - total, 3)
            report = evaluate_separability(
                X_train, y_train, len(class_names), X_val, y_val, config, context, class_names,
                sample_rows)
    except FeatltError as err:
        if str(path) in str(err):
            raise
        raise FeatltError(f"feature file {path}: {err}") from err
    timings = {"read": read_seconds, **report.timings,
               "total": round(time.perf_counter() - total, 3)}
    return replace(report, input=record, timings=timings)
