"""Shot groups (docs/methods.md, "Shot groups"): relative thirds and absolute many/medium/few."""

import numpy as np
import pytest

from featlt.errors import FeatltError
from featlt.evaluation.shots import class_group_labels, frequency_order, shot_groups


def test_cifar10_lt_500_fills_all_groups():
    counts = np.array([500, 299, 179, 107, 64, 38, 23, 13, 8, 5])
    groups = shot_groups(counts)
    assert groups["head_third"].tolist() == [0, 1, 2, 3]
    assert groups["mid_third"].tolist() == [4, 5, 6]
    assert groups["tail_third"].tolist() == [7, 8, 9]
    assert groups["many"].tolist() == [0, 1, 2, 3]
    assert groups["medium"].tolist() == [4, 5, 6]
    assert groups["few"].tolist() == [7, 8, 9]


def test_empty_absolute_group_is_none_and_boundaries():
    # CIFAR-10-LT IF100 counts: no class under 20, so "few" is None.
    counts = np.array([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])
    groups = shot_groups(counts)
    assert groups["few"] is None
    assert groups["medium"].tolist() == [8, 9]
    edges = shot_groups(np.array([101, 100, 20, 19]))
    assert edges["many"].tolist() == [0]
    assert edges["medium"].tolist() == [1, 2]
    assert edges["few"].tolist() == [3]


def test_ties_broken_by_class_id_and_unsorted_counts():
    counts = np.array([10, 50, 10, 50, 30])
    assert frequency_order(counts).tolist() == [1, 3, 4, 0, 2]
    groups = shot_groups(counts)
    assert groups["head_third"].tolist() == [1, 3]
    assert groups["mid_third"].tolist() == [0, 4]
    assert groups["tail_third"].tolist() == [2]


def test_two_classes_leave_tail_third_empty():
    groups = shot_groups(np.array([30, 3]))
    assert groups["tail_third"] is None
    names, group_of = class_group_labels(np.array([30, 3]))
    assert names == ("head_third", "mid_third", "tail_third")
    assert group_of.tolist() == [0, 1]


def test_group_labels_absolute():
    names, group_of = class_group_labels(np.array([500, 64, 5]), grouping="absolute")
    assert names == ("many", "medium", "few")
    assert group_of.tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", [np.array([]), np.array([[1, 2]]), np.array([3, -1]),
                                 np.array([1.5, 2.0])])
def test_bad_counts_raise(bad):
    with pytest.raises(FeatltError, match="train_counts"):
        shot_groups(bad)
