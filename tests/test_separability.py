"""Separability scores on synthetic long-tailed Gaussians with known structure."""

import json

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from featlt.cluster.density import densest_fraction
from featlt.cluster.faiss_ops import resolve_faiss
from featlt.cluster.prototypes import l2_normalise
from featlt.data.synthetic import gaussian_classes
from featlt.errors import FeatltError
from featlt.runtime import to_jsonable
from featlt.separability.evaluate import SCORES, SeparabilityConfig, evaluate_separability
from featlt.separability.scores.clustering import purity_score
from featlt.separability.scores.gaussian import class_gaussians, gbc, gbc_from_gaussians
from featlt.separability.scores.logme import balanced_logme, log_evidence, logme
from featlt.separability.scores.neighbours import knn_loo, ncm_loo, stratified_query_rows, vote

COUNTS = np.array([200, 120, 72, 43, 26, 16, 10, 6, 4])  # thirds: 0-2 / 3-5 / 6-8
DIM = 16
CONFIG = SeparabilityConfig(knn_queries=150, pca_dim=8)


@pytest.fixture(scope="module")
def cpu():
    return resolve_faiss("cpu", threads=1)


def case(separation, centres=None, seed=0):
    train = gaussian_classes(COUNTS, DIM, separation, seed=seed, centres=centres)
    val = gaussian_classes(np.full(COUNTS.size, 8), DIM, centres=train.centres, seed=seed + 1)
    return train, val


def report_of(train, val, cpu, config=CONFIG):
    return evaluate_separability(train.X, train.y, COUNTS.size, val.X, val.y, config, cpu)


