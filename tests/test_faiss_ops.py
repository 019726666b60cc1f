"""faiss_ops: device resolution, seeded k-means, kNN search and the guards."""

import numpy as np
import pytest

from featlt.cluster.faiss_ops import (
    as_float32_rows,
    count_distinct_rows,
    kmeans,
    knn,
    resolve_faiss,
)
from featlt.cluster.prototypes import l2_normalise
from featlt.errors import FeatltError

faiss = pytest.importorskip("faiss")
NO_GPU = faiss.get_num_gpus() == 0 or "GPU" not in faiss.get_compile_options()


@pytest.fixture(scope="module")
def cpu():
    return resolve_faiss("cpu", threads=1)


def blobs(n_per=50, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(3, dim)
    y = np.repeat(np.arange(3), n_per)
    return (centres[y] + rng.standard_normal((y.size, dim))).astype(np.float32), y


def test_resolve_records_device_and_threads():
    context = resolve_faiss("auto", threads=None)
    assert context.threads == 1  # default: one OpenMP thread
    assert faiss.omp_get_max_threads() == 1
    assert context.record()["device"] == context.device
    assert context.device == ("cpu" if NO_GPU else "cuda")
    assert resolve_faiss("cpu", threads=2).threads == 2
    assert faiss.omp_get_max_threads() == 2
    resolve_faiss("cpu", threads=1)


@pytest.mark.skipif(not NO_GPU, reason="needs a machine where faiss has no GPU")
def test_explicit_cuda_without_gpu_is_an_error():
    with pytest.raises(FeatltError, match="--device cuda"):
        resolve_faiss("cuda")


@pytest.mark.parametrize("device, threads, match", [("tpu", 1, "unknown"), ("cpu", 0, "threads")])
def test_resolve_rejects_bad_options(device, threads, match):
    with pytest.raises(FeatltError, match=match):
        resolve_faiss(device, threads)


def test_kmeans_is_deterministic_for_a_seed_and_finds_blobs(cpu):
    X, y = blobs()
    a = kmeans(X, 3, cpu, seed=5)
    b = kmeans(X, 3, cpu, seed=5)
    assert np.array_equal(a.centroids, b.centroids) and np.array_equal(a.labels, b.labels)
    assert a.inertia == b.inertia
    # Each blob is one cluster (up to renaming).
    assert all(np.unique(a.labels[y == c]).size == 1 for c in range(3))
    assert np.unique(a.labels).size == 3 and a.n_empty == 0
    # Inertia is the sum of squared distances to the assigned centroid.
    direct = ((X - a.centroids[a.labels]) ** 2).sum()
    assert a.inertia == pytest.approx(direct, rel=1e-5)
    assert a.device["device"] == "cpu" and a.seed == 5


def test_kmeans_points_per_centroid_is_deliberate(cpu):
    X, _ = blobs(n_per=100)
    full = kmeans(X, 3, cpu)
    assert full.n_train_points == 300 and full.max_points_per_centroid == 100
    sub = kmeans(X, 3, cpu, max_points_per_centroid=20)
    assert sub.n_train_points == 60 and sub.labels.shape == (300,)  # all points assigned


def test_kmeans_spherical_centroids_are_unit(cpu):
    X, _ = blobs()
    result = kmeans(X, 3, cpu, spherical=True)
    assert np.allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)
    assert (result.sq_distances >= -1e-6).all() and (result.sq_distances <= 2 + 1e-6).all()


def test_kmeans_guards(cpu):
    X, _ = blobs(n_per=2)
    with pytest.raises(FeatltError, match="6 points but 7 centroids"):
        kmeans(X, 7, cpu)
    bad = X.copy()
    bad[4, 1] = np.nan
    bad[5, 0] = np.inf
    with pytest.raises(FeatltError, match=r"2 of 6 rows hold NaN/Inf values \(first: row 4\)"):
        kmeans(bad, 2, cpu)


def test_kmeans_duplicate_points_leave_empty_clusters(cpu):
    X, _ = blobs(n_per=1)
    repeated = np.repeat(X, 10, axis=0)  # 30 rows, 3 distinct
    assert count_distinct_rows(repeated) == 3
    result = kmeans(repeated, 5, cpu)
    assert result.n_empty == 2  # documented: identical points cannot be separated
    assert np.unique(result.labels).size == 3


def test_knn_matches_brute_force_in_blocks(cpu):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((97, 6)).astype(np.float32)
    queries = rng.standard_normal((5, 6)).astype(np.float32)
    dist = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    expected = np.argsort(dist, axis=1)[:, :4]
    for block in (1000, 10):
        values, ids = knn(queries, base, 4, cpu, metric="l2", block_rows=block)
        assert np.array_equal(ids, expected)
        assert np.allclose(values, np.take_along_axis(dist, expected, 1), rtol=1e-4)
    unit = l2_normalise(base)
    values, ids = knn(l2_normalise(queries), base, 3, cpu, metric="ip", transform=l2_normalise,
                      block_rows=10)
    sims = l2_normalise(queries) @ unit.T
    assert np.array_equal(ids, np.argsort(-sims, axis=1)[:, :3])


def test_knn_rejects_bad_requests(cpu):
    base = np.zeros((3, 2), np.float32)
    with pytest.raises(FeatltError, match="4 neighbours among 3 rows"):
        knn(base, base, 4, cpu)
    with pytest.raises(FeatltError, match="metric"):
        knn(base, base, 1, cpu, metric="cosine")
    with pytest.raises(FeatltError, match="2-D"):
        as_float32_rows(np.zeros(3), "x")
