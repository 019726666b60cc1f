"""featlt.rank's pieces on synthetic data: ordering, rank correlation, bootstrap, SFDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import eigh
from scipy.special import softmax
from scipy.stats import kendalltau, weightedtau

from featlt.data.synthetic import write_synthetic_store
from featlt.evaluation.bootstrap import class_mean, paired_bootstrap, percentile_interval
from featlt.rank.model import RankConfig
from featlt.rank.ranking import rank_files
from featlt.rank.validation import rank_agreement, tie_grouped, tie_matrix, validate_score
from featlt.separability.scores.sfda import sfda

SEPARATIONS = (1.0, 2.0, 3.0, 5.0)


@pytest.fixture(scope="module")
def ordered_stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four feature sets of one dataset whose class separation grows by construction."""
    folder = tmp_path_factory.mktemp("ordered")
    return [write_synthetic_store(folder / f"sep{s:g}.h5", n_classes=6, n_max=80,
                                  imbalance_factor=10, dim=16, separation=s,
                                  n_test_per_class=30, n_val_per_class=10)
            for s in SEPARATIONS]


def test_featlt_score_and_knn_rank_synthetic_sets_in_their_constructed_order(ordered_stores):
    shuffled = [ordered_stores[i] for i in (2, 0, 3, 1)]
    document = rank_files(shuffled, config=RankConfig(n_bootstrap=50), device="cpu")
    assert [row["label"] for row in document["rows"]] == ["sep5", "sep3", "sep2", "sep1"]
    knn = {row["label"]: row["scores"]["knn"] for row in document["rows"]}
    assert knn["sep5"] > knn["sep3"] > knn["sep2"] > knn["sep1"]
    recommendation = document["recommendation"]
    assert recommendation["label"] == "sep5" and recommendation["head"] == "la_loss"
    assert recommendation["sentence"].startswith("Use ")
    # the default, a rank average over the files, has no per-file resampling: said, not faked
    assert recommendation["probability_best"] is None
    assert "no interval for featlt, which is a rank average" in recommendation["sentence"]
    by_v1 = rank_files(shuffled, config=RankConfig(n_bootstrap=50, by="featlt_v1"),
                       device="cpu")
    assert [row["label"] for row in by_v1["rows"]] == ["sep5", "sep3", "sep2", "sep1"]
    assert 0.5 < by_v1["recommendation"]["probability_best"] <= 1.0


def test_tie_groups_follow_the_measured_order_and_the_first_members_ties():
    measured = np.array([0.70, 0.69, 0.60, 0.66, 0.20])
    ties = np.eye(5, dtype=bool)
    for i, j in ((0, 1), (1, 3), (2, 3)):  # 3 is tied with 1 but not with the group's first, 0
        ties[i, j] = ties[j, i] = True
    grouped = tie_grouped(measured, ties)
    assert grouped.tolist() == pytest.approx([0.695, 0.695, 0.63, 0.63, 0.20])


def test_tau_b_and_weighted_tau_match_scipy_on_hand_made_rankings_with_ties():
    score = np.array([0.9, 0.8, 0.8, 0.5, 0.1, 0.3])
    measured = np.array([0.7, 0.7, 0.6, 0.65, 0.2, 0.2])  # ties in both
    result = rank_agreement(score, measured)
    assert result["kendall_tau"] == pytest.approx(kendalltau(score, measured).statistic)
    assert result["weighted_tau"] == pytest.approx(weightedtau(score, measured).statistic)
    # Hand count: 15 pairs; concordant 11, discordant 1 (2-3), tied in score only 1 (1-2), in
    # measured only 2 (0-1, 4-5): tau-b = (11 - 1) / sqrt((15 - 1) (15 - 2)).
    assert result["kendall_tau"] == pytest.approx(10 / np.sqrt(14 * 13))


def _predictions(rates: list[float], n_per_class: int = 60, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    correct = np.stack([rng.random(labels.size) < r for r in rates])
    return labels, correct


def test_bootstrap_intervals_cover_their_point_estimates():
    labels, correct = _predictions([0.5, 0.6, 0.62, 0.8, 0.9])
    resampled = class_mean(paired_bootstrap(labels, correct, 4, 300, seed=1).recall)
    point = np.array([np.mean([c[labels == k].mean() for k in range(4)]) for c in correct])
    for m in range(5):
        low, high = percentile_interval(resampled[:, m])
        assert low <= point[m] <= high
    ties = tie_matrix(resampled)
    assert ties[1, 2] and not ties[0, 4]  # 0.60 vs 0.62 inside the noise; 0.5 vs 0.9 not
    score = [0.1, 0.25, 0.2, 0.3, None]  # the best backbone has no score: ranked last
    result = validate_score(score, point, resampled, ties)
    low, high = result["ci"]
    assert low <= result["kendall_tau"] <= high
    assert result["top1"] == 3
    assert result["top1_regret"] == pytest.approx(100 * (point[4] - point[3]))


def _direct_sfda(X: np.ndarray, y: np.ndarray) -> float:
    """SFDA evaluated directly from its formulas, loop by loop (float64, no shortcuts)."""
    classes = np.unique(y)
    priors = np.array([(y == c).mean() for c in classes])
    means = np.stack([X[y == c].mean(axis=0) for c in classes])

    def discriminant(Z: np.ndarray, shrinkage: float | None) -> tuple[np.ndarray, float]:
        mu = np.stack([Z[y == c].mean(axis=0) for c in classes])
        within = sum(p * np.cov(Z[y == c].T, bias=True)
                     for p, c in zip(priors, classes, strict=True))
        if shrinkage is None:
            shrinkage = max(np.exp(-5 * np.linalg.eigvalsh(within).max()), 1e-10)
        d = Z.shape[1]
        shrunk_w = (1 - shrinkage) * within + shrinkage * np.trace(within) / d * np.eye(d)
        total = np.cov(Z.T, bias=True)
        shrunk_t = (1 - shrinkage) * total + shrinkage * np.trace(total) / d * np.eye(d)
        _, vectors = eigh(shrunk_t - shrunk_w, shrunk_w)  # the Fisher directions, all of them
        coef = mu @ vectors @ vectors.T
        logits = Z @ coef.T - 0.5 * np.sum(mu * coef, axis=1) + np.log(priors)
        return softmax(logits, axis=1), shrinkage

    proba, shrinkage = discriminant(X, None)
    soft = softmax(proba, axis=1)
    mixed = X.copy()
    for k, c in enumerate(classes):
        rows = y == c
        others = np.delete(means, k, axis=0).mean(axis=0)
        q = soft[rows, k][:, None]
        mixed[rows] = q * X[rows] + (1 - q) * others
    proba, _ = discriminant(mixed, shrinkage)
    return float(proba[np.arange(y.size), y].mean())


@pytest.mark.parametrize("scale", [0.05, 1.0])  # strong and negligible adaptive shrinkage
def test_sfda_agrees_with_a_direct_evaluation_of_its_formulas(scale):
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2, 3], [40, 25, 12, 8])
    X = rng.standard_normal((y.size, 5)) * scale
    X[y == 1, 0] += 2 * scale
    X[y == 2, 1] -= 1.5 * scale
    X[y == 3, :2] += scale
    result = sfda(X.astype(np.float32), y)
    assert result.score == pytest.approx(_direct_sfda(X.astype(np.float32).astype(np.float64), y),
                                         abs=1e-5)
    assert 0.0 < result.score <= 1.0 and 1e-10 <= result.shrinkage <= 1.0