def tail_overlap_centres(seed=0):
    """Head and mid classes far apart; the three tail classes share (almost) one centre."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((COUNTS.size, DIM))
    centres *= 12.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    centres[7:] = centres[6] + 0.05 * rng.standard_normal((2, DIM))
    return centres


@pytest.fixture(scope="module")
def separated(cpu):
    return report_of(*case(12.0), cpu)


@pytest.fixture(scope="module")
def overlapping(cpu):
    return report_of(*case(0.7), cpu)


def test_well_separated_beats_overlapping_on_every_score(separated, overlapping):
    assert set(separated.scores) == set(SCORES)
    for name, info in SCORES.items():
        good, bad = separated.scores[name], overlapping.scores[name]
        assert good is not None and bad is not None, name
        assert (good > bad) if info.higher_is_better else (good < bad), (name, good, bad)
    for grouping in ("relative", "absolute"):
        for kind in ("knn_confusion", "bhattacharyya"):
            good = np.array(separated.bin_matrices[grouping][kind], dtype=float)
            bad = np.array(overlapping.bin_matrices[grouping][kind], dtype=float)
            assert np.nanmax(good) < np.nanmin(bad[np.isfinite(bad)].max()), (grouping, kind)


def test_tail_only_overlap_shows_in_the_matrix(cpu, separated):
    report = report_of(*case(0.0, centres=tail_overlap_centres()), cpu)
    for kind in ("knn_confusion", "bhattacharyya"):
        matrix = np.array(report.bin_matrices["relative"][kind], dtype=float)
        assert report.bin_matrices["relative"]["groups"][2] == "tail_third"
        tail_tail = matrix[2, 2]
        others = np.delete(matrix.ravel(), 8)
        assert tail_tail > 0.2 and tail_tail > 20 * others.max(), (kind, matrix)
        before = np.array(separated.bin_matrices["relative"][kind], dtype=float)[2, 2]
        assert tail_tail > 20 * before
    # The tail classes lose recall; head classes do not.
    recall = report.per_class["knn_recall"]
    assert recall[:3].min() == 1.0 and recall[7:].mean() < 0.6


def test_absolute_groups_null_when_empty(cpu):
    train = gaussian_classes(np.array([300, 150, 60, 30]), DIM, 6.0)
    report = evaluate_separability(train.X, train.y, config=CONFIG, context=cpu)
    assert report.data["shot_groups"]["few"] is None
    block = report.bin_matrices["absolute"]
    assert block["groups"] == ["many", "medium", "few"]
    for kind in ("knn_confusion", "bhattacharyya"):
        assert all(v is None for v in block[kind][2])  # the "few" row
        assert all(row[2] is None for row in block[kind])  # and column
        assert block[kind][0][0] is not None
    record = to_jsonable(report.record())
    assert record["densest_fraction"]["groups"]["few"] is None
    assert record["group_scores"]["knn_recall"]["few"] is None


def test_identical_results_across_runs(cpu):
    train, val = case(2.0)
    a = to_jsonable(report_of(train, val, cpu).record())
    b = to_jsonable(report_of(train, val, cpu).record())
    a.pop("timings"), b.pop("timings")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_report_records_config_knn_sample_and_split(separated):
    record = to_jsonable(separated.record())
    assert record["config"]["knn_queries"] == 150
    assert record["faiss"]["device"] == "cpu" and record["faiss"]["threads"] == 1
    knn = record["knn"]
    assert knn["n_queries"] == 150 and knn["all_tail_third_samples_included"]
    assert knn["all_few_shot_samples_included"]
    assert knn["queries_per_class"][6:] == [10, 6, 4]  # every tail sample is a query
    plan = record["split_plan"]
    assert plan["k_per_class"] == [8, 5, 3, 2, 1, 1, 1, 1, 1]  # n_ref = median 26, m_min 20
    assert plan["imbalance_before"] == 50.0
    assert record["score_info"]["gbc"]["higher_is_better"] is True
    dense = record["densest_fraction"]
    # DLSA's observation: the densest 30% are dominated by head classes.
    assert dense["groups"]["head_third"]["enrichment"] > 1.0
    assert dense["groups"]["tail_third"]["enrichment"] < 1.0


def test_knn_query_sample_stays_fixed_when_the_tail_third_is_large(cpu):
    train = gaussian_classes(np.array([400, 300, 200, 100, 60, 5]), 8, 6.0)
    config = SeparabilityConfig(knn_queries=60, pca_dim=8)
    knn = evaluate_separability(train.X, train.y, config=config, context=cpu).knn
    assert knn["n_queries"] == 60 and knn["queries_per_class"][5] == 5
    assert knn["all_few_shot_samples_included"] and not knn["all_tail_third_samples_included"]


def test_logme_matches_a_direct_evaluation_of_its_formula():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = np.repeat([0, 1, 2], [22, 12, 6])
    X[y == 1] += 1.0
    X[y == 2, :3] -= 1.5
    X64 = X.astype(np.float64)
    plain = logme(X, y)
    for c in range(3):
        t = (y == c).astype(np.float64)
        a, b = plain.alpha[c], plain.beta[c]
        # Evidence = log N(t; 0, I / beta + X X^T / alpha) per sample.
        cov = np.eye(40) / b + X64 @ X64.T / a
        direct = multivariate_normal(np.zeros(40), cov).logpdf(t) / 40
        assert plain.per_class[c] == pytest.approx(direct, abs=1e-6)
        # ... and (alpha, beta) is a maximum of it.
        s, v = np.linalg.eigh(X64.T @ X64)
        proj = v.T @ X64.T @ t
        best = log_evidence(a, b, s, proj, t @ t, 40)
        for fa, fb in ((1.2, 1), (0.8, 1), (1, 1.2), (1, 0.8)):
            assert log_evidence(a * fa, b * fb, s, proj, t @ t, 40) < best
    assert plain.score == pytest.approx(plain.per_class.mean())
    balanced = balanced_logme(X, y)
    w = 40 / (3 * np.bincount(y)[y])
    for c in range(3):
        t = (y == c).astype(np.float64)
        a, b = balanced.alpha[c], balanced.beta[c]
        cov = np.diag(1 / (b * w)) + X64 @ X64.T / a  # noise precision beta * w_i
        direct = multivariate_normal(np.zeros(40), cov).logpdf(t) / 40
        assert balanced.per_class[c] == pytest.approx(direct, abs=1e-6)


def test_gbc_matches_the_reference_formula():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((30, 3))
    y = np.repeat([0, 1, 2], 10)
    Z[y == 1] += 2.0
    gaussians = class_gaussians(Z, y, 3)
    for kind in ("spherical", "diagonal"):
        total = 0.0
        for i in range(3):
            for j in range(3):
                if i == j:
                    continue
                mi, mj = Z[y == i].mean(0), Z[y == j].mean(0)
                vi, vj = np.maximum(Z[y == i].var(0), 1e-4), np.maximum(Z[y == j].var(0), 1e-4)
                if kind == "spherical":
                    vi, vj = vi.mean(), vj.mean()
                avg = (vi + vj) / 2
                dist = np.sum((mi - mj) ** 2 / avg) / 8 + 0.5 * (
                    np.sum(np.log(avg)) - 0.5 * np.sum(np.log(vi)) - 0.5 * np.sum(np.log(vj)))
                total += np.exp(-dist)
        assert gbc_from_gaussians(gaussians, kind).score == pytest.approx(-total, rel=1e-10)
    # The array entry point reduces to at most N - 1 PCA dimensions and stays <= 0.
    result = gbc(rng.standard_normal((12, 20)), np.repeat([0, 1], 6), n_components=64)
    assert result.n_components == 11 and result.score <= 0


def test_ncm_leave_one_out_matches_brute_force():
    train = gaussian_classes(np.array([12, 7, 3, 1]), 5, 1.0, seed=4)
    result = ncm_loo(train.X, train.y, 4)
    Xn = l2_normalise(train.X - train.X.mean(0, dtype=np.float64))
    predicted = []
    for i in range(train.y.size):
        keep = np.arange(train.y.size) != i
        means = np.array([Xn[keep & (train.y == c)].sum(0) if (keep & (train.y == c)).any()
                          else np.full(5, np.nan) for c in range(4)])
        cos = (means @ Xn[i]) / np.linalg.norm(means, axis=1)
        predicted.append(int(np.nanargmax(cos)))
    predicted = np.array(predicted)
    for c in range(3):
        assert result.per_class_recall[c] == pytest.approx((predicted[train.y == c] == c).mean())
    assert np.isnan(result.per_class_recall[3]) and result.excluded_classes == [3]


def test_knn_leave_one_out_matches_brute_force(cpu):
    train = gaussian_classes(np.array([15, 9, 4]), 6, 1.5, seed=3)
    rows = np.arange(train.y.size)
    result = knn_loo(train.X, train.y, 3, rows, cpu, k=3, metric="l2")
    dist = ((train.X[:, None] - train.X[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    neighbours = train.y[np.argsort(dist, axis=1)[:, :3]]
    assert np.array_equal(result.neighbour_labels, neighbours)
    expected = [(vote(neighbours)[train.y == c] == c).mean() for c in range(3)]
    assert result.per_class_recall.tolist() == pytest.approx(expected)


def test_vote_breaks_ties_by_the_nearest_neighbour():
    assert vote(np.array([[2, 1, 1, 2], [3, 3, 1, 1], [0, 4, 5, 6]])).tolist() == [2, 3, 0]


def test_stratified_queries_keep_every_tail_sample():
    y = np.repeat(np.arange(5), [500, 200, 50, 9, 3])
    rows = stratified_query_rows(y, 5, 100, np.array([3, 4]), seed=1)
    per_class = np.bincount(y[rows], minlength=5)
    assert per_class.tolist() == [30, 29, 29, 9, 3] and rows.size == 100
    assert np.array_equal(rows, np.unique(rows))
    assert np.array_equal(rows, stratified_query_rows(y, 5, 100, np.array([3, 4]), seed=1))
    assert stratified_query_rows(y, 5, 5000, None).size == y.size  # small: every row
    with pytest.raises(FeatltError, match="knn-queries"):
        stratified_query_rows(y, 5, 0, None)


def test_purity_and_densest_fraction_on_hand_checked_arrays():
    y = np.array([0, 0, 0, 1, 1, 2])
    assert purity_score(y, np.array([5, 5, 7, 7, 7, 7])) == pytest.approx(4 / 6)
    log_p = np.array([9.0, 8.0, 7.0, 1.0, 0.0, 2.0])
    groups = {"head": np.array([0]), "tail": np.array([1, 2]), "few": None}
    out = densest_fraction(log_p, y, groups, rho=0.5)
    assert out["n_dense"] == 3 and out["groups"]["few"] is None
    assert out["groups"]["head"] == {"share_dense": 1.0, "share_all": 0.5, "enrichment": 2.0}


def test_class_of_one_sample_is_documented(cpu):
    counts = np.array([60, 30, 1])
    train = gaussian_classes(counts, 8, 6.0)
    report = evaluate_separability(train.X, train.y, config=CONFIG, context=cpu)
    assert report.data["loo_excluded_classes"] == [2]
    assert np.isnan(report.per_class["knn_recall"][2])
    assert np.isnan(report.per_class["ncm_recall"][2])
    assert any("single training sample" in note for note in report.notes)
    assert report.split_plan["k_per_class"][2] == 1
    assert np.isfinite(report.per_class["logme"][2]) and report.scores["gbc"] <= 0


def test_absent_class_is_left_out(cpu):
    train = gaussian_classes(np.array([60, 0, 30, 20]), 8, 6.0)
    report = evaluate_separability(train.X, train.y, config=CONFIG, context=cpu)
    assert report.data["absent_classes"].tolist() == [1]
    assert np.isnan(report.per_class["logme"][1]) and report.split_plan["k_per_class"][1] == 0


def test_bad_input_raises_clear_errors(cpu):
    train = gaussian_classes(np.array([20, 10]), 4, 3.0)
    identical = np.ones_like(train.X)
    with pytest.raises(FeatltError, match="all 30 rows are identical"):
        evaluate_separability(identical, train.y, context=cpu)
    nan = train.X.copy()
    nan[3, 2] = np.nan
    with pytest.raises(FeatltError, match=r"training features: 1 of 30 rows hold NaN/Inf"):
        evaluate_separability(nan, train.y, context=cpu)
    with pytest.raises(FeatltError, match="at least 2 classes"):
        evaluate_separability(train.X[:20], train.y[:20], context=cpu)
    with pytest.raises(FeatltError, match="labels of shape"):
        evaluate_separability(train.X, train.y[:5], context=cpu)
    with pytest.raises(FeatltError, match="validation features have 3 dimensions"):
        evaluate_separability(train.X, train.y, X_val=train.X[:, :3], y_val=train.y,
                              context=cpu)
    with pytest.raises(FeatltError, match="knn-k"):
        evaluate_separability(train.X, train.y, config=SeparabilityConfig(knn_k=0), context=cpu)


def test_class_of_identical_points_is_kept_whole_and_noted(cpu):
    train = gaussian_classes(np.array([120, 60, 30]), 8, 6.0)
    train.X[train.y == 0] = train.X[0]  # 120 copies of one point
    report = evaluate_separability(train.X, train.y, config=CONFIG, context=cpu)
    assert report.split_plan["k_planned"][0] == 2 and report.split_plan["k_per_class"][0] == 1
    assert "distinct points" in report.split_plan["kept_whole"]["0"]
    assert any("kept whole" in note for note in report.notes)
