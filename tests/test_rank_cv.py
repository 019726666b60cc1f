"""``rank --full --cv-folds K``: the pick by K-fold cross-validation over the training view."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import write_rank_stores
from sklearn.model_selection import StratifiedKFold

from featlt.cli import main
from featlt.data.protocol import Protocol, load_arrays
from featlt.errors import FeatltError
from featlt.evaluation.bootstrap import class_mean, paired_bootstrap, percentile_interval
from featlt.evaluation.metrics import per_class_recall
from featlt.heads.ncm import NCMHead
from featlt.rank.crossval import fold_splits
from featlt.store.feature_store import FeatureStore

FAST = ("--device", "cpu", "--bootstrap", "50")
NCM = ("--full", "--head", "ncm_cosine", "--head", "ncm_l2")

# What `featlt rank` printed before --cv-folds existed (commit 0e48d31) for the two stores below
# with NCM heads; --cv-folds 0 must keep it exactly.
BEFORE_RECOMMENDATION = {
    "label": "b3", "backbone": "b3", "head": "ncm_l2", "probability_best": 1.0,
    "basis": "validation balanced accuracy of the best validation-selected head (full mode)",
    "sentence": "Use b3 (b3) with the ncm_l2 head: balanced accuracy 0.910 [0.852, 0.949] on "
                "test, best of 2 backbones on validation; bootstrap probability that it is the "
                "best on test: 1.00.",
}
BEFORE_MEASURED = [
    {"head": "ncm_l2", "val_balanced_accuracy": 0.925, "balanced_accuracy": 0.9099999999999999,
     "balanced_accuracy_ci": [0.8519374054604518, 0.9491580625957476], "tail_third": 0.95},
    {"head": "ncm_cosine", "val_balanced_accuracy": 0.575,
     "balanced_accuracy": 0.5599999999999999,
     "balanced_accuracy_ci": [0.47107998885172797, 0.6743527461816935], "tail_third": 0.55},
]


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, ["rank", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_rank_stores(tmp_path_factory.mktemp("cv"), "b", (1.5, 3.0))


def _document(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cv_folds_0_keeps_the_validation_rule_output_exactly(stores, tmp_path):
    result = _run(*stores, *FAST, *NCM, "--cv-folds", "0", "--json", "--heads-dir",
                  tmp_path / "heads")
    document = _document(result)
    assert document["recommendation"] == BEFORE_RECOMMENDATION
    measured = [{k: v for k, v in row["measured"].items()
                 if k not in ("head_dir", "summary", "reused")} for row in document["rows"]]
    assert measured == BEFORE_MEASURED
    assert all("cv" not in row for row in document["rows"])
    assert not list((tmp_path / "heads").glob("*/crossval-*"))
    text = _run(*stores, *FAST, *NCM, "--cv-folds", "0", "--heads-dir", tmp_path / "heads")
    assert "cv bacc" not in text.stdout
    assert text.stdout.strip().splitlines()[-1] == BEFORE_RECOMMENDATION["sentence"]


def _hand_cross_validation(store: Path, n_folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, out-of-fold ncm_l2 predictions) computed directly with sklearn and NCMHead."""
    with FeatureStore(store) as handle:
        arrays = load_arrays(handle, Protocol(seed=seed))
    X, y = arrays.X_train, arrays.y_train
    counts = np.bincount(y)
    predictions = np.full(y.size, -1)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, held in folds.split(np.zeros(y.size), y):
        head = NCMHead(metric="l2", class_counts=counts).fit(X[train], y[train])
        predictions[held] = head.predict(X[held])
    return y, predictions


