"""Classwise splitting (CWS, a reconstruction): the split-count rule and the split itself."""

import numpy as np
import pytest

from featlt.cluster.splitting import (
    _drop_empty,
    balanced_assignment,
    classwise_split,
    default_n_ref,
    equal_split_imbalance,
    plan_splits,
)
from featlt.errors import FeatltError


def test_plan_follows_the_rule_exactly():
    counts = np.array([1000, 250, 150, 149, 60, 39, 19, 1, 0])
    # K_c = max(1, min(round_half_up(n_c / 100), n_c // 20))
    assert plan_splits(counts, n_ref=100, m_min=20).tolist() == [10, 3, 2, 1, 1, 1, 1, 1, 1]
    # m_min binds: 150 // 60 = 2 < round(150 / 10) = 15; classes below m_min stay whole.
    assert plan_splits(counts, n_ref=10, m_min=60).tolist() == [16, 4, 2, 2, 1, 1, 1, 1, 1]
    # Classes smaller than the minimum sub-class never split, whatever n_ref.
    assert plan_splits(np.array([19, 5, 1]), n_ref=1, m_min=20).tolist() == [1, 1, 1]
    for n_ref, m_min in ((37.0, 7), (3.0, 1), (500.0, 2)):
        expected = [max(1, min(int(np.floor(n / n_ref + 0.5)), n // m_min)) for n in counts]
        assert plan_splits(counts, n_ref, m_min).tolist() == expected


def test_default_reference_is_the_median_class_size():
    counts = np.array([500, 299, 179, 107, 64, 38, 23, 13, 8, 5])  # CIFAR-10-LT-500
    assert default_n_ref(counts) == 51.0
    assert plan_splits(counts, m_min=20).tolist() == [10, 6, 4, 2, 1, 1, 1, 1, 1, 1]
    assert default_n_ref(np.array([0, 10, 30])) == 20.0  # empty classes do not count


@pytest.mark.parametrize("kwargs, match", [
    (dict(counts=np.array([10, -1])), "non-negative"),
    (dict(counts=np.array([10]), m_min=0), "min sub-class size"),
    (dict(counts=np.array([10]), n_ref=0.0), "n_ref"),
    (dict(counts=np.array([0, 0])), "every class count is 0"),
])
def test_plan_rejects_bad_input(kwargs, match):
    with pytest.raises(FeatltError, match=match):
        plan_splits(**kwargs)


def two_blob_classes(seed=0):
    """Class 0: two far-apart blobs of 60; class 1: one blob of 40; class 2: 3 points."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0, 1, (60, 4)), rng.normal(0, 1, (60, 4)) + 30,
             rng.normal(0, 1, (40, 4)) - 30, rng.normal(0, 1, (3, 4)) + np.array([30, -30, 0, 0])]
    X = np.concatenate(parts).astype(np.float32)
    y = np.repeat([0, 0, 1, 2], [60, 60, 40, 3])
    return X, y


def test_split_finds_known_subclasses_and_records_the_plan():
    X, y = two_blob_classes()
    split = classwise_split(X, y, n_ref=60, m_min=20, seed=3, device="cpu")
    assert split.k_planned.tolist() == [2, 1, 1]
    assert split.k_per_class.tolist() == [2, 1, 1]
    assert split.prototypes.shape == (4, 4)
    assert split.sub_to_class.tolist() == [0, 0, 1, 2]
    assert np.array_equal(split.sub_to_class[split.sub_labels], y)
    first, second = split.sub_labels[:60], split.sub_labels[60:120]
    assert np.unique(first).size == 1 and np.unique(second).size == 1 and first[0] != second[0]
    assert split.sub_counts.tolist() == [60, 60, 40, 3]
    assert split.imbalance_before == pytest.approx(120 / 3)
    assert split.imbalance_after == pytest.approx(60 / 3)
    assert np.allclose(split.prototypes[2], X[y == 1].mean(0), atol=1e-5)  # whole class: mean
    assert split.kept_whole == {} and split.device["device"] == "cpu"
    plan = split.plan_record()
    assert "reconstruction" in plan["method"] and plan["n_subclasses"] == 4


def test_split_is_deterministic_for_a_seed():
    X, y = two_blob_classes()
    a = classwise_split(X, y, n_ref=20, m_min=10, seed=7)
    b = classwise_split(X, y, n_ref=20, m_min=10, seed=7)
    assert np.array_equal(a.sub_labels, b.sub_labels)
    assert np.array_equal(a.prototypes, b.prototypes)
    assert a.k_per_class.tolist() == [6, 2, 1]


def test_more_subclasses_than_points_keeps_the_class_whole():
    X, y = two_blob_classes()
    split = classwise_split(X, y, k_per_class=np.array([2, 1, 5]), seed=0)
    assert split.k_per_class.tolist() == [2, 1, 1]
    assert "5 sub-classes asked for but the class has 3 points" in split.kept_whole[2]
    assert split.n_ref is None


def test_class_of_identical_points_stays_whole():
    X, y = two_blob_classes()
    X[y == 1] = X[y == 1][0]  # class 1: 40 copies of one point
    split = classwise_split(X, y, k_per_class=np.array([2, 3, 1]), seed=0)
    assert split.k_per_class.tolist() == [2, 1, 1]
    assert "only 1 distinct points" in split.kept_whole[1]
    assert (split.sub_labels[y == 1] == split.sub_labels[y == 1][0]).all()


def test_one_sample_class_and_missing_class():
    X, y = two_blob_classes()
    y = np.where(y == 2, 3, y)  # class 2 absent, class 3 has 3 samples
    X = np.concatenate([X, X[:1] + 100])
    y = np.concatenate([y, [4]])  # class 4: a single sample
    split = classwise_split(X, y, n_ref=60, m_min=20)
    assert split.k_per_class.tolist() == [2, 1, 0, 1, 1]
    assert split.class_counts.tolist() == [120, 40, 0, 3, 1]
    assert split.imbalance_before == 120.0


def test_drop_empty_renumbers():
    centroids = np.arange(8, dtype=np.float32).reshape(4, 2)
    kept, labels = _drop_empty(centroids, np.array([3, 0, 3, 0]))
    assert kept.tolist() == [[0, 1], [6, 7]] and labels.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1]), "labels of shape"),
    (np.array([0, -1, 1]), "non-negative"),
])
def test_split_rejects_bad_labels(y, match):
    with pytest.raises(FeatltError, match=match):
        classwise_split(np.zeros((3, 2), np.float32), y)


def test_split_rejects_nan_features():
    X, y = two_blob_classes()
    X[7, 0] = np.nan
    with pytest.raises(FeatltError, match="NaN/Inf"):
        classwise_split(X, y)


def test_faiss_subsampling_is_optional_and_recorded():
    X, y = two_blob_classes()
    split = classwise_split(X, y, n_ref=60, m_min=20, seed=1, max_points_per_centroid=10)
    assert split.max_points_per_centroid == 10
    assert split.plan_record()["max_points_per_centroid"] == 10
    first, second = split.sub_labels[:60], split.sub_labels[60:120]  # every point assigned
    assert np.unique(first).size == 1 and np.unique(second).size == 1 and first[0] != second[0]


def test_balanced_assignment_fills_nearest_pairs_under_equal_capacities():
    # Four points all nearest to centroid 0: two fit (capacity 4 / 2), the farther two move.
    sq = np.array([[0.0, 5.0], [1.0, 4.0], [2.0, 9.0], [3.0, 3.5]])
    assert balanced_assignment(sq).tolist() == [0, 1, 0, 1]
    # 7 points over 3 centroids: sizes 3, 2, 2 in some order (differ by at most one).
    rng = np.random.default_rng(0)
    sizes = np.bincount(balanced_assignment(rng.random((7, 3))), minlength=3)
    assert sorted(sizes.tolist()) == [2, 2, 3]


def test_balanced_split_reduces_imbalance_where_plain_kmeans_raises_it():
    rng = np.random.default_rng(1)
    # Class 0: one big blob of 400 and a small one of 40 (plain k-means keeps them apart).
    X = np.concatenate([rng.normal(0, 1, (400, 4)), rng.normal(0, 1, (40, 4)) + 20,
                        rng.normal(0, 1, (110, 4)) - 20]).astype(np.float32)
    y = np.repeat([0, 1], [440, 110])
    k = np.array([4, 1])
    plain = classwise_split(X, y, k_per_class=k, seed=0, balanced=False)
    even = classwise_split(X, y, k_per_class=k, seed=0)
    assert plain.imbalance_after > 440 / 110  # plain k-means: the 40-point blob is a sub-class
    sizes = even.sub_counts[even.sub_to_class == 0]
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 440
    assert even.imbalance_after == pytest.approx(equal_split_imbalance([440, 110], k))
    assert even.imbalance_after == pytest.approx(110 / 110)
    record = even.plan_record()
    assert record["balanced"] and record["imbalance_equal_split"] == pytest.approx(1.0)
    # Prototypes are the means of the balanced sub-classes.
    for s in range(4):
        np.testing.assert_allclose(even.prototypes[s], X[even.sub_labels == s].mean(0),
                                   atol=1e-4)
