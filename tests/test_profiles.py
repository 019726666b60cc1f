"""Long-tail profiles: published sizes, bit-exactness to Cao et al., nesting, golden hashes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from featlt.data.profiles import balanced_rows, long_tail_counts, long_tail_rows
from featlt.errors import FeatltError

PUBLISHED = [(10, 5000, 100, 12406), (10, 5000, 50, 13996), (100, 500, 100, 10847),
             (100, 500, 50, 12608)]


def sha256_rows(rows: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(rows, dtype="<i8").tobytes()).hexdigest()


def balanced_labels(n_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(n_classes), per_class))


def cao_reference_rows(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cao et al.'s IMBALANCECIFAR procedure, written out with NumPy's *global* legacy RNG."""
    state = np.random.get_state()
    try:
        np.random.seed(0)
        chosen = []
        for c, n_c in zip(np.unique(labels), counts, strict=True):
            idx = np.where(labels == c)[0]
            np.random.shuffle(idx)
            chosen.append(idx[:n_c])
    finally:
        np.random.set_state(state)
    return np.sort(np.concatenate(chosen))


@pytest.mark.parametrize(("n_classes", "n_max", "imbalance", "size"), PUBLISHED)
def test_profile_sizes_match_published(n_classes, n_max, imbalance, size):
    labels = balanced_labels(n_classes, n_max)
    counts = long_tail_counts(n_max, n_classes, imbalance)
    assert counts.sum() == size
    for profile in ("cao2019", "first"):
        rows = long_tail_rows(labels, counts, profile)
        assert rows.size == size
        assert np.array_equal(np.bincount(labels[rows], minlength=n_classes), counts)


def test_cao2019_equals_reference_procedure():
    labels = balanced_labels(10, 5000, seed=3)
    counts = long_tail_counts(5000, 10, 100)
    assert np.array_equal(long_tail_rows(labels, counts, "cao2019"),
                          cao_reference_rows(labels, counts))


@pytest.mark.parametrize("profile", ["cao2019", "first"])
def test_profiles_nested_across_imbalance_factors(profile):
    labels = balanced_labels(10, 500)
    previous = None
    for imbalance in (1, 10, 50, 100, 200):
        rows = set(long_tail_rows(labels, long_tail_counts(500, 10, imbalance), profile))
        if previous is not None:
            assert rows <= previous
        previous = rows


def test_step_profile_counts():
    assert long_tail_counts(100, 4, 10, decay="step").tolist() == [100, 100, 10, 10]


def test_featlt_cifar10_lt_500_counts():
    assert long_tail_counts(500, 10, 100).tolist() == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]


def test_profile_leaving_empty_class_is_refused():
    labels = balanced_labels(10, 50)
    with pytest.raises(FeatltError, match="class 8 with 0 samples"):
        long_tail_rows(labels, long_tail_counts(50, 10, 100), "first")


def test_profile_asking_for_more_than_available_is_refused():
    labels = balanced_labels(3, 10)
    with pytest.raises(FeatltError, match="lower n_max"):
        long_tail_rows(labels, np.array([20, 5, 2]), "first")


def test_balanced_rows_are_balanced_and_seeded():
    labels = balanced_labels(5, 40)
    rows = balanced_rows(labels, 12, seed=1)
    assert np.bincount(labels[rows]).tolist() == [12] * 5
    assert np.array_equal(rows, balanced_rows(labels, 12, seed=1))
    with pytest.raises(FeatltError, match="per-class count"):
        balanced_rows(labels, 41)


# Golden sha256 of the sorted int64 (little-endian) row arrays on the real label lists.
GOLDEN = {
    ("cifar10", "cao2019"): "f7669c469c9ddf9afcfabc0b127018ebfa21ac9ecddbe2642455be26c359cb8d",
    ("cifar10", "first"): "1c8f9fd307060fad95ca5b340ecd9e2ca12dda1933c1055418facd2ec9b5cb92",
    ("cifar100", "cao2019"): "644b6d28caa663f356ee55c541b55da2f8d0c4461cc0b2161f99c2fbf0273456",
    ("cifar100", "first"): "baca8d6631515fffebdadcca13d1ba8ed12fa5c9d12ebf3b1f0680e83726d99a",
}


@pytest.mark.parametrize("profile", ["cao2019", "first"])
def test_real_label_lists_give_published_sizes_and_golden_rows(shared_data, profile):
    cifar10 = np.load(shared_data / "cifar10" / "cifar10_exact_subset.npz")["y_train_full"]
    cifar100 = np.load(shared_data / "cifar100" / "cifar100_labels_and_exact_subset.npz")[
        "y_train_fine_full"
    ]
    cases = {"cifar10": (cifar10, 5000, 12406, 13996), "cifar100": (cifar100, 500, 10847, 12608)}
    for name, (labels, n_max, size100, size50) in cases.items():
        n_classes = int(labels.max()) + 1
        rows100 = long_tail_rows(labels, long_tail_counts(n_max, n_classes, 100), profile)
        rows50 = long_tail_rows(labels, long_tail_counts(n_max, n_classes, 50), profile)
        assert (rows100.size, rows50.size) == (size100, size50)
        assert set(rows100) <= set(rows50)
        assert sha256_rows(rows100) == GOLDEN[(name, profile)]
        if profile == "cao2019":
            counts = long_tail_counts(n_max, n_classes, 100)
            assert np.array_equal(rows100, cao_reference_rows(labels, counts))


def test_nested_balanced_rows_are_balanced_seeded_and_nested_across_sizes():
    from featlt.data.profiles import nested_balanced_rows

    labels = np.repeat(np.arange(3), [40, 25, 30])
    small, large = nested_balanced_rows(labels, 5), nested_balanced_rows(labels, 20)
    assert np.bincount(labels[small]).tolist() == [5, 5, 5]
    assert set(small) <= set(large) and np.all(np.diff(large) > 0)
    assert np.array_equal(small, nested_balanced_rows(labels, 5))
    assert not np.array_equal(large, nested_balanced_rows(labels, 20, seed=1))
    with pytest.raises(FeatltError, match="class 1 has 25 rows but 26"):
        nested_balanced_rows(labels, 26)
