"""The k-fold cross-validated logit-adjusted linear head score (featlt.rank.cv_head_score)."""

from __future__ import annotations

import numpy as np
import pytest

from featlt.errors import FeatltError
from featlt.rank.cv_head_score import CV_HEAD_PARAMS, check_folds, cv_head_score

COUNTS = [120, 60, 30, 15, 8]  # long-tailed, every class >= 5 rows
EPOCHS = 8  # small sets get >= 2048 draws per epoch, so 8 epochs train a linear head well


def blobs(seed: int, spread: float = 6.0, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(COUNTS)), COUNTS)
    centres = spread * rng.standard_normal((len(COUNTS), dim))
    return centres[y] + rng.standard_normal((y.size, dim)), y


def test_separable_blobs_score_high_with_the_tail() -> None:
    X, y = blobs(0)
    result = cv_head_score(X, y, max_epochs=EPOCHS)
    assert result.balanced_accuracy > 0.95
    assert result.tail_recall is not None and result.tail_recall > 0.9
    assert result.fold_balanced_accuracies.shape == (5,)
    assert result.predictions.shape == y.shape and (result.predictions >= 0).all()


def test_random_labels_score_near_chance() -> None:
    X, y = blobs(1)
    y = np.random.default_rng(2).permutation(y)  # labels unrelated to the features
    result = cv_head_score(X, y, max_epochs=EPOCHS)
    assert abs(result.balanced_accuracy - 1 / len(COUNTS)) < 0.12  # chance: 0.2


def test_deterministic_given_the_seed_and_the_seed_matters() -> None:
    X, y = blobs(3, spread=1.0)  # overlapping, so predictions depend on the fit
    a = cv_head_score(X, y, max_epochs=EPOCHS, seed=4)
    b = cv_head_score(X, y, max_epochs=EPOCHS, seed=4)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    assert a.balanced_accuracy == b.balanced_accuracy
    c = cv_head_score(X, y, max_epochs=EPOCHS, seed=5)
    assert not np.array_equal(a.predictions, c.predictions)


def test_each_fold_is_the_la_head_fitted_on_its_training_part() -> None:
    """Fold 0's out-of-fold predictions are those of LinearHead(loss="la") fitted on fold 0's
    training rows alone, its prior counted from them."""
    from sklearn.model_selection import StratifiedKFold

    from featlt.heads.linear import LinearHead

    X, y = blobs(6, spread=1.0)
    result = cv_head_score(X, y, n_folds=3, seed=7, max_epochs=EPOCHS)
    train, held = next(StratifiedKFold(3, shuffle=True, random_state=7).split(X, y))
    seed0 = int(np.random.SeedSequence(7).generate_state(3)[0])
    head = LinearHead(**{**CV_HEAD_PARAMS, "max_epochs": EPOCHS}, device="cpu",
                      random_state=seed0).fit(X[train], y[train])
    np.testing.assert_array_equal(head.class_counts_, np.bincount(y[train]))
    np.testing.assert_array_equal(result.predictions[held], head.predict(X[held]))
    assert result.head_params["loss"] == "la" and result.head_params["early_stopping"] is False


def test_a_class_with_fewer_rows_than_folds_is_refused_with_the_fix() -> None:
    X, y = blobs(0)
    with pytest.raises(FeatltError, match=r"class 4 has 8 training rows but 10 folds.*fewer folds"):
        cv_head_score(X, y, n_folds=10)
    with pytest.raises(FeatltError, match="at most 8 folds"):
        check_folds(y, 9)
    check_folds(y, 8)  # exactly as many rows as folds is enough


@pytest.mark.parametrize("kwargs, message", [
    ({"n_folds": 1}, "n_folds must be an int >= 2"),
    ({"max_epochs": 0}, "max_epochs must be an int >= 1"),
])
def test_bad_settings_are_refused(kwargs, message: str) -> None:
    X, y = blobs(0)
    with pytest.raises(FeatltError, match=message):
        cv_head_score(X, y, **kwargs)


def test_bad_input_is_refused() -> None:
    X, y = blobs(0)
    with pytest.raises(FeatltError, match="single class"):
        cv_head_score(X, np.zeros_like(y))
    X[3, 2] = np.nan
    with pytest.raises(FeatltError, match="NaN/Inf"):
        cv_head_score(X, y)
