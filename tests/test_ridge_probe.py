"""The class-balanced ridge probe: closed-form leave-one-out equals refits, the score, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from featlt.errors import FeatltError
from featlt.separability.scores.ridge_probe import (
    RELATIVE_GRID,
    _prepare,
    loo_predictions,
    loo_predictions_grid,
    ridge_basis,
    ridge_probe,
)


def refit_without(Z: np.ndarray, y: np.ndarray, s: np.ndarray, C: int, i: int,
                  lam: float) -> np.ndarray:
    """Brute force: the weighted ridge with an unpenalised intercept fitted on every row but i
    (the others keep their weights), evaluated at row i. Solved as a stacked least-squares
    problem [sqrt(s) [1 Z]; sqrt(lam) [0 I]] theta = [sqrt(s) Y; 0]."""
    keep = np.arange(y.size) != i
    Za = np.hstack([np.ones((keep.sum(), 1)), Z[keep]])
    Y = np.eye(C)[y[keep]]
    root = np.sqrt(s[keep])[:, None]
    dim = Z.shape[1]
    penalty = np.hstack([np.zeros((dim, 1)), np.sqrt(lam) * np.eye(dim)])
    A = np.vstack([Za * root, penalty])
    B = np.vstack([Y * root, np.zeros((dim, C))])
    theta = np.linalg.lstsq(A, B, rcond=None)[0]
    return np.concatenate([[1.0], Z[i]]) @ theta


def problem(n: int, dim: int, C: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])  # every class present
    centres = rng.standard_normal((C, dim))
    return centres[y] + rng.standard_normal((n, dim)), y


@pytest.mark.parametrize("n, dim", [(60, 5), (20, 40)])
def test_closed_form_loo_equals_refits_for_every_lambda(n: int, dim: int) -> None:
    C = 3
    X, y = problem(n, dim, C, seed=n + dim)
    # unbalanced on purpose, so the weights 1 / n_c differ between classes
    Z, s = _prepare(X, y, C)
    basis = ridge_basis(Z, y, s, C)
    assert basis.form == ("primal" if n >= dim else "kernel")
    lambdas = float(basis.eigvals.mean()) * np.array([1e-4, 1e-2, 1.0, 1e2])
    grid = loo_predictions_grid(basis, y, lambdas)  # all strengths in one pass
    assert grid.shape == (4, n, C)
    for loo, lam in zip(grid, lambdas, strict=True):
        brute = np.array([refit_without(Z, y, s, C, i, lam) for i in range(n)])
        np.testing.assert_allclose(loo, brute, rtol=0, atol=1e-8)
        np.testing.assert_allclose(loo_predictions(basis, y, lam), brute, rtol=0, atol=1e-8)


def test_singleton_class_is_predicted_zero_for_its_own_row_and_excluded() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((31, 4))
    y = np.array([0] * 15 + [1] * 15 + [2])  # class 2 has one row
    Z, s = _prepare(X, y, 3)
    basis = ridge_basis(Z, y, s, 3)
    loo = loo_predictions(basis, y, float(basis.eigvals.mean()) * 0.1)
    assert abs(loo[30, 2]) < 1e-10  # no example of class 2 is left when its row is held out
    np.testing.assert_allclose(loo[30], refit_without(Z, y, s, 3, 30,
                                                      float(basis.eigvals.mean()) * 0.1),
                               atol=1e-8)
    result = ridge_probe(X, y)
    assert result.excluded_classes == [2]
    assert np.isnan(result.per_class_recall[2])


def test_separable_blobs_score_high_and_random_labels_near_chance() -> None:
    rng = np.random.default_rng(0)
    counts = [200, 90, 40, 18, 8]
    y = np.repeat(np.arange(5), counts)
    centres = 4.0 * rng.standard_normal((5, 16))
    X = centres[y] + rng.standard_normal((y.size, 16))
    good = ridge_probe(X, y)
    assert good.balanced_accuracy > 0.95 and good.tail_recall is not None
    assert good.tail_recall > 0.9
    noise = ridge_probe(rng.standard_normal((y.size, 16)), y)
    assert noise.balanced_accuracy < 0.45  # chance is 0.2; the max over 37 lams is biased up
    assert good.grid.shape == good.balanced_accuracies.shape == (len(RELATIVE_GRID),)
    assert np.all(np.diff(good.grid) > 0)
    assert good.best_lambda in good.grid


def test_best_is_inside_the_default_grid_on_a_noisy_problem() -> None:
    X, y = problem(400, 64, 8, seed=5)
    X += 2.0 * np.random.default_rng(6).standard_normal(X.shape)  # overlap: ridge matters
    result = ridge_probe(X, y)
    assert not result.at_grid_edge
    best = int(np.flatnonzero(result.grid == result.best_lambda)[0])
    assert result.balanced_accuracies[best] == result.balanced_accuracy
    # a grid cut just below the best point has its best at the edge, and says so
    cut = ridge_probe(X, y, relative_grid=(result.grid / result.eigen_scale)[: best + 1])
    assert cut.at_grid_edge


def test_score_matches_brute_force_balanced_accuracy() -> None:
    from sklearn.metrics import balanced_accuracy_score

    X, y = problem(60, 5, 3, seed=9)
    result = ridge_probe(X, y, relative_grid=[0.5])
    Z, s = _prepare(X, y, 3)
    brute = np.array([refit_without(Z, y, s, 3, i, result.best_lambda) for i in range(60)])
    assert result.balanced_accuracy == pytest.approx(
        balanced_accuracy_score(y, brute.argmax(axis=1)), abs=1e-12)
    # the per-lam bincount recall and featlt's per_class_recall agree at the best lam
    assert result.balanced_accuracy == pytest.approx(
        float(np.nanmean(result.per_class_recall)), abs=1e-12)


def test_lambda_chunks_give_the_same_scores(monkeypatch) -> None:
    import featlt.separability.scores.ridge_probe as module

    X, y = problem(200, 10, 4, seed=11)
    whole = ridge_probe(X, y)
    monkeypatch.setattr(module, "CHUNK_ENTRIES", 200 * 4 * 3)  # 3 strengths per chunk
    assert module._grid_chunks(200, 4, 37) == 3
    chunked = ridge_probe(X, y)
    np.testing.assert_allclose(chunked.balanced_accuracies, whole.balanced_accuracies, atol=0)


def test_deterministic_and_independent_of_row_order() -> None:
    X, y = problem(120, 12, 4, seed=2)
    a, b = ridge_probe(X, y), ridge_probe(X, y)
    assert a.balanced_accuracy == b.balanced_accuracy and a.best_lambda == b.best_lambda
    np.testing.assert_array_equal(a.balanced_accuracies, b.balanced_accuracies)
    order = np.random.default_rng(1).permutation(y.size)
    c = ridge_probe(X[order], y[order])
    np.testing.assert_allclose(c.balanced_accuracies, a.balanced_accuracies, atol=1e-12)


@pytest.mark.parametrize("mutate, message", [
    (lambda X, y: (X, np.zeros_like(y)), "single class"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y),
     "NaN/Inf"),
    (lambda X, y: (X[:3], np.arange(3)), "every class has a single row"),
    (lambda X, y: (X, y[:-1]), "one label per row"),
    (lambda X, y: (X, -y - 1), "non-negative"),
])
def test_bad_input_is_refused_with_a_message(mutate, message: str) -> None:
    X, y = problem(30, 4, 3, seed=1)
    X, y = mutate(X, y)
    with pytest.raises(FeatltError, match=message):
        ridge_probe(X, y)


@pytest.mark.parametrize("grid", [[], [0.0, 1.0], [np.inf], [[1.0, 2.0]]])
def test_bad_grid_is_refused(grid) -> None:
    X, y = problem(30, 4, 3, seed=1)
    with pytest.raises(FeatltError, match="relative_grid"):
        ridge_probe(X, y, relative_grid=grid)


@pytest.mark.parametrize("n, dim", [(300, 20), (15, 40)])
def test_working_in_the_callers_features_gives_the_same_basis(n: int, dim: int) -> None:
    X, y = problem(n, dim, 3, seed=7)
    Z, s = _prepare(X, y, 3)
    copied = ridge_basis(Z, y, s, 3)
    np.testing.assert_array_equal(Z, _prepare(X, y, 3)[0])  # the default leaves Z alone
    overwritten = ridge_basis(Z, y, s, 3, overwrite_features=True)
    np.testing.assert_array_equal(overwritten.G, copied.G)  # G projected block by block in Z
    np.testing.assert_array_equal(overwritten.eigvals, copied.eigvals)
    np.testing.assert_array_equal(overwritten.GtT, copied.GtT)
