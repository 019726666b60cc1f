"""cluster.prototypes: unit rows, class sums and cosine scores against class means."""

import numpy as np
import pytest

from featlt.cluster.prototypes import centred_unit, class_sums, cosine_to_means, l2_normalise


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows_zero():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [-1e-3, 0.0]])
    unit = l2_normalise(X, np.float64)
    assert unit.tolist() == [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]]
    assert l2_normalise(X).dtype == np.float32 and X[0, 0] == 3.0  # a copy, float32 by default


def test_centred_unit_subtracts_the_mean_first():
    X = np.array([[2.0, 1.0], [1.0, 3.0]])
    assert centred_unit(X, [1.0, 1.0], np.float64).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_class_sums_with_and_without_weights():
    values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y = np.array([1, 0, 1])
    assert class_sums(values, y, 3).tolist() == [[3.0, 4.0], [6.0, 8.0], [0.0, 0.0]]
    weighted = class_sums(values, y, 3, weights=np.array([2.0, 1.0, 0.5]))
    assert weighted.tolist() == [[3.0, 4.0], [4.5, 7.0], [0.0, 0.0]]


def test_cosine_to_means_ignores_scale_and_scores_zero_means_as_asked():
    U = np.array([[1.0, 0.0], [0.0, 1.0]])
    means = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    cos = cosine_to_means(U, means, zero_mean_score=-np.inf)
    assert cos[:, :2] == pytest.approx(np.array([[1.0, 2**-0.5], [0.0, 2**-0.5]]))
    assert np.all(cos[:, 2] == -np.inf)
    assert np.all(cosine_to_means(U, means, zero_mean_score=0.0)[:, 2] == 0.0)


def test_ncm_head_and_separability_ncm_share_the_math():
    from featlt.data.synthetic import gaussian_classes
    from featlt.evaluation.metrics import balanced_accuracy
    from featlt.heads.ncm import NCMHead
    from featlt.separability.scores.neighbours import ncm_holdout

    train = gaussian_classes(np.array([60, 30, 12, 5]), dim=16, separation=3.0, seed=0)
    query = gaussian_classes(np.full(4, 25), dim=16, centres=train.centres, seed=1)
    head = NCMHead(metric="cosine").fit(train.X, train.y)
    held = ncm_holdout(train.X, train.y, query.X, query.y, 4)
    assert balanced_accuracy(query.y, head.predict(query.X), 4) == pytest.approx(
        held.balanced_accuracy)
