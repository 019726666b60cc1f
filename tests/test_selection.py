"""Selection uses validation only; chosen values are recorded; test is never consulted."""

from __future__ import annotations

import numpy as np
import pytest

from featlt.data.profiles import long_tail_counts
from featlt.data.synthetic import gaussian_classes
from featlt.errors import FeatltError
from featlt.heads.selection import (
    SelectionData,
    check_selection_data,
    fit_temperature,
    grid_points,
    select_head,
    select_heads,
    val_score,
)

QUICK = {"max_epochs": 8}


@pytest.fixture(scope="module")
def data():
    counts = long_tail_counts(200, 6, 50)
    train = gaussian_classes(counts, dim=16, separation=3.0, seed=0)
    val = gaussian_classes(np.full(6, 15), 16, centres=train.centres, seed=1)
    return SelectionData(train.X, train.y, val.X, val.y, counts)


def test_grid_points_in_order():
    assert grid_points({"lr": (1, 2), "tau": (0.5,)}) == [{"lr": 1, "tau": 0.5},
                                                         {"lr": 2, "tau": 0.5}]
    assert grid_points({}) == [{}]


def test_val_score_golden():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    bacc, nll = val_score(logits, np.array([0, 1, 1]))
    assert bacc == pytest.approx((1.0 + 0.5) / 2)
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0)) + np.log1p(np.exp(1.0))) / 3
    assert nll == pytest.approx(expected)


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4000, 5))
    p = np.exp(logits / 2.0)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.1)


def test_select_head_picks_the_best_validation_candidate(data):
    result = select_head("linear", data, device="cpu", overrides=QUICK)
    assert len(result.candidates) == 4  # lr x weight_decay
    best = max(result.candidates, key=lambda c: (c["val_balanced_accuracy"], -c["val_nll"]))
    assert result.selected["lr"] == best["lr"]
    assert result.selected["weight_decay"] == best["weight_decay"]
    assert result.selected["best_epoch"] == result.head.best_epoch_
    assert result.head.temperature == result.selected["temperature"] != 1.0
    assert result.val["balanced_accuracy"] == best["val_balanced_accuracy"]
    assert result.fit_seconds > 0


def test_wrappers_reuse_the_selected_base(data):
    results = select_heads(["linear", "tau_norm", "posthoc_la"], data, device="cpu",
                           overrides=QUICK)
    bases = [head for head, _ in results["linear"].fits]
    assert len(bases) == 4  # every fitted grid point of the base is kept
    assert any(results["tau_norm"].head.base_ is base for base in bases)
    assert any(results["posthoc_la"].head.base_ is base for base in bases)
    assert len(results["tau_norm"].candidates) == 4 * 21  # base points x tau 0.0 .. 2.0
    chosen = results["tau_norm"].selected["base"]
    assert chosen["name"] == "linear" and {"lr", "weight_decay", "best_epoch"} <= set(chosen)
    best = max(results["tau_norm"].candidates,
               key=lambda c: (c["val_balanced_accuracy"], -c["val_nll"]))
    assert best["tau"] == results["tau_norm"].selected["tau"]
    assert results["tau_norm"].fit_seconds >= results["linear"].fit_seconds


def test_selection_never_reads_test(tmp_path):
    """Two stores that differ only in their test split select exactly the same values."""
    from featlt.data.protocol import Protocol
    from featlt.data.synthetic import write_synthetic_store
    from featlt.heads.workflow import fit_classifiers

    protocol = Protocol(profile="cao2019", imbalance_factor=10, n_max=60)
    chosen = []
    for seed_shift, name in ((0, "a"), (7, "b")):
        path = write_synthetic_store(tmp_path / f"{name}.h5", n_classes=4, n_max=60,
                                     imbalance_factor=1.0, dim=8, n_test_per_class=20)
        if seed_shift:  # rewrite the test split with other rows
            import h5py

            from featlt.store.digests import rewrite_digests

            with h5py.File(path, "r+") as f:
                f["test/features"][...] = np.random.default_rng(seed_shift).normal(
                    size=f["test/features"].shape)
                rewrite_digests(f["test"], "features")  # other rows on purpose, not damage
        summary = fit_classifiers(path, ["linear", "posthoc_la"], tmp_path / name, protocol,
                                  device="cpu", n_bootstrap=0, overrides=QUICK)
        chosen.append({k: v["selected"] for k, v in summary["heads"].items()})
    assert chosen[0] == chosen[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train_counts": np.array([5, 0, 5])}, r"class 1 \('b'\) has no training rows"),
        ({"y_val": np.zeros(0, int), "X_val": np.zeros((0, 2))}, "validation split: empty"),
        ({"y_val": np.array([0, 3])}, r"labels outside 0\.\.2"),
        ({"X_train": np.full((10, 2), np.nan)}, "train split: features of row 0 contain NaN"),
    ],
)
def test_check_selection_data(change, message):
    base = {"X_train": np.zeros((10, 2)), "y_train": np.repeat([0, 1, 2], [4, 3, 3]),
            "X_val": np.zeros((2, 2)), "y_val": np.array([0, 1]),
            "train_counts": np.array([4, 3, 3])}
    with pytest.raises(FeatltError, match=message):
        check_selection_data(SelectionData(**{**base, **change}), ["a", "b", "c"])
