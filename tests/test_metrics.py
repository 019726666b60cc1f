"""Long-tail metrics against numbers worked out by hand on a 6-row, 3-class example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featlt.errors import FeatltError
from featlt.evaluation.metrics import (
    balanced_accuracy,
    balanced_accuracy_torch,
    bootstrap_intervals,
    evaluate,
    group_means,
    mean_over_classes,
    per_class_recall,
    top_label_ece,
)

# Rows: true class, probabilities, prediction (argmax), confidence, ECE bin (15 bins)
#   0  [.72 .18 .10] -> 0 right  .72  bin 10 (.667, .733]
#   0  [.35 .55 .10] -> 1 wrong  .55  bin  8 (.533, .600]
#   0  [.62 .28 .10] -> 0 right  .62  bin  9 (.600, .667]
#   1  [.19 .71 .10] -> 1 right  .71  bin 10
#   1  [.07 .10 .83] -> 2 wrong  .83  bin 12 (.800, .867]
#   2  [.30 .29 .41] -> 2 right  .41  bin  6 (.400, .467]
Y = np.array([0, 0, 0, 1, 1, 2])
P = np.array([
    [0.72, 0.18, 0.10],
    [0.35, 0.55, 0.10],
    [0.62, 0.28, 0.10],
    [0.19, 0.71, 0.10],
    [0.07, 0.10, 0.83],
    [0.30, 0.29, 0.41],
])
# Training counts: thirds are [0], [1], [2]; many (> 100) is empty; medium {0, 1}; few {2}.
COUNTS = np.array([100, 30, 5])


@pytest.fixture(scope="module")
def result():
    return evaluate(Y, P, COUNTS, n_bootstrap=200, seed=0)


def test_accuracies(result):
    assert result["accuracy"] == pytest.approx(4 / 6)
    # per class 2/3, 1/2, 1/1
    assert result["per_class_accuracy"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # 0.72222
    assert result["worst_class_accuracy"] == pytest.approx(0.5)
    assert result["worst_class"] == 1


def test_shot_groups(result):
    assert result["head_third"] == pytest.approx(2 / 3)
    assert result["mid_third"] == pytest.approx(0.5)
    assert result["tail_third"] == pytest.approx(1.0)
    assert result["many"] is None  # empty group: null, never 0
    assert result["medium"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # 0.58333
    assert result["few"] == pytest.approx(1.0)
    assert result["groups"] == {"head_third": [0], "mid_third": [1], "tail_third": [2],
                                "many": None, "medium": [0, 1], "few": [2]}


def test_macro_f1(result):
    # class 0: P 2/2, R 2/3 -> F1 0.8; class 1: P 1/2, R 1/2 -> 0.5; class 2: P 1/2, R 1 -> 2/3
    assert result["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # 0.65556


def test_nll(result):
    nll = -(math.log(0.72) + math.log(0.35) + math.log(0.62) + math.log(0.71) + math.log(0.10)
            + math.log(0.41)) / 6
    assert nll == pytest.approx(0.898839, abs=1e-6)
    assert result["nll"] == pytest.approx(nll)


def test_ece_overall_and_by_true_class_group(result):
    # bin 10: two right rows, mean confidence .715 -> |1 - .715| * 2; bin 8: |0 - .55|;
    # bin 9: |1 - .62|; bin 12: |0 - .83|; bin 6: |1 - .41|  -> (0.57+.55+.38+.83+.59) / 6
    assert result["ece"] == pytest.approx(2.92 / 6)  # 0.48667
    groups = result["ece_groups"]
    assert groups["head_third"] == pytest.approx((0.28 + 0.55 + 0.38) / 3)  # rows 0-2
    assert groups["mid_third"] == pytest.approx((0.29 + 0.83) / 2)  # rows 3-4
    assert groups["tail_third"] == pytest.approx(0.59)
    assert groups["medium"] == pytest.approx((0.57 + 0.55 + 0.38 + 0.83) / 5)
    assert groups["many"] is None


def test_confusion_matrix(result):
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_bootstrap_is_seeded_and_brackets_the_estimate(result):
    again = evaluate(Y, P, COUNTS, n_bootstrap=200, seed=0)
    assert again["balanced_accuracy_ci"] == result["balanced_accuracy_ci"]
    low, high = result["accuracy_ci"]
    assert low <= result["accuracy"] <= high and low < high
    # all rows right: every resample has accuracy 1
    intervals = bootstrap_intervals(Y, np.ones(6, bool), 3, 100, seed=1)
    assert intervals == {"accuracy": [1.0, 1.0], "balanced_accuracy": [1.0, 1.0]}
    # 1,000 resamples by default
    assert evaluate(Y, P, COUNTS)["bootstrap"]["n"] == 1000


def test_bootstrap_balanced_accuracy_skips_classes_absent_from_a_resample():
    # one row per class, only class 0 right: a resample's balanced accuracy averages the
    # classes it drew, so the interval spans [0, 1] and never divides by zero.
    y, correct = np.array([0, 1, 2]), np.array([True, False, False])
    low, high = bootstrap_intervals(y, correct, 3, 500, seed=0)["balanced_accuracy"]
    assert 0.0 <= low < high <= 1.0


def test_ece_bins_are_right_closed():
    # 0.60 = 9/15 lies in bin (8/15, 9/15] with 0.59: one bin, accuracy 1/2, confidence .595.
    proba = np.array([[0.60, 0.40], [0.59, 0.41]])
    assert top_label_ece(proba, np.array([0, 1])) == pytest.approx(0.095)
    # confidence 1 and right: no gap; 0.5 and wrong (ties go to the first class): gap 0.5
    assert top_label_ece(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 1])) == 0.25
    assert top_label_ece(np.zeros((0, 2)), np.zeros(0, int)) is None


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        (np.array([0, 3]), np.full((2, 3), 1 / 3), "labels must be class ids in 0..2"),
        (np.array([0, -1]), np.full((2, 3), 1 / 3), "labels must be class ids in 0..2"),
        (np.zeros(0, int), np.zeros((0, 3)), "the evaluation split is empty"),
        (np.array([0, 1]), np.full((2, 2), 0.5), r"expected \(2, 3\)"),
        (np.array([0, 1]), np.array([[2.0, -1, 0], [0.2, 0.3, 0.5]]), "non-negative and sum"),
        (np.array([0, 1]), np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]]), "must be finite"),
    ],
)
def test_bad_input(y, p, message):
    with pytest.raises(FeatltError, match=message):
        evaluate(y, p, COUNTS, n_bootstrap=0)


def test_per_class_recall_marks_absent_classes_nan():
    # class 3 has no rows; class 4 is only predicted (a miss for class 0, no recall of its own)
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 4, 1, 2, 0, 2])
    recall = per_class_recall(y_true, y_pred, 5)
    assert recall[:3].tolist() == [0.5, 1.0, 2 / 3]
    assert np.isnan(recall[3]) and np.isnan(recall[4])
    assert balanced_accuracy(y_true, y_pred, 5) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert np.isnan(per_class_recall(np.zeros(0, int), np.zeros(0, int), 2)).all()
    assert balanced_accuracy(np.zeros(0, int), np.zeros(0, int), 2) is None


def test_balanced_accuracy_matches_sklearn_and_the_torch_version():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, size=500)
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 7, size=500))
    expected = balanced_accuracy_score(y_true, y_pred)
    assert balanced_accuracy(y_true, y_pred, 7) == pytest.approx(expected, abs=1e-15)
    torch = pytest.importorskip("torch")
    on_torch = balanced_accuracy_torch(torch.as_tensor(y_pred), torch.as_tensor(y_true), 9)
    assert on_torch == pytest.approx(expected, abs=1e-15)


def test_means_skip_unevaluated_classes_and_empty_groups():
    values = np.array([0.2, np.nan, 0.6, 1.0])
    assert mean_over_classes(values) == pytest.approx(0.6)
    assert mean_over_classes(np.full(3, np.nan)) is None
    means = group_means(values, {"a": np.array([0, 1]), "b": np.array([1]), "c": None})
    assert means == {"a": pytest.approx(0.2), "b": None, "c": None}


def _pinned_input() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 12, size=157)
    correct = rng.random((3, 157)) < np.array([[0.5], [0.6], [0.7]])
    return y, correct


def test_the_one_bootstrap_gives_the_numbers_both_old_copies_gave():
    """Pinned from featlt/rank/bootstrap.py (resampled_recall, class_mean, percentile_interval,
    probability_best) and metrics.bootstrap_intervals / evaluate before they became
    featlt.evaluation.bootstrap: the same seed and rows give the same numbers, to the bit."""
    from featlt.evaluation.bootstrap import (
        class_mean,
        paired_bootstrap,
        percentile_interval,
        probability_best,
    )
    from featlt.evaluation.metrics import evaluate

    y, correct = _pinned_input()
    means = class_mean(paired_bootstrap(y, correct, 12, 120, seed=3).recall)
    assert means[[0, 57, 119]].tolist() == [
        [0.4817268351130581, 0.5913404105354568, 0.6818957716403536],
        [0.4791931784675592, 0.6056508249232708, 0.6860713643511631],
        [0.4829525264896782, 0.557773475449559, 0.7252115842963366]]
    recall = paired_bootstrap(y, correct, 12, 120, seed=3).recall
    assert class_mean(recall, np.array([9, 10, 11]))[[5, 88]].tolist() == [
        [0.6666666666666666, 0.4666666666666666, 0.5037037037037037],
        [0.5634920634920635, 0.4365079365079365, 0.5436507936507936]]
    assert percentile_interval(means[:, 1]) == [0.5289274974842408, 0.6621289259899457]
    assert probability_best(means).tolist() == [0.0, 0.008333333333333333, 0.9916666666666667]
    assert bootstrap_intervals(y, correct[2], 12, 120, seed=3) == {
        "accuracy": [0.6431528662420382, 0.7643312101910829],
        "balanced_accuracy": [0.6433391817000079, 0.7650487965193847]}
    proba = np.full((157, 12), 0.5 / 11)
    proba[np.arange(157), np.where(correct[1], y, (y + 1) % 12)] = 0.5
    result = evaluate(y, proba, np.arange(12, 0, -1) * 10, n_bootstrap=200, seed=5)
    assert result["balanced_accuracy"] == 0.5972328869387694
    assert result["balanced_accuracy_ci"] == [0.5302146508856068, 0.6759340361776024]
    assert result["accuracy_ci"] == [0.5286624203821656, 0.6691082802547771]
    assert result["tail_third"] == 0.5060876623376623


def test_one_model_of_the_paired_bootstrap_is_the_same_resample_as_several():
    """Row m of a paired bootstrap of M models equals the bootstrap of model m alone: the
    resampled row indices depend on the seed and the number of rows only."""
    from featlt.evaluation.bootstrap import paired_bootstrap

    y, correct = _pinned_input()
    several = paired_bootstrap(y, correct, 12, 75, seed=11)
    alone = paired_bootstrap(y, correct[1], 12, 75, seed=11)
    np.testing.assert_array_equal(several.recall[:, 1], alone.recall[:, 0])
    np.testing.assert_array_equal(several.accuracy[:, 1], alone.accuracy[:, 0])
    with pytest.raises(FeatltError, match="do not match 157 labels"):
        paired_bootstrap(y, correct[:, :10], 12, 5, seed=0)


def test_mean_over_classes_is_the_scalar_class_mean():
    from featlt.evaluation.bootstrap import class_mean

    rng = np.random.default_rng(3)
    values = rng.random((40, 23))
    values[rng.random(values.shape) < 0.25] = np.nan
    values[5] = np.nan  # a row without any evaluated class
    rows = class_mean(values)
    for row, expected in zip(values, rows, strict=True):
        got = mean_over_classes(row)
        assert (got is None) if np.isnan(expected) else got == float(expected)
    # and the mean of the classes present, up to summation order (a few ulp)
    finite = values[0][np.isfinite(values[0])]
    assert mean_over_classes(values[0]) == pytest.approx(finite.mean(), rel=1e-15, abs=0)
