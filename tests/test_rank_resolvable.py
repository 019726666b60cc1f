"""Resolvable pairs and resolvable-pair accuracy (issue 17, item 2): the library on hand-built
resamples, the seed pooling against a hand computation, ``rank --validate --json`` and the
benchmark's smoke mode."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featlt.cli import main
from featlt.data.synthetic import write_synthetic_store
from featlt.evaluation.bootstrap import class_mean
from featlt.rank.model import VERSION
from featlt.rank.resolvable import (
    pair_accuracy,
    pooled_resamples,
    resolvable_labels,
    resolvable_matrix,
    wilson_interval,
)

ROOT = Path(__file__).resolve().parents[1]


def _resamples() -> np.ndarray:
    """(200, 4) resamples: A > B by 0.10 +- 0.01, B ~ C (difference centred on 0), D far below.

    A vs B, A vs C, A vs D, B vs D, C vs D resolvable; B vs C not.
    """
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.01, size=(200, 1))
    a = 0.80 + base[:, 0] + rng.normal(0, 0.005, 200)
    b = 0.70 + base[:, 0] + rng.normal(0, 0.005, 200)
    c = 0.70 + base[:, 0] + rng.normal(0, 0.005, 200)
    d = 0.40 + base[:, 0] + rng.normal(0, 0.005, 200)
    return np.stack([a, b, c, d], axis=1)


def test_resolvable_pairs_are_those_whose_difference_interval_excludes_zero():
    better = resolvable_matrix(_resamples())
    expected = np.zeros((4, 4), dtype=bool)
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]:
        expected[i, j] = True
    np.testing.assert_array_equal(better, expected)
    assert resolvable_labels(better, list("ABCD")) == [
        ["A", "B"], ["A", "C"], ["A", "D"], ["B", "D"], ["C", "D"]]


def test_a_difference_whose_interval_just_holds_zero_is_not_resolvable():
    # 4 of 100 resamples put B above A: the 2.5th percentile of A - B is below 0
    diff = np.full(100, 0.05)
    diff[:4] = -0.01
    resampled = np.stack([0.5 + diff, np.full(100, 0.5)], axis=1)
    assert not resolvable_matrix(resampled).any()
    diff[:4] = 0.01  # now every resample favours A
    resampled = np.stack([0.5 + diff, np.full(100, 0.5)], axis=1)
    np.testing.assert_array_equal(resolvable_matrix(resampled), [[False, True], [False, False]])


def test_accuracy_counts_right_wrong_and_tied_orderings():
    better = resolvable_matrix(_resamples())  # pairs AB, AC, AD, BD, CD
    # A first: AB, AC, AD right; B = D: tied; C below D: wrong. B vs C is not counted.
    result = pair_accuracy([4.0, 1.0, 0.0, 1.0], better)
    assert result["n_resolvable"] == 5
    assert result["resolvable_pairs"] == {"right": 3, "wrong": 1, "tied": 1}
    assert result["resolvable_pair_accuracy"] == pytest.approx(3.5 / 5)
    assert result["resolvable_pair_accuracy_ci"] == pytest.approx(wilson_interval(3.5, 5))
    perfect = pair_accuracy([4.0, 2.0, 3.0, 1.0], better)  # B below C: not resolvable
    assert perfect["resolvable_pair_accuracy"] == 1.0
    assert perfect["resolvable_pairs"] == {"right": 5, "wrong": 0, "tied": 0}
    reversed_ = pair_accuracy([1.0, 2.0, 2.0, 3.0], better)
    assert reversed_["resolvable_pair_accuracy"] == 0.0
    constant = pair_accuracy([1.0] * 4, better)
    assert constant["resolvable_pair_accuracy"] == 0.5 and constant["resolvable_pairs"]["tied"] == 5


def test_pairs_with_a_missing_score_are_left_out_of_its_count():
    better = resolvable_matrix(_resamples())
    result = pair_accuracy([4.0, None, 0.0, float("nan")], better)  # only A vs C is left
    assert result["n_resolvable"] == 1
    assert result["resolvable_pairs"] == {"right": 1, "wrong": 0, "tied": 0}
    none = pair_accuracy([None, None, 1.0, None], better)
    assert none["n_resolvable"] == 0 and none["resolvable_pair_accuracy"] is None
    assert none["resolvable_pair_accuracy_ci"] is None


def test_wilson_interval_matches_its_formula_and_stays_inside_zero_one():
    low, high = wilson_interval(8, 10)
    # Wilson 95% for 8/10: (0.490, 0.943)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 4)[0] == 0.0 and wilson_interval(4, 4)[1] == 1.0
    assert wilson_interval(0, 0) is None
    assert wilson_interval(20, 20)[0] > wilson_interval(5, 5)[0]  # more pairs, narrower


def test_seed_pooling_equals_a_hand_computation():
    rng = np.random.default_rng(3)
    n_classes, n = 3, 60
    labels = np.repeat(np.arange(n_classes), n // n_classes)
    correct = rng.random((2, 3, n)) < np.array([0.9, 0.6, 0.3])[None, :, None]  # (S=2, M=3, n)
    pooled = pooled_resamples(labels, correct, n_classes, n_bootstrap=40, seed=5)
    per_seed = np.array([[np.mean([c[labels == k].mean() for k in range(n_classes)])
                          for c in seed_rows] for seed_rows in correct])
    np.testing.assert_allclose(pooled["per_seed"], per_seed)
    np.testing.assert_allclose(pooled["measured"], per_seed.mean(axis=0))
    # The resamples: paired_bootstrap's draws, the same rows for every seed and backbone.
    draws = np.random.default_rng(np.random.SeedSequence(5)).integers(0, n, size=(40, n))
    expected = np.empty((40, 3))
    for b, rows in enumerate(draws):
        y = labels[rows]
        recall = np.array([[[c[rows][y == k].mean() for k in range(n_classes)]
                            for c in seed_rows] for seed_rows in correct])  # (S, M, C)
        expected[b] = class_mean(recall).mean(axis=0)
    np.testing.assert_allclose(pooled["resampled"], expected)
    np.testing.assert_allclose(pooled["interval"],
                               np.percentile(expected, [2.5, 97.5], axis=0).T)
    # the seed-pooled difference of two backbones is the mean over seeds of their differences
    diff = pooled["resampled"][:, 0] - pooled["resampled"][:, 1]
    assert resolvable_matrix(pooled["resampled"])[0, 1] == bool(np.percentile(diff, 2.5) > 0)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("resolvable")
    return [write_synthetic_store(folder / f"r{s:g}.h5", n_classes=4, n_max=50,
                                  imbalance_factor=5, dim=10, separation=s,
                                  n_test_per_class=40, n_val_per_class=8)
            for s in (0.5, 1.5, 4.0)]


def test_rank_validate_json_holds_the_resolvable_fields(stores, tmp_path):
    result = CliRunner().invoke(main, ["rank", *map(str, stores), "--device", "cpu",
                                       "--bootstrap", "100", "--full", "--validate",
                                       "--head", "ncm_cosine", "--heads-dir",
                                       str(tmp_path / "heads"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["version"] == VERSION >= 4
    validation = document["validation"]
    # separation 0.5 / 1.5 / 4 on 160 test images: every pair is resolvable
    assert validation["n_resolvable"] == len(validation["resolvable_pairs"]) == 3
    assert ["r4", "r0.5"] in validation["resolvable_pairs"]
    knn = validation["scores"]["knn"]
    assert knn["n_resolvable"] == 3 and knn["resolvable_pair_accuracy"] == 1.0
    low, high = knn["resolvable_pair_accuracy_ci"]
    assert 0.0 < low < 1.0 == high
    assert knn["resolvable_pairs"] == {"right": 3, "wrong": 0, "tied": 0}
    assert {"kendall_tau", "weighted_tau", "top1_regret"} <= set(knn)


def _bench_rank():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_rank_under_test",
                                                      ROOT / "benchmarks" / "bench_rank.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_bench_parses_view_seeds():
    bench = _bench_rank()
    assert bench.parse_seeds("0-2") == [0, 1, 2] and bench.parse_seeds("0,2,2") == [0, 2]
    with pytest.raises(Exception, match="view seeds"):
        bench.parse_seeds("a-b")


def test_bench_smoke_mode_pools_view_seeds_end_to_end(tmp_path):
    bench = _bench_rank()
    bench.main(["--smoke", "--work", str(tmp_path), "--bootstrap", "100",
                "--view-seeds", "0-1"])
    results = json.loads((tmp_path / "ranking_validation.json").read_text())
    pooled = results["smoke"]["pooled"]
    assert pooled["view_seeds"] == [0, 1]
    backbones = {b["label"]: b for b in pooled["backbones"]}
    for backbone in backbones.values():
        seeds = [s["balanced_accuracy"] for s in backbone["per_seed"]]
        assert backbone["balanced_accuracy"] == pytest.approx(np.mean(seeds))
        low, high = backbone["balanced_accuracy_ci"]
        assert low <= backbone["balanced_accuracy"] <= high
    # separations 1, 2, 3, 5 on 200 test images: the measured order is the constructed one
    assert (backbones["sep5"]["balanced_accuracy"] > backbones["sep3"]["balanced_accuracy"]
            > backbones["sep1"]["balanced_accuracy"])
    assert pooled["n_resolvable"] >= 3 and ["sep5", "sep1"] in pooled["resolvable_pairs"]
    ncm = pooled["scores"]["ncm"]
    assert ncm["n_resolvable"] == pooled["n_resolvable"]
    assert ncm["resolvable_pair_accuracy"] is not None and ncm["kendall_tau"] is not None
    assert "resolvable-pair acc." in (tmp_path / "ranking" / "rank_correlation.md").read_text()


def test_the_validation_table_shows_resolvable_pair_accuracy_and_its_count() -> None:
    from featlt.rank.table import validation_text

    row = {"kendall_tau": 0.5, "ci": [0.1, 0.9], "weighted_tau": 0.4, "top1_regret": 0.0,
           "kendall_tau_pretrained": None, "kendall_tau_tail_third": 0.3,
           "resolvable_pair_accuracy": 0.75, "n_resolvable": 4}
    text = validation_text({"backbones": ["a", "b", "c"], "pretrained": ["a"], "n_resolvable": 4,
                            "scores": {"logme": row,
                                       "ncm": {**row, "resolvable_pair_accuracy": None}}})
    lines = text.splitlines()
    assert "resolvable pairs (interval excludes 0): 4" in lines[0]
    assert lines[2].rstrip().endswith("0.75 (4)") and lines[3].rstrip().endswith("-")
    assert len({len(line) for line in lines[1:]}) == 1  # fixed-width columns


def _rule_results(accuracies: dict[str, tuple[float, float]]) -> dict:
    """Two design datasets whose pooled scores hold the given resolvable-pair accuracies."""
    return {dataset: {"pooled": {"scores": {
        name: {"resolvable_pair_accuracy": values[i], "resolvable_pair_accuracy_pretrained": 0.5,
               "top1_regret": 0.0} for name, values in accuracies.items()}}}
        for i, dataset in enumerate(("cifar10lt_if100", "cifar10lt_if10"))}


def test_the_default_score_rule_takes_the_best_mean_and_breaks_ties_by_cost() -> None:
    bench = _bench_rank()
    assert bench.default_score_rule({})["chosen"] is None
    clear = _rule_results({"featlt_v1": (0.70, 0.70), "logme_ncm": (0.80, 0.76),
                           "ridge": (0.90, 0.92), "ridge_tail": (0.5, 0.5), "cv_la": (0.6, 0.6)})
    rule = bench.default_score_rule(clear)
    assert rule["chosen"] == "ridge" and rule["best_mean"] == pytest.approx(0.91)
    # cv_la best by 0.01 (inside the 0.02 margin): the cheaper ridge wins
    close = _rule_results({"featlt_v1": (0.70, 0.70), "logme_ncm": (0.70, 0.70),
                           "ridge": (0.90, 0.90), "ridge_tail": (0.5, 0.5), "cv_la": (0.91, 0.91)})
    assert bench.default_score_rule(close)["chosen"] == "ridge"
    assert set(bench.default_score_rule(close)["tied"]) == {"ridge", "cv_la"}
    # a candidate missing on one dataset is not eligible
    gap = _rule_results({"featlt_v1": (0.6, 0.6), "logme_ncm": (0.6, 0.6), "ridge": (0.9, None),
                         "ridge_tail": (0.5, 0.5), "cv_la": (0.7, 0.7)})
    assert bench.default_score_rule(gap)["chosen"] == "cv_la"


def test_merging_a_side_run_applies_the_rule_and_the_goal_to_every_dataset() -> None:
    bench = _bench_rank()
    design = _rule_results({"featlt_v1": (0.7, 0.7), "logme_ncm": (0.9, 0.9),
                            "ridge": (0.8, 0.8), "ridge_tail": (0.5, 0.5), "cv_la": (0.6, 0.6)})
    for entry in design.values():
        entry["pooled"].update(n_resolvable=20, n_resolvable_pretrained=10)
    held_out = {"fmnistlt_if100": {"pooled": {
        "n_resolvable": 16, "n_resolvable_pretrained": 4, "scores": {
            "logme_ncm": {"resolvable_pair_accuracy": 0.9, "top1_regret": 0.2,
                          "resolvable_pair_accuracy_pretrained": 1.0},
            "logme": {"resolvable_pair_accuracy": 0.95, "top1_regret": 0.0,
                      "resolvable_pair_accuracy_pretrained": 1.0}}}},
        "runs": {"fmnistlt_if100": {"command": "side run"}}}
    merged = bench.merge_results(design, held_out)
    assert merged["default_score_rule"]["chosen"] == "logme_ncm"
    assert merged["runs"]["fmnistlt_if100"] == {"command": "side run"}
    goal = merged["fmnistlt_if100"]["pooled"]["goal_default"]
    assert goal["score"] == "logme_ncm" and goal["accuracy_at_least_every_comparator"] is False
    assert goal["top1_regret_at_most_0.5_points"] is True
    # fewer than 15 resolvable pretrained pairs: that part is not counted
    assert goal["accuracy_at_least_every_comparator_pretrained"] is None
