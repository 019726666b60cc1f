"""Nearest-neighbour search with bfloat16 candidates and an exact float32 re-rank.

Exact kNN of q queries among N rows costs the (q, N) similarity matrix, q N D multiply-adds. On
CPUs with bfloat16 instructions (AVX512-BF16, AMX) torch multiplies bfloat16 matrices about twice
as fast as float32 on one thread. :func:`knn_bf16` takes each query's ``candidates`` best rows
of every base block by the bfloat16 product, recomputes their similarities exactly in float32 and
keeps the k best over all blocks. A true neighbour is lost only when bfloat16 rounding (8 bits
of mantissa in the inputs and in the product) drops it below ``candidates`` rows of its own
block; the returned similarities are exact float32 values. The separability report measures
the recall against the exact search on a few queries (:func:`recall_at_k`), and
``benchmarks/bench_separability.py`` on every query.

Inverted-file indexes (faiss ``IndexIVFFlat``) were measured first and rejected: on the
benchmark's isotropic 512-dimensional classes, recall 0.45 at a search cost 4x the exact one
(100,000 rows, one thread; docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

CANDIDATES_PER_K = 2  # candidates per block: this many times k, plus 8
QUERY_CHUNK = 256  # queries re-ranked at once: bounds the (chunk, candidates, D) gather


def knn_bf16(
    queries: np.ndarray,
    blocks: Iterable[tuple[int, np.ndarray]],
    k: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    check: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The ``k`` base rows of largest inner product with every query (cosine on unit rows).

    Args:
        queries: (q, D) float32, already transformed.
        blocks: ``(first row, (b, D) base block)`` in any order; rows are numbered globally.
        transform: maps a (b, D) block to the searched (b, D) float32 rows.
        check: (c,) query indices also searched exactly in float32, in the same pass over the
            blocks, for :func:`recall_at_k`.
    Returns:
        (values, ids, exact_ids): (q, k) float32 exact inner products and (q, k) int64 base row
        ids, largest first (ids -1 where fewer than k rows were seen); (c, k) int64 exact
        neighbours of the ``check`` queries (None without ``check``).
    """
    import torch

    found = _TopK(queries.shape[0], k)
    exact = None if check is None else _TopK(check.size, k)
    queries_h = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(
        torch.bfloat16)
    for start, block in blocks:
        base = transform(block) if transform is not None else block
        base = np.ascontiguousarray(base, dtype=np.float32)
        n_cand = min(base.shape[0], CANDIDATES_PER_K * k + 8)
        scores = queries_h @ torch.from_numpy(base).to(torch.bfloat16).T  # (q, b) bfloat16
        candidates = torch.topk(scores, n_cand, dim=1, sorted=False).indices.numpy()
        del scores
        found.add(_exact_scores(queries, base, candidates), candidates + start)
        if exact is not None and check is not None:
            full = torch.from_numpy(queries[check] @ base.T)  # (c, b) float32
            values, top = torch.topk(full, min(k, base.shape[0]), dim=1, sorted=False)
            exact.add(values.numpy(), top.numpy() + start)
    values, ids = found.result()
    return values, ids, None if exact is None else exact.result()[1]


class _TopK:
    """The running k largest scores of each of ``q`` rows, merged block by block."""

    def __init__(self, q: int, k: int) -> None:
        self.k = k
        self.values = np.full((q, k), -np.inf, dtype=np.float32)
        self.ids = np.full((q, k), -1, dtype=np.int64)

    def add(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Merge (q, m) ``values`` of base rows ``ids`` (q, m) into the running top k."""
        merged_val = np.concatenate([self.values, values.astype(np.float32)], axis=1)
        merged_id = np.concatenate([self.ids, ids], axis=1)
        keep = np.argpartition(-merged_val, self.k - 1, axis=1)[:, :self.k]
        self.values = np.take_along_axis(merged_val, keep, axis=1)
        self.ids = np.take_along_axis(merged_id, keep, axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, k) values and ids, largest first."""
        order = np.argsort(-self.values, axis=1, kind="stable")
        return (np.take_along_axis(self.values, order, axis=1),
                np.take_along_axis(self.ids, order, axis=1))


def _exact_scores(queries: np.ndarray, base: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(q, c) float32 exact inner products of ``queries`` (q, D) with their ``candidates``
    (q, c) rows of ``base`` (b, D)."""
    out = np.empty(candidates.shape, dtype=np.float32)
    for first in range(0, queries.shape[0], QUERY_CHUNK):
        rows = base[candidates[first:first + QUERY_CHUNK]]  # (chunk, c, D)
        part = queries[first:first + QUERY_CHUNK]
        out[first:first + QUERY_CHUNK] = np.einsum("qd,qcd->qc", part, rows)
    return out


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact neighbours (q, k) found by the approximate search."""
    hits = [np.intersect1d(a, e).size / e.size for a, e in zip(approximate, exact, strict=True)]
    return float(np.mean(hits))