@pytest.fixture(scope="module")
def cv_run(stores: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    heads = tmp_path_factory.mktemp("cvrun") / "heads"
    result = _run(*stores, *FAST, *NCM, "--cv-folds", "3", "--seed", "7", "--json",
                  "--heads-dir", heads)
    return heads, _document(result)


def test_cv_estimate_equals_a_hand_computation_with_ncm(cv_run, stores):
    _, document = cv_run
    rows = {row["label"]: row for row in document["rows"]}
    for store in stores:
        y, predictions = _hand_cross_validation(store, 3, 7)
        cv = rows[store.stem]["cv"]
        assert cv["n_folds"] == 3 and cv["seed"] == 7
        stored = json.loads(Path(cv["file"]).read_text())
        assert stored["predictions"]["ncm_l2"] == predictions.tolist()
        n_classes = int(y.max()) + 1
        expected = float(class_mean(per_class_recall(y, predictions, n_classes)))
        assert cv["heads"]["ncm_l2"]["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
        resampled = class_mean(paired_bootstrap(y, predictions == y, n_classes, 50, 7).recall)
        assert cv["heads"]["ncm_l2"]["balanced_accuracy_ci"] == pytest.approx(
            percentile_interval(resampled[:, 0]))
        best = max(cv["heads"], key=lambda h: cv["heads"][h]["balanced_accuracy"])
        assert cv["best_head"] == best
        assert cv["best_head_test"]["head"] == best


def test_pick_is_the_best_cv_head_and_the_sentence_gives_estimate_interval_probability(cv_run):
    _, document = cv_run
    recommendation = document["recommendation"]
    estimates = [(row["cv"]["heads"][h]["balanced_accuracy"], row["label"], h)
                 for row in document["rows"] for h in row["cv"]["heads"]]
    value, label, head = max(estimates)
    assert (recommendation["label"], recommendation["head"]) == (label, head)
    assert recommendation["cv_balanced_accuracy"] == value
    low, high = recommendation["cv_balanced_accuracy_ci"]
    sentence = recommendation["sentence"]
    assert f"3-fold cross-validated balanced accuracy {value:.3f} [{low:.3f}, {high:.3f}]" \
        in sentence
    probability = recommendation["probability_best"]
    assert 0.0 <= probability <= 1.0
    assert re.search(rf"probability that it is the best on test: {probability:.2f}\b", sentence)
    picked = next(r for r in document["rows"] if r["label"] == label)["cv"]["best_head_test"]
    assert f"test balanced accuracy {picked['balanced_accuracy']:.3f}" in sentence
    assert recommendation["validation_pick"]["label"] in {r["label"] for r in document["rows"]}


def test_table_has_a_cv_column_and_a_record_is_reused_only_for_the_same_k(cv_run, stores):
    heads, _ = cv_run
    again = _run(*stores, *FAST, *NCM, "--cv-folds", "3", "--seed", "7", "--heads-dir", heads)
    assert again.exit_code == 0, again.output
    header = next(line for line in again.stdout.splitlines() if "backbone" in line)
    assert "cv head" in header and "cv bacc" in header
    reused = _document(_run(*stores, *FAST, *NCM, "--cv-folds", "3", "--seed", "7", "--json",
                            "--heads-dir", heads))
    assert all(row["cv"]["reused"] for row in reused["rows"])
    other = _document(_run(*stores, *FAST, *NCM, "--cv-folds", "2", "--seed", "7", "--json",
                           "--heads-dir", heads))
    assert not any(row["cv"]["reused"] for row in other["rows"])
    assert all(row["cv"]["n_folds"] == 2 for row in other["rows"])
    record = Path(reused["rows"][0]["cv"]["file"])
    edited = json.loads(record.read_text())
    edited["predictions"]["ncm_l2"][0] = 1 - edited["predictions"]["ncm_l2"][0]
    record.write_text(json.dumps(edited))
    result = _run(*stores, *FAST, *NCM, "--cv-folds", "3", "--seed", "7", "--json",
                  "--heads-dir", heads)
    assert "cross-validating again instead of reusing" in result.stderr
    refitted = {row["label"]: row["cv"] for row in json.loads(result.stdout)["rows"]}
    assert not refitted[reused["rows"][0]["label"]]["reused"]


def test_fewer_training_rows_in_a_class_than_folds_is_refused_before_fitting(stores, tmp_path):
    result = _run(*stores, *FAST, *NCM, "--cv-folds", "7", "--heads-dir", tmp_path / "heads")
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert "class 4 has 6 training rows but 7 folds" in message
    assert "fewer folds" in message and "--cv-folds 7" in message
    assert not list((tmp_path / "heads").glob("*/summary.json"))  # nothing was fitted
    one = _run(*stores, *FAST, *NCM, "--cv-folds", "1", "--heads-dir", tmp_path / "heads")
    assert one.exit_code != 0 and "--cv-folds 1" in one.output and "K >= 2" in one.output


def test_fold_splits_are_stratified_and_deterministic_given_the_seed():
    y = np.repeat(np.arange(4), [23, 11, 7, 5])
    splits = fold_splits(y, 5, seed=3)
    assert [(a.tolist(), b.tolist()) for a, b in splits] == \
        [(a.tolist(), b.tolist()) for a, b in fold_splits(y, 5, seed=3)]
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in
               zip(splits, fold_splits(y, 5, seed=4), strict=True))
    held = np.concatenate([h for _, h in splits])
    assert np.array_equal(np.sort(held), np.arange(y.size))  # a partition of the rows
    counts = np.bincount(y)
    for train, part in splits:
        assert np.all(np.bincount(y[train], minlength=4) > 0)  # every class in every fold
        in_part = np.bincount(y[part], minlength=4)
        assert np.all((in_part == counts // 5) | (in_part == -(-counts // 5)))  # stratified
    with pytest.raises(FeatltError, match=r"class 3 has 5 training rows but 6 folds.*fewer "
                                          r"folds.*class 3 is 'd'"):
        fold_splits(y, 6, seed=0, class_names=["a", "b", "c", "d"])


def test_cli_folds_are_the_seeded_stratified_folds(cv_run, stores):
    _, document = cv_run
    with FeatureStore(stores[0]) as handle:
        y = load_arrays(handle, Protocol(seed=7)).y_train
    expected = np.empty(y.size, dtype=np.int64)
    for k, (_, held) in enumerate(fold_splits(y, 3, seed=7)):
        expected[held] = k
    row = next(r for r in document["rows"] if r["label"] == stores[0].stem)
    assert json.loads(Path(row["cv"]["file"]).read_text())["folds"] == expected.tolist()
