"""The only module that imports faiss: device resolution, seeded k-means, kNN search, guards.

Every function takes a :class:`FaissContext` from :func:`resolve_faiss`, which resolves the device
explicitly (``--device cuda`` without a usable GPU is an error, never faiss's silent CPU fallback)
and sets faiss's OpenMP thread count (default 1: on a busy 2-core machine faiss with 2 threads can
run 100x slower than with 1). Results record ``context.record()``.

Guards, documented and tested:

- NaN/Inf rows: :class:`FeatltError` naming how many rows and the first one (faiss would raise a
  bare RuntimeError, or give garbage with its own check off).
- fewer points than centroids: :class:`FeatltError` naming the counts and the fix (faiss refuses).
- duplicate points: k-means still runs. When a set has fewer *distinct* points than ``k``, some
  centroids coincide; faiss splits empty clusters while training, but identical points cannot be
  separated, so after the final assignment (ties go to the lowest centroid id) some clusters are
  empty. :attr:`KMeansResult.n_empty` counts them; :func:`count_distinct_rows` lets callers check
  first (the classwise split keeps such a class whole).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from featlt.cluster.prototypes import l2_normalise
from featlt.errors import FeatltError

Metric = Literal["l2", "ip"]
BLOCK_ROWS = 65536  # base rows per kNN block: bounds the memory of a transformed block


@dataclass(frozen=True)
class FaissContext:
    """Where and how faiss runs; echoed into every result."""

    device: Literal["cpu", "cuda"]
    threads: int  # OpenMP threads of faiss's CPU code
    requested: str  # what the user asked for: auto, cpu or cuda
    n_gpus: int  # GPUs faiss can see (0 on CPU-only builds)
    gpu_build: bool  # "GPU" in faiss.get_compile_options()
    faiss_version: str

    def record(self) -> dict[str, Any]:
        return {
            "device": self.device, "threads": self.threads, "requested": self.requested,
            "n_gpus": self.n_gpus, "gpu_build": self.gpu_build,
            "faiss_version": self.faiss_version,
        }


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise FeatltError(
            "faiss is not installed; install featlt with the 'cpu' extra (faiss-cpu) or the 'gpu' "
            "extra (faiss-gpu)"
        ) from err
    return faiss


def resolve_faiss(device: str = "auto", threads: int | None = None) -> FaissContext:
    """Resolve the faiss device and set its OpenMP threads.

    Args:
        device: ``auto`` (GPU when the faiss build supports it and a GPU is visible), ``cpu`` or
            ``cuda`` (an error when no GPU is usable).
        threads: OpenMP threads for faiss; None means 1.
    """
    faiss = _faiss()
    if device not in ("auto", "cpu", "cuda"):
        raise FeatltError(f"device '{device}': unknown; use auto, cpu or cuda")
    if threads is None:
        threads = 1
    if threads < 1:
        raise FeatltError(f"--threads {threads}: must be at least 1; pass e.g. 1")
    gpu_build = "GPU" in faiss.get_compile_options()
    n_gpus = int(faiss.get_num_gpus()) if gpu_build else 0
    usable = gpu_build and n_gpus > 0 and hasattr(faiss, "StandardGpuResources")
    if device == "cuda" and not usable:
        why = "this faiss build has no GPU support (faiss-cpu)" if not gpu_build else (
            "faiss sees no GPU")
        raise FeatltError(
            f"--device cuda: {why}; install faiss-gpu on a machine with a CUDA GPU, or use "
            "--device auto / --device cpu"
        )
    resolved: Literal["cpu", "cuda"] = "cuda" if (device != "cpu" and usable) else "cpu"
    faiss.omp_set_num_threads(int(threads))
    return FaissContext(
        device=resolved, threads=int(threads), requested=device, n_gpus=n_gpus,
        gpu_build=gpu_build, faiss_version=str(faiss.__version__),
    )


@functools.lru_cache(maxsize=1)
def _gpu_resources() -> Any:
    """One ``StandardGpuResources`` per process (it holds GPU scratch memory)."""
    return _faiss().StandardGpuResources()


def check_finite_rows(X: np.ndarray, what: str) -> None:
    """Raise :class:`FeatltError` when any row of ``X`` (n, D) holds NaN or Inf.

    Row sums are checked first (a NaN or Inf element makes its row's sum non-finite), with no
    (n, D) temporary; only when one is not finite (or overflows) are the elements checked.
    """
    if X.shape[0] == 0 or np.isfinite(X.sum(axis=1)).all():
        return
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FeatltError(
            f"{what}: {int(bad.sum())} of {X.shape[0]} rows hold NaN/Inf values (first: row "
            f"{first}); re-extract the features or drop those rows"
        )


def as_float32_rows(X: np.ndarray, what: str) -> np.ndarray:
    """``X`` as a C-contiguous (n, D) float32 array with finite rows (copied only if needed)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise FeatltError(f"{what}: expected a 2-D (n, D) array, got shape {X.shape}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    check_finite_rows(X, what)
    return X


def count_distinct_rows(X: np.ndarray) -> int:
    """Number of distinct rows of ``X`` (n, D), compared bit for bit."""
    X = np.ascontiguousarray(X)
    if X.shape[0] == 0:
        return 0
    as_bytes = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    return int(np.unique(as_bytes).size)


@dataclass(frozen=True)
class KMeansResult:
    """A faiss k-means run and the assignment of *all* input points."""

    centroids: np.ndarray  # (k, D) float32
    labels: np.ndarray  # (n,) int64 nearest centroid of every input point
    sq_distances: np.ndarray  # (n,) float32 squared L2 distance to it (1 - cos when spherical)
    inertia: float  # sum of sq_distances over all n points
    objective: list[float]  # faiss's objective per iteration, on the training points
    n_train_points: int  # points faiss trained on (after its points-per-centroid subsampling)
    n_empty: int  # centroids that no point is assigned to (duplicate points; see module doc)
    k: int
    niter: int
    seed: int
    spherical: bool
    max_points_per_centroid: int
    device: dict[str, Any] = field(default_factory=dict)


def kmeans(
    X: np.ndarray,
    k: int,
    context: FaissContext,
    seed: int = 0,
    niter: int = 20,
    spherical: bool = False,
    max_points_per_centroid: int | None = None,
    what: str = "k-means input",
) -> KMeansResult:
    """Seeded faiss k-means (Lloyd, random init) and the assignment of every point.

    Args:
        X: (n, D) features; cast to float32. With ``spherical`` the rows are L2-normalised and
            the centroids kept on the unit sphere (inner-product assignment).
        k: number of centroids, 1 <= k <= n.
        seed: faiss's RNG seed (bit-reproducible on CPU).
        niter: Lloyd iterations (faiss has no tolerance stop unless asked; none is set).
        max_points_per_centroid: faiss trains on a random subsample of at most
            ``k * max_points_per_centroid`` points (its default is 256); None trains on all points.
            Either way every point is assigned to the final centroids.
        what: names the input in error messages.
    """
    faiss = _faiss()
    X = as_float32_rows(X, what)
    n, dim = X.shape
    if k < 1:
        raise FeatltError(f"{what}: k-means needs at least 1 centroid, got {k}")
    if n < k:
        raise FeatltError(
            f"{what}: {n} points but {k} centroids were requested; faiss needs at least as many "
            "points as centroids: lower the number of clusters or add data"
        )
    if spherical:
        X = l2_normalise(X)
    ppc = math.ceil(n / k) if max_points_per_centroid is None else int(max_points_per_centroid)
    km = faiss.Kmeans(
        dim, int(k), niter=int(niter), seed=int(seed), spherical=bool(spherical),
        max_points_per_centroid=ppc,
        # faiss warns below 39 points per centroid; that is advice, not a limit (docs/methods.md).
        min_points_per_centroid=1,
        verbose=False, gpu=context.device == "cuda",
    )
    km.train(X)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    sq, labels = assign(X, centroids, context, spherical=spherical)
    n_empty = int(k - np.unique(labels).size)
    return KMeansResult(
        centroids=centroids, labels=labels, sq_distances=sq,
        inertia=float(sq.sum(dtype=np.float64)),
        objective=[float(v) for v in km.obj], n_train_points=min(n, int(k) * ppc),
        n_empty=n_empty, k=int(k), niter=int(niter), seed=int(seed), spherical=bool(spherical),
        max_points_per_centroid=ppc, device=context.record(),
    )


def training_rows(n: int, k: int, max_points_per_centroid: int, seed: int) -> np.ndarray:
    """The rows faiss's k-means (:func:`kmeans` with this ``seed``) trains on out of ``n``: all
    of them in order when ``n <= k x max_points_per_centroid``, else the first ``k x
    max_points_per_centroid`` of faiss's seeded permutation, in that order.

    A k-means of exactly those rows (``max_points_per_centroid=None``) gives the same centroids
    bit for bit, so rows read from a store by chunks train the k-means the in-memory run trains.

    Returns:
        (m,) int64 row indices, in faiss's order.
    """
    limit = int(k) * int(max_points_per_centroid)
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    faiss = _faiss()
    perm = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
    faiss.rand_perm(faiss.swig_ptr(perm), n, int(seed))
    return perm[:limit].astype(np.int64)


def assign(
    X: np.ndarray, centroids: np.ndarray, context: FaissContext, spherical: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every row.

    Args:
        X: (n, D) float32 (unit rows when ``spherical``).
        centroids: (k, D) float32.
    Returns:
        (sq_distances, labels): (n,) float32 squared L2 distance (``1 - cos`` when spherical) and
        (n,) int64 centroid ids.
    """
    values, ids = knn(X, centroids, 1, context, metric="ip" if spherical else "l2")
    dist = (1.0 - values[:, 0]) if spherical else np.maximum(values[:, 0], 0.0)
    return dist.astype(np.float32), ids[:, 0].astype(np.int64)


def knn(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    context: FaissContext,
    metric: Metric = "l2",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    block_rows: int = BLOCK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of ``queries`` among the rows of ``base``, block by block.

    The base is searched in blocks of ``block_rows`` rows (:func:`knn_blocks`), so a per-block
    ``transform`` (e.g. centring and L2-normalising) never needs a full copy.

    Args:
        queries: (q, D) float32, already transformed.
        base: (n, D) float; ``transform`` maps a (b, D) block to the searched (b, D) float32.
        k: neighbours per query, 1 <= k <= n.
        metric: ``l2`` (squared distances, ascending) or ``ip`` (inner products, descending).
    Returns:
        (D, I): (q, k) float32 distances or similarities and (q, k) int64 row ids into ``base``.
    """
    n = int(base.shape[0])
    blocks = ((start, base[start:start + block_rows]) for start in range(0, n, block_rows))
    return knn_blocks(queries, blocks, n, k, context, metric, transform)


def knn_blocks(
    queries: np.ndarray,
    blocks: Iterable[tuple[int, np.ndarray]],
    n: int,
    k: int,
    context: FaissContext,
    metric: Metric = "l2",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of ``queries`` among ``n`` base rows given as blocks, each
    block's top k merged in a heap (a store read chunk by chunk needs one chunk at a time).

    Args:
        queries: (q, D) float32, already transformed.
        blocks: ``(first row, (b, D) block)`` covering rows 0..n-1; ``transform`` maps a block
            to the searched (b, D) float32.
        k: neighbours per query, 1 <= k <= n.
        metric: ``l2`` (squared distances, ascending) or ``ip`` (inner products, descending).
    Returns:
        (D, I): (q, k) float32 distances or similarities and (q, k) int64 base row ids.
    """
    faiss = _faiss()
    queries = as_float32_rows(queries, "kNN queries")
    if not 1 <= k <= n:
        raise FeatltError(f"kNN: asked for {k} neighbours among {n} rows; lower k (--knn-k)")
    if metric not in ("l2", "ip"):
        raise FeatltError(f"kNN metric '{metric}': unknown; use l2 or ip")
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    heap = faiss.ResultHeap(queries.shape[0], k, keep_max=metric == "ip")
    for start, raw in blocks:
        block = transform(raw) if transform is not None else raw
        block = as_float32_rows(block, "kNN base")
        kb = min(k, block.shape[0])
        if context.device == "cuda":
            values, ids = faiss.knn_gpu(_gpu_resources(), queries, block, kb, metric=faiss_metric)
        else:
            values, ids = faiss.knn(queries, block, kb, metric=faiss_metric)
        heap.add_result(values, ids + start)
    heap.finalize()
    return heap.D, heap.I
