"""Classwise splitting (CWS): cut frequent classes into sub-classes of near-equal size.

**Reconstruction.** Yuan et al. (Mathematics 2023) publish no code; this is featlt's reading of
their abstract: each class ``c`` is split into ``K_c`` pseudo-classes by a seeded per-class faiss
k-means, with

    K_c = max(1, min(round(n_c / n_ref), floor(n_c / m_min)))

where ``n_ref`` is the target sub-class size (default: the median of the non-zero class counts),
``m_min`` the fewest samples a planned sub-class may hold, and ``round`` rounds halves up. Classes
too small to split stay whole. Without a trainable projection the static per-class k-means is the
faithful equivalent of the paper's EMA prototypes; the CWS head calls :func:`classwise_split`.

The split exists to *reduce* imbalance, so by default the k-means centroids only seed it: each
class's points are then assigned under equal capacities (:func:`balanced_assignment`), so
sub-class sizes within a class differ by at most one and the sub-class imbalance factor is
``max_c ceil(n_c / K_c) / min_c floor(n_c / K_c)`` (:func:`equal_split_imbalance`). Plain
nearest-centroid k-means (``balanced=False``) cuts a class into parts of very different sizes
and can raise the imbalance factor instead (docs/methods.md, "CWS").

Documented behaviour for degenerate classes (the class stays whole, ``kept_whole`` says why):

- a class with fewer points than the sub-classes asked for (only possible with an explicit
  ``k_per_class``; the rule itself never asks for more than ``n_c / m_min``);
- a class with fewer *distinct* points than its ``K_c`` (duplicates cannot be separated).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featlt.cluster.faiss_ops import (
    FaissContext,
    as_float32_rows,
    count_distinct_rows,
    kmeans,
    l2_normalise,
    resolve_faiss,
)
from featlt.cluster.prototypes import class_sums
from featlt.errors import FeatltError

DEFAULT_MIN_SUBCLASS = 20  # m_min: a sub-class is never planned smaller than the "few" threshold
DEFAULT_NITER = 20  # Lloyd iterations per class


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def default_n_ref(counts: np.ndarray) -> float:
    """The default target sub-class size: the median of the non-zero class counts."""
    counts = np.asarray(counts)
    positive = counts[counts > 0]
    if positive.size == 0:
        raise FeatltError("classwise split: every class count is 0; pass training labels")
    return float(np.median(positive))


def plan_splits(
    counts: np.ndarray, n_ref: float | None = None, m_min: int = DEFAULT_MIN_SUBCLASS
) -> np.ndarray:
    """Number of sub-classes per class by the CWS rule [reconstruction].

    Args:
        counts: (C,) int training count per class (0 allowed: such a class gets 1).
        n_ref: target sub-class size (> 0); None: the median of the non-zero counts.
        m_min: the fewest samples a planned sub-class may hold (>= 1).
    Returns:
        k_per_class: (C,) int64, ``max(1, min(round_half_up(n_c / n_ref), n_c // m_min))``.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise FeatltError(
            f"classwise split: counts must be a non-empty 1-D array of non-negative per-class "
            f"counts, got shape {counts.shape}; pass np.bincount(y, minlength=n_classes)"
        )
    if int(m_min) != m_min or m_min < 1:
        raise FeatltError(
            f"classwise split: min sub-class size {m_min} must be an integer >= 1; pass e.g. 20"
        )
    if n_ref is None:
        n_ref = default_n_ref(counts)
    if not np.isfinite(n_ref) or n_ref <= 0:
        raise FeatltError(
            f"classwise split: n_ref {n_ref} must be a positive number; pass e.g. 100"
        )
    counts = counts.astype(np.int64)
    by_size = _round_half_up(counts / float(n_ref))
    by_min = counts // int(m_min)
    return np.maximum(1, np.minimum(by_size, by_min)).astype(np.int64)


def imbalance_factor(sizes: np.ndarray) -> float | None:
    """Largest over smallest non-zero size; None when no size is positive."""
    sizes = np.asarray(sizes)
    positive = sizes[sizes > 0]
    return float(positive.max() / positive.min()) if positive.size else None


@dataclass(frozen=True)
class ClasswiseSplit:
    """A classwise split of training samples into sub-classes [reconstruction of CWS]."""

    sub_labels: np.ndarray  # (N,) int64 sub-class of each training sample, 0..S-1
    sub_to_class: np.ndarray  # (S,) int64 class of each sub-class; sub-classes ordered by class
    prototypes: np.ndarray  # (S, D) float32 k-means centroid of each sub-class
    k_per_class: np.ndarray  # (C,) int64 sub-classes actually made per class (sum = S)
    k_planned: np.ndarray  # (C,) int64 the CWS rule's K_c (or the given k_per_class)
    class_counts: np.ndarray  # (C,) int64 n_c
    sub_counts: np.ndarray  # (S,) int64 samples per sub-class
    imbalance_before: float | None  # max n_c / min n_c over non-empty classes
    imbalance_after: float | None  # max / min sub-class size
    kept_whole: dict[int, str]  # class -> why it was not split although K_c > 1 was planned
    n_ref: float | None  # None when k_per_class was given
    m_min: int
    seed: int
    niter: int
    spherical: bool
    max_points_per_centroid: int | None  # None: every class trained on all its points
    balanced: bool = True  # size-constrained assignment (sub-class sizes differ by <= 1)
    device: dict[str, Any] = field(default_factory=dict)
    objective: float = 0.0  # mean squared L2 distance of a row to its sub-class prototype
    rows_drawn: int | None = None  # split on this many drawn rows (None: every row)

    def plan_record(self) -> dict[str, Any]:
        """The split plan without per-sample arrays (for reports)."""
        return {
            "method": "CWS classwise split [reconstruction of Yuan et al. 2023]",
            "n_ref": self.n_ref, "m_min": self.m_min, "seed": self.seed, "niter": self.niter,
            "spherical": self.spherical, "max_points_per_centroid": self.max_points_per_centroid,
            "balanced": self.balanced,
            "imbalance_equal_split": equal_split_imbalance(self.class_counts, self.k_per_class),
            "k_planned": self.k_planned, "k_per_class": self.k_per_class,
            "n_subclasses": int(self.sub_to_class.size),
            "class_counts": self.class_counts, "sub_counts": self.sub_counts,
            "imbalance_before": self.imbalance_before, "imbalance_after": self.imbalance_after,
            "kept_whole": {str(c): why for c, why in self.kept_whole.items()},
            "device": self.device, "objective_per_row": self.objective,
            "rows_drawn": self.rows_drawn,
        }


def _class_seeds(seed: int, n_classes: int) -> list[int]:
    """One independent faiss seed per class, derived with ``SeedSequence``."""
    children = np.random.SeedSequence(seed).spawn(n_classes)
    return [int(child.generate_state(1)[0] & 0x7FFFFFFF) for child in children]


def balanced_assignment(sq_distances: np.ndarray) -> np.ndarray:
    """Assign points to centroids under near-equal capacities; the most constrained choose first.

    Points are taken in order of their regret (distance to the second-nearest centroid minus
    distance to the nearest, largest first; ties by point index) and each goes to its nearest
    centroid that still has room. ``n % k`` centroids may hold ``n // k + 1`` points (whichever
    fill first), the others ``n // k``, so sizes differ by at most one. Deterministic.

    Args:
        sq_distances: (n, k) float distances of every point to every centroid, 1 <= k <= n.
    Returns:
        labels: (n,) int64 centroid of each point.
    """
    n, k = sq_distances.shape
    base, extra = divmod(n, k)
    preference = np.argsort(sq_distances, axis=1, kind="stable")
    ranked = np.take_along_axis(sq_distances, preference[:, :2], axis=1)
    regret = ranked[:, -1] - ranked[:, 0]
    labels = np.empty(n, dtype=np.int64)
    filled = np.zeros(k, dtype=np.int64)
    for point in np.argsort(-regret, kind="stable"):
        room = base + 1 if extra > 0 else base
        centre = next(c for c in preference[point] if filled[c] < room)
        labels[point] = centre
        filled[centre] += 1
        extra -= int(filled[centre] == base + 1)
    return labels


def rebalance_within_classes(
    points: np.ndarray, y: np.ndarray, sub_to_class: np.ndarray, prototypes: np.ndarray
) -> np.ndarray:
    """Re-assign every point to a sub-class of its own class, balanced within each class.

    Args:
        points: (N, H) features (e.g. projected training rows).
        y: (N,) int class of each point.
        sub_to_class: (S,) int class of each sub-class.
        prototypes: (S, H) sub-class prototypes.
    Returns:
        sub_labels: (N,) int64 in 0..S-1 with ``sub_to_class[sub_labels] == y``; within a class
        the sub-class sizes differ by at most one (:func:`balanced_assignment`).
    """
    sub_labels = np.empty(y.shape[0], dtype=np.int64)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        subs = np.flatnonzero(sub_to_class == c)
        if subs.size == 1:
            sub_labels[rows] = subs[0]
            continue
        sub_labels[rows] = subs[balanced_assignment(squared_distances(points[rows],
                                                                      prototypes[subs]))]
    return sub_labels


def equal_split_imbalance(class_counts: np.ndarray, k_per_class: np.ndarray) -> float | None:
    """The sub-class imbalance factor of an ideal equal split: largest ``ceil(n_c / K_c)`` over
    smallest ``floor(n_c / K_c)``, over non-empty classes (what a balanced split reaches)."""
    counts = np.asarray(class_counts, dtype=np.int64)
    k = np.maximum(np.asarray(k_per_class, dtype=np.int64), 1)
    present = counts > 0
    if not present.any():
        return None
    return float((-(-counts[present] // k[present])).max() / (counts[present] // k[present]).min())


def squared_distances(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n, k) float64 squared L2 distances of the rows of ``X`` (n, D) to ``centroids`` (k, D)."""
    X = np.asarray(X, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    sq = (X**2).sum(1)[:, None] + (centroids**2).sum(1)[None, :] - 2.0 * X @ centroids.T
    return np.maximum(sq, 0.0)


def _check_split_input(X: np.ndarray, y: np.ndarray, n_classes: int | None) -> tuple[
        np.ndarray, np.ndarray, int]:
    """Validated ``(X (N, D) float32, y (N,) int, C)``."""
    X = as_float32_rows(X, "classwise split features")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise FeatltError(
            f"classwise split: {X.shape[0]} feature rows but labels of shape {y.shape}; pass one "
            "label per row"
        )
    if y.size == 0:
        raise FeatltError("classwise split: no training rows; pass a non-empty training split")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise FeatltError("classwise split: labels must be non-negative integer class ids")
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if y.max() >= n_classes:
        raise FeatltError(
            f"classwise split: label {int(y.max())} is outside 0..{n_classes - 1}; "
            "pass the right n_classes"
        )
    return X, y, n_classes


def _resolve_plan(
    counts: np.ndarray, n_ref: float | None, m_min: int, k_per_class: np.ndarray | None
) -> tuple[np.ndarray, float | None]:
    """``(K_c (C,) int64, the n_ref used or None when k_per_class was given)``."""
    if k_per_class is None:
        planned = plan_splits(counts, n_ref, m_min)
        return planned, default_n_ref(counts) if n_ref is None else float(n_ref)
    planned = np.asarray(k_per_class, dtype=np.int64)
    if planned.shape != counts.shape or (planned < 1).any():
        raise FeatltError(
            f"classwise split: k_per_class must hold one count >= 1 per class ({counts.size}), "
            f"got shape {planned.shape}"
        )
    return planned, None


@dataclass(frozen=True)
class _ClassSplit:
    """One class's sub-classes: prototypes (k, D), local labels (n_c,), why it stayed whole."""

    centres: np.ndarray
    local: np.ndarray
    kept_whole: str | None = None

    def objective(self, points: np.ndarray) -> float:
        """Sum of squared L2 distances of ``points`` (n_c, D) to their prototypes."""
        diff = points - self.centres[self.local]
        return float(np.einsum("ij,ij->i", diff, diff).sum(dtype=np.float64))


def _split_class(
    Xc: np.ndarray, k: int, context: FaissContext, seed: int, niter: int, spherical: bool,
    max_points_per_centroid: int | None, balanced: bool, what: str,
) -> _ClassSplit:
    """Split one class's rows ``Xc`` (n_c, D) into ``k`` sub-classes (or keep it whole)."""
    whole = _ClassSplit(_class_mean(Xc, spherical), np.zeros(Xc.shape[0], np.int64))
    if k > Xc.shape[0]:
        return replace(whole, kept_whole=f"{k} sub-classes asked for but the class has "
                                         f"{Xc.shape[0]} points; kept whole")
    if k == 1:
        return whole
    distinct = count_distinct_rows(Xc)
    if distinct < k:
        return replace(whole, kept_whole=f"{k} sub-classes planned but the class has only "
                                         f"{distinct} distinct points; kept whole")
    result = kmeans(Xc, k, context, seed=seed, niter=niter, spherical=spherical,
                    max_points_per_centroid=max_points_per_centroid, what=what)
    if not balanced:
        return _ClassSplit(*_drop_empty(result.centroids, result.labels))
    points = l2_normalise(Xc) if spherical else Xc
    local = balanced_assignment(squared_distances(points, result.centroids))
    return _ClassSplit(_sub_means(points, local, k, spherical), local)


def classwise_split(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int | None = None,
    n_ref: float | None = None,
    m_min: int = DEFAULT_MIN_SUBCLASS,
    k_per_class: np.ndarray | None = None,
    seed: int = 0,
    niter: int = DEFAULT_NITER,
    spherical: bool = False,
    max_points_per_centroid: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    balanced: bool = True,
) -> ClasswiseSplit:
    """Split every class into ``K_c`` sub-classes: seeded per-class faiss k-means centroids,
    then (``balanced``) a size-constrained assignment so sub-class sizes differ by at most one.

    With ``balanced`` each class's points go to their nearest centroid with room
    (:func:`balanced_assignment`) and the prototypes become the means of the resulting
    sub-classes; without it, plain nearest-centroid k-means (sizes can differ a lot). By default
    each class's k-means trains on all of its points; ``max_points_per_centroid`` lets faiss
    train on a random subsample of at most ``K_c`` times that many points (every point is still
    assigned). Deterministic for a seed on CPU.

    Args:
        X: (N, D) training features.
        y: (N,) int class ids in 0..C-1.
        n_classes: C; None: ``y.max() + 1``.
        n_ref, m_min: the CWS rule (see :func:`plan_splits`).
        k_per_class: (C,) explicit sub-class counts instead of the rule (e.g. a saved plan).
        spherical: cluster L2-normalised rows with unit-norm centroids.
        device, threads: faiss device (auto/cpu/cuda) and OpenMP threads (None: 1).
    """
    X, y, n_classes = _check_split_input(X, y, n_classes)
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    planned, used_ref = _resolve_plan(counts, n_ref, m_min, k_per_class)
    context = resolve_faiss(device, threads)
    seeds = _class_seeds(seed, n_classes)
    sub_labels = np.empty(y.shape[0], dtype=np.int64)
    prototypes: list[np.ndarray] = []
    made = np.zeros(n_classes, dtype=np.int64)
    kept_whole: dict[int, str] = {}
    objective = 0.0
    by_class = np.split(np.argsort(y, kind="stable"), np.cumsum(counts)[:-1])
    for c, rows in enumerate(by_class):
        if rows.size == 0:
            continue
        Xc = X[rows]
        part = _split_class(Xc, int(planned[c]), context, seeds[c], niter, spherical,
                            max_points_per_centroid, balanced, f"class {c} ({rows.size} points)")
        objective += part.objective(l2_normalise(Xc) if spherical else Xc)
        if part.kept_whole is not None:
            kept_whole[c] = part.kept_whole
        sub_labels[rows] = int(made.sum()) + part.local
        prototypes.append(part.centres)
        made[c] = part.centres.shape[0]
    sub_counts = np.bincount(sub_labels, minlength=int(made.sum())).astype(np.int64)
    return ClasswiseSplit(
        sub_labels=sub_labels, sub_to_class=np.repeat(np.arange(n_classes), made),
        prototypes=np.concatenate(prototypes).astype(np.float32), k_per_class=made,
        k_planned=planned, class_counts=counts, sub_counts=sub_counts,
        imbalance_before=imbalance_factor(counts), imbalance_after=imbalance_factor(sub_counts),
        kept_whole=kept_whole, n_ref=used_ref, m_min=int(m_min), seed=int(seed),
        niter=int(niter), spherical=bool(spherical), balanced=bool(balanced),
        max_points_per_centroid=max_points_per_centroid, device=context.record(),
        objective=objective / y.shape[0],
    )


def _sub_means(points: np.ndarray, labels: np.ndarray, k: int, spherical: bool) -> np.ndarray:
    """(k, D) float32 mean of each sub-class (unit norm when spherical); labels (n,) in 0..k-1."""
    means = class_sums(points, labels, k) / np.bincount(labels, minlength=k)[:, None]
    if spherical:
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return means.astype(np.float32)


def _class_mean(Xc: np.ndarray, spherical: bool) -> np.ndarray:
    """The (1, D) float32 prototype of a class kept whole (unit norm when spherical)."""
    centre = Xc.mean(axis=0, dtype=np.float64)
    if spherical:
        norm = np.linalg.norm(centre)
        centre = centre / norm if norm > 0 else centre
    return centre[None, :].astype(np.float32)


def _drop_empty(centroids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove centroids no point is assigned to and renumber the labels 0..k'-1.

    Args:
        centroids: (k, D); labels: (n,) int in 0..k-1.
    Returns:
        (centroids (k', D), labels (n,) in 0..k'-1), the surviving centroids in their order.
    """
    used = np.unique(labels)
    remap = np.full(centroids.shape[0], -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return centroids[used], remap[labels]
