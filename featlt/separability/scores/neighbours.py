"""kNN and NCM balanced accuracy; stratified kNN queries. Higher is better for both.

kNN [standard]: features centred on the training mean and L2-normalised (``metric="cosine"``,
the default) or raw (``"l2"``); a query's ``k`` nearest training rows vote, ties going to the tied
class whose nearest member ranks first. On the training features it is leave-one-out: the query
itself is dropped from its neighbours (an exact duplicate of it still counts). Exact kNN costs
N^2 D, so at scale the queries are a fixed-size stratified sample (:func:`stratified_query_rows`)
searched against the full training set, block by block through :func:`featlt.cluster.faiss_ops.knn`.

NCM (docs/methods.md) [code]: class means of the centred, L2-normalised training features;
predict the class whose mean has the largest cosine. On training features it is leave-one-out
(a sample's own class mean is taken without it), computed exactly from class sums for all rows.
The normalisation, class sums and held-out cosines are :mod:`featlt.cluster.prototypes`, shared
with the NCM head.

Leave-one-out cannot score a class with a single training sample: such classes get NaN recall and
are listed in ``excluded_classes``; they still act as neighbours and as candidate classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from featlt.cluster.faiss_ops import FaissContext, knn_blocks
from featlt.cluster.lowp_search import knn_bf16, recall_at_k
from featlt.cluster.prototypes import centred_unit, class_sums, cosine_to_means
from featlt.cluster.rows import Rows, as_rows
from featlt.errors import FeatltError
from featlt.evaluation.metrics import mean_over_classes, per_class_recall

KnnMetric = Literal["cosine", "l2"]
KnnSearch = Literal["exact", "bf16"]
RECALL_QUERIES = 128  # queries the bf16 search is checked on against the exact search


def stratified_query_rows(
    y: np.ndarray, n_classes: int, n_queries: int, full_classes: np.ndarray | None, seed: int = 0
) -> np.ndarray:
    """A class-stratified sample of rows to use as kNN queries.

    Every row of the ``full_classes`` (the report passes the few-shot classes, n_c < 20, so this
    part is bounded by 19 C rows) is included; the remaining budget is water-filled over the other
    classes (each gets ``min(n_c, q)``, with ``q`` as large as the budget allows, leftovers to the
    most frequent classes), so every class smaller than ``q`` is whole and the sample is as
    balanced as the data allows. Rows are drawn per class with child seeds of ``seed``.

    Args:
        y: (n,) int labels; n_queries: target sample size (all rows when n <= n_queries).
        full_classes: class ids whose rows are all included (may exceed the budget).
    Returns:
        rows: (q,) int64 sorted row indices.
    """
    if n_queries < 1:
        raise FeatltError(f"--knn-queries {n_queries}: must be at least 1; pass e.g. 2000")
    n = y.shape[0]
    if n <= n_queries:
        return np.arange(n, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)
    full = np.zeros(n_classes, dtype=bool)
    if full_classes is not None:
        full[np.asarray(full_classes, dtype=np.int64)] = True
    take = np.where(full, counts, 0)
    budget = max(0, n_queries - int(take.sum()))
    others = np.flatnonzero(~full & (counts > 0))
    if others.size and budget:
        oc = counts[others]
        low, high = 0, int(oc.max())  # largest q with sum(min(oc, q)) <= budget
        while low < high:
            mid = (low + high + 1) // 2
            if np.minimum(oc, mid).sum() <= budget:
                low = mid
            else:
                high = mid - 1
        quota = np.minimum(oc, low)
        left = budget - int(quota.sum())
        for i in np.lexsort((others, -oc)):  # most frequent first, ties by class id
            if left == 0:
                break
            if quota[i] < oc[i]:
                quota[i] += 1
                left -= 1
        take[others] = quota
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    seeds = np.random.SeedSequence(seed).spawn(n_classes)
    chosen = []
    for c in np.flatnonzero(take):
        rows = order[bounds[c]:bounds[c + 1]]
        rng = np.random.default_rng(seeds[c])
        chosen.append(rows if take[c] >= rows.size else rng.choice(rows, take[c], replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def cosine_transform(mean: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The kNN/NCM preprocessing of float32 blocks: subtract the training mean (D,),
    L2-normalise each row (:func:`featlt.cluster.prototypes.centred_unit`)."""
    mean32 = np.asarray(mean, dtype=np.float32)
    return lambda block: centred_unit(block, mean32, np.float32)


@dataclass(frozen=True)
class KNNResult:
    """kNN classification of a set of queries."""

    balanced_accuracy: float | None  # mean per-class recall over evaluated classes
    per_class_recall: np.ndarray  # (C,) float64; NaN where no query was evaluated
    query_labels: np.ndarray  # (q,) int64 labels of the queries
    neighbour_labels: np.ndarray  # (q, k) int64 labels of their neighbours, nearest first
    queries_per_class: np.ndarray  # (C,) int64 queries used per class
    excluded_classes: list[int]  # leave-one-out: classes with a single training sample
    k: int
    metric: str
    leave_one_out: bool
    device: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)  # method, and its recall check


def vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority label of each row of ``neighbour_labels`` (q, k), nearest-first tie-break."""
    same = neighbour_labels[:, :, None] == neighbour_labels[:, None, :]
    votes = same.sum(axis=2)  # (q, k): votes for the class of each neighbour position
    return neighbour_labels[np.arange(votes.shape[0]), votes.argmax(axis=1)]


@dataclass(frozen=True)
class SearchCheck:
    """The approximate search against the exact one on a few queries."""

    n_queries: int
    recall_at_k: float  # mean share of each checked query's exact neighbours found


def _search(
    rows: Rows, queries: np.ndarray, k: int, metric: KnnMetric, mean: np.ndarray,
    context: FaissContext, search: KnnSearch,
) -> tuple[np.ndarray, SearchCheck | None]:
    """(q, k) int64 neighbour row ids of ``queries`` (q, D) among ``rows``; with
    ``search="bf16"`` (cosine only) also the recall check of :data:`RECALL_QUERIES` queries."""
    n = rows.shape[0]
    if metric not in ("cosine", "l2"):
        raise FeatltError(f"kNN metric '{metric}': unknown; use cosine or l2")
    if metric == "l2":
        return knn_blocks(queries, rows.blocks(), n, k, context, metric="l2")[1], None
    transform = cosine_transform(mean)
    unit = transform(queries)
    if search == "exact":
        return knn_blocks(unit, rows.blocks(), n, k, context, metric="ip",
                          transform=transform)[1], None
    check = np.unique(np.linspace(0, unit.shape[0] - 1, min(RECALL_QUERIES, unit.shape[0]))
                      .astype(np.int64))
    _, ids, exact = knn_bf16(unit, rows.blocks(), k, transform=transform, check=check)
    assert exact is not None
    return ids, SearchCheck(int(check.size), recall_at_k(ids[check], exact))


def knn_evaluate(
    X: np.ndarray | Rows, y: np.ndarray, n_classes: int, query_rows: np.ndarray,
    context: FaissContext, X_held: np.ndarray | None = None, y_held: np.ndarray | None = None,
    k: int = 10, metric: KnnMetric = "cosine", mean: np.ndarray | None = None,
    search: KnnSearch = "exact",
) -> tuple[KNNResult, KNNResult | None]:
    """Leave-one-out kNN of training rows and kNN of held-out rows, in one pass over the base.

    Args:
        X: (n, D) float32 training features (an array, or
            :class:`~featlt.cluster.rows.Rows` read block by block); y: (n,) int64 labels.
        query_rows: (q,) sorted int rows of X used as leave-one-out queries.
        X_held, y_held: (h, D) and (h,) held-out rows (e.g. validation); optional.
        mean: (D,) training mean for the cosine preprocessing (computed when None).
        search: ``exact`` (faiss, exact float32), or ``bf16`` (cosine: bfloat16 candidates
            re-ranked exactly, :mod:`featlt.cluster.lowp_search`, its recall checked on a few
            queries and recorded in the result's ``search``).
    Returns:
        (leave-one-out result, held-out result or None).
    """
    rows = as_rows(X)
    n = rows.shape[0]
    if n < 2:
        raise FeatltError("kNN: needs at least 2 training rows")
    k = min(k, n - 1)
    if mean is None:
        mean = sum(block.sum(axis=0, dtype=np.float64) for _, block in rows.blocks()) / n
    queries = rows.take(query_rows)
    if X_held is not None:
        queries = np.concatenate([queries, np.asarray(X_held, dtype=np.float32)])
    ids, check = _search(rows, queries, k + 1, metric, mean, context, search)
    own, held = ids[:query_rows.size], ids[query_rows.size:]
    keep = own != query_rows[:, None]
    keep[keep.all(axis=1), -1] = False  # self not found (duplicates): drop the farthest
    counts = np.bincount(y, minlength=n_classes)
    query_labels = y[query_rows]
    record = {"method": search, **({} if check is None else {
        "recall_check_queries": check.n_queries, "recall_at_k": check.recall_at_k})}
    loo = _result(query_labels, y[own[keep].reshape(own.shape[0], k)], counts[query_labels] > 1,
                  n_classes, np.flatnonzero(counts == 1), k, metric, True, context, record)
    if X_held is None or y_held is None:
        return loo, None
    held_result = _result(np.asarray(y_held, dtype=np.int64), y[held[:, :k]],
                          np.ones(held.shape[0], dtype=bool), n_classes, np.empty(0, np.int64),
                          k, metric, False, context, record)
    return loo, held_result


def knn_loo(
    X: np.ndarray, y: np.ndarray, n_classes: int, query_rows: np.ndarray, context: FaissContext,
    k: int = 10, metric: KnnMetric = "cosine", mean: np.ndarray | None = None,
) -> KNNResult:
    """Leave-one-out kNN of the training rows ``query_rows`` of ``X`` (n, D) against all rows."""
    return knn_evaluate(X, y, n_classes, query_rows, context, k=k, metric=metric, mean=mean)[0]


def _result(
    query_labels: np.ndarray, neighbours: np.ndarray, evaluated: np.ndarray, n_classes: int,
    excluded: np.ndarray, k: int, metric: str, loo: bool, context: FaissContext,
    search: dict[str, Any],
) -> KNNResult:
    predicted = vote(neighbours)
    recall = per_class_recall(query_labels[evaluated], predicted[evaluated], n_classes)
    return KNNResult(
        balanced_accuracy=mean_over_classes(recall), per_class_recall=recall,
        query_labels=query_labels, neighbour_labels=neighbours,
        queries_per_class=np.bincount(query_labels, minlength=n_classes).astype(np.int64),
        excluded_classes=[int(c) for c in excluded], k=int(k), metric=metric, leave_one_out=loo,
        device=context.record(), search=search,
    )


@dataclass(frozen=True)
class NCMResult:
    """Nearest-class-mean classification (cosine, centred features)."""

    balanced_accuracy: float | None
    per_class_recall: np.ndarray  # (C,) float64; NaN where not evaluated
    excluded_classes: list[int]  # leave-one-out: classes with a single training sample
    leave_one_out: bool


@dataclass(frozen=True)
class NCMFit:
    """Class sums of the centred, L2-normalised training features (NCM's class means)."""

    mean: np.ndarray  # (D,) float64 training mean
    sums: np.ndarray  # (C, D) float64 per-class sums of the normalised rows
    counts: np.ndarray  # (C,) int64


def fit_ncm(
    X: np.ndarray | Rows, y: np.ndarray, n_classes: int, mean: np.ndarray | None = None
) -> NCMFit:
    """Fit NCM on training rows ``X`` (n, D) (an array or
    :class:`~featlt.cluster.rows.Rows`), ``y`` (n,), block by block."""
    rows = as_rows(X)
    if mean is None:
        mean = sum(block.sum(axis=0, dtype=np.float64) for _, block in rows.blocks()) / len(y)
    mean = np.asarray(mean, np.float64)
    transform = cosine_transform(mean)
    sums = np.zeros((n_classes, rows.shape[1]))
    for start, raw in rows.blocks():
        sums += class_sums(transform(raw), y[start:start + raw.shape[0]], n_classes)
    return NCMFit(mean=mean, sums=sums,
                  counts=np.bincount(y, minlength=n_classes).astype(np.int64))


def ncm_loo(
    X: np.ndarray | Rows, y: np.ndarray, n_classes: int, mean: np.ndarray | None = None,
    fit: NCMFit | None = None,
) -> NCMResult:
    """Leave-one-out NCM balanced accuracy on the training rows ``X`` (n, D) (an array or
    :class:`~featlt.cluster.rows.Rows`), ``y`` (n,).

    Args:
        fit: :func:`fit_ncm` of the same rows (computed when None).
    """
    fit = fit or fit_ncm(X, y, n_classes, mean)
    transform = cosine_transform(fit.mean)
    counts, sums = fit.counts, fit.sums
    sq_norms = (sums**2).sum(axis=1)
    sums32 = sums.astype(np.float32)
    predicted = np.empty(y.size, dtype=np.int64)
    for start, raw in as_rows(X).blocks():
        block = transform(raw)
        labels = y[start:start + raw.shape[0]]
        dots = (block @ sums32.T).astype(np.float64)  # (b, C): x . S_c
        own = dots[np.arange(labels.size), labels]
        x_sq = np.einsum("ij,ij->i", block, block).astype(np.float64)  # 1, or 0 for a zero row
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = dots / np.sqrt(sq_norms)[None, :]
            loo_norm = np.sqrt(np.maximum(sq_norms[labels] - 2 * own + x_sq, 0.0))
            cos[np.arange(labels.size), labels] = np.where(
                loo_norm > 0, (own - x_sq) / loo_norm, -np.inf)
        cos[:, counts == 0] = -np.inf
        predicted[start:start + labels.size] = np.nan_to_num(cos, nan=-np.inf).argmax(axis=1)
    evaluated = counts[y] > 1
    recall = per_class_recall(y[evaluated], predicted[evaluated], n_classes)
    return NCMResult(balanced_accuracy=mean_over_classes(recall), per_class_recall=recall,
                     excluded_classes=[int(c) for c in np.flatnonzero(counts == 1)],
                     leave_one_out=True)


def ncm_holdout(
    X_train: np.ndarray, y_train: np.ndarray, X_query: np.ndarray, y_query: np.ndarray,
    n_classes: int, mean: np.ndarray | None = None, fit: NCMFit | None = None,
) -> NCMResult:
    """NCM fitted on ``X_train`` (n, D) (or given as ``fit``), evaluated on ``X_query`` (q, D)."""
    fit = fit or fit_ncm(X_train, y_train, n_classes, mean)
    cos = cosine_to_means(cosine_transform(fit.mean)(X_query), fit.sums, zero_mean_score=-np.inf)
    predicted = cos.argmax(axis=1)
    recall = per_class_recall(np.asarray(y_query), predicted, n_classes)
    return NCMResult(balanced_accuracy=mean_over_classes(recall), per_class_recall=recall,
                     excluded_classes=[], leave_one_out=False)
