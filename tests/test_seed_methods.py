"""The seed methods DLSA, CWS and CIBL: correctness on synthetic data with known structure, and
bad input (docs/methods.md, "Seed methods")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score

from featlt.cli import main
from featlt.data.profiles import long_tail_counts
from featlt.data.synthetic import gaussian_classes, write_synthetic_store
from featlt.errors import FeatltError
from featlt.evaluation.metrics import balanced_accuracy, per_class_recall
from featlt.heads.cibl import CIBLHead, instance_weights, supervised_contrastive
from featlt.heads.cws import CWSHead
from featlt.heads.dlsa import DLSAHead
from featlt.heads.dlsa_router import leave_one_out_histograms
from featlt.heads.io import SEAL_KEY, load_head, save_head, seal
from featlt.heads.ldam import LDAMDRWHead
from featlt.heads.linear import LinearHead
from featlt.heads.ncm import NCMHead
from featlt.heads.posthoc import TauNorm
from featlt.heads.registry import make_head
from featlt.store.writer import StoreWriter

# Head classes made of separate modes: class 0 on both sides of class 1 and vice versa, so no
# single linear boundary (a convex region per class) can separate them; sub-classes can.
MODES = [[(-6, 0), (6, 0)], [(0, -6), (0, 6)], [(0, 0)], [(6, 6)], [(-6, -6)]]
MODE_COUNTS = [600, 300, 120, 60, 30]


def modes_data(counts: list[int], seed: int, dim: int = 8):
    """Rows of class c cycle through its modes (equal sizes): (X (n, dim), y (n,), mode (n,))."""
    rng = np.random.default_rng(seed)
    X, y, mode = [], [], []
    for c, n in enumerate(counts):
        centres = np.zeros((len(MODES[c]), dim))
        centres[:, :2] = MODES[c]
        m = np.arange(n) % len(MODES[c])
        X.append(centres[m] + rng.normal(0, 1, (n, dim)))
        y.append(np.full(n, c))
        mode.append(m)
    return np.concatenate(X).astype(np.float32), np.concatenate(y), np.concatenate(mode)


@pytest.fixture(scope="module")
def modes():
    return (modes_data(MODE_COUNTS, 0), modes_data([20] * 5, 1), modes_data([100] * 5, 2))


@pytest.fixture(scope="module")
def long_tail():
    """10 Gaussian classes, IF 50 (500 .. 10), balanced validation (20) and test (100)."""
    train = gaussian_classes(long_tail_counts(500, 10, 50), dim=32, separation=3.0, seed=0)
    val = gaussian_classes(np.full(10, 20), dim=32, centres=train.centres, seed=1)
    test = gaussian_classes(np.full(10, 100), dim=32, centres=train.centres, seed=2)
    return train, val, test


FAST = {"device": "cpu", "max_epochs": 15}
MODES_FIT = {**FAST, "lr": 0.03}  # the modes problem: few features, a larger step


# ---------------------------------------------------------------- correctness: CWS


def test_cws_recovers_the_modes_and_beats_a_single_linear_head(modes):
    (X, y, mode), (Xv, yv, _), (Xt, yt, _) = modes
    cws = CWSHead(k_per_class=[2, 2, 1, 1, 1], **MODES_FIT).fit(X, y, X_val=Xv, y_val=yv)
    for c in (0, 1):
        rows = y == c
        assert adjusted_rand_score(mode[rows], cws.sub_labels_[rows]) >= 0.9
    linear = LinearHead(loss="la", **MODES_FIT).fit(X, y, X_val=Xv, y_val=yv)
    cws_acc = balanced_accuracy(yt, cws.predict(Xt), 5)
    assert cws_acc > 0.8 and cws_acc > balanced_accuracy(yt, linear.predict(Xt), 5) + 0.2
    # Both mappings are reported; the plan says the split reduced the imbalance factor.
    assert set(cws.mapping_val_) == {"mean", "sum"}
    plan = cws.split_plan_
    assert plan["imbalance_before"] == 20.0 and plan["imbalance_after"] == 10.0


def test_cws_subclass_sizes_within_a_split_class_differ_by_at_most_20_percent(modes):
    (X, y, _), _, _ = modes
    # Uneven modes: the 600 rows of class 0 in 3 parts, although it has 2 modes.
    cws = CWSHead(k_per_class=[3, 2, 2, 1, 1], early_stopping=False, **FAST).fit(X, y)
    sizes = np.asarray(cws.split_plan_["sub_counts"])
    for c in (0, 1, 2):
        part = sizes[cws.sub_to_class_ == c]
        assert part.size > 1 and part.max() <= 1.2 * part.min()


def test_cws_group_mapping_mean_removes_the_subclass_count_prior(modes):
    (X, y, _), (Xv, yv, _), (Xt, _, _) = modes
    cws = CWSHead(k_per_class=[2, 2, 1, 1, 1], **FAST).fit(X, y, X_val=Xv, y_val=yv)
    mean = cws.logits(Xt)
    cws.set_params(mapping="sum")
    np.testing.assert_allclose(cws.logits(Xt) - mean,
                               np.broadcast_to(np.log([2, 2, 1, 1, 1]), mean.shape), atol=1e-9)


def test_dynamic_cws_reassigns_with_balanced_sizes(modes):
    (X, y, _), (Xv, yv, _), (Xt, yt, _) = modes
    cws = CWSHead(k_per_class=[3, 2, 1, 1, 1], hidden=16, **FAST).fit(X, y, X_val=Xv, y_val=yv)
    assert len(cws.reassigned_) == cws.n_epochs_ - 1  # one re-assignment per later epoch
    sizes = np.bincount(cws.sub_labels_, minlength=cws.sub_to_class_.size)
    for c in (0, 1):
        part = sizes[cws.sub_to_class_ == c]
        assert part.max() - part.min() <= 1
    assert np.array_equal(cws.sub_to_class_[cws.sub_labels_], y[: cws.sub_labels_.size]) or \
        cws.sub_labels_.size == y.size
    assert balanced_accuracy(yt, cws.predict(Xt), 5) > 0.8


# ---------------------------------------------------------------- correctness: DLSA


def test_dlsa_first_stage_is_head_dominated_and_later_stages_more_balanced(long_tail):
    train, val, test = long_tail
    head = DLSAHead(rho=0.3, depth=2, **FAST).fit(train.X, train.y, X_val=val.X, y_val=val.y)
    first, _, final = head.stages_
    head_share = np.isin(train.y, [0, 1, 2, 3]).mean()  # the head third's share of all rows
    assert first["train"]["make_up"]["head_third"] > max(0.5, head_share)
    # Peeling the dense, head-dominated rows leaves a more balanced label space each stage.
    entering = [stage["entering"]["imbalance_factor"] for stage in head.stages_]
    assert entering[0] == 50.0 and entering[0] > entering[1] > entering[2]
    assert final["train"]["imbalance_factor"] == entering[2]
    assert final["kind"] == "final" and final["train"]["make_up"]["tail_third"] > \
        first["train"]["make_up"]["tail_third"]
    routed = head.stage_report(test.X, test.y)
    assert sum(r["n"] for r in routed) == test.y.size
    assert all(0 <= r["accuracy"] <= 1 for r in routed if r["n"])
    # Test rows route through the training thresholds, stage by stage.
    assert np.bincount(head.route(test.X), minlength=3).tolist() == [r["n"] for r in routed]


def test_leave_one_out_histogram_never_sees_a_rows_own_label():
    # Component 0 holds one row of each of classes 0, 1, 2; component 1 two rows of class 2.
    cluster = np.array([0, 0, 0, 1, 1])
    y = np.array([0, 1, 2, 2, 2])
    hist = np.zeros((2, 3))
    np.add.at(hist, (cluster, y), 1.0)
    fallback = np.array([0.2, 0.3, 0.5])
    shares = leave_one_out_histograms(hist, cluster, y, fallback)
    # Every row of component 0 is its class's only member there: its own class gets share 0
    # (an inclusive histogram would give 1/3 and let a head copy the label).
    assert shares[np.arange(3), y[:3]].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(shares[0], [0, 0.5, 0.5])
    np.testing.assert_allclose(shares[3], [0, 0, 1])  # the other class-2 row remains
    lone = leave_one_out_histograms(hist[:1] * 0 + np.eye(3)[:1], np.array([0]), np.array([0]),
                                    fallback)
    np.testing.assert_allclose(lone[0], fallback)  # no other row in the component


def test_dlsa_stage_heads_cannot_copy_labels_from_the_histogram():
    # Labels carry no signal in the features, and the router's components are tiny (about one
    # peeled row each): a stage head trained with the row's own label in its histogram copies it
    # (0.68 on its training rows when measured with an inclusive histogram); leave-one-out keeps
    # it at chance. The stage's training rows are scored with the histograms prediction uses.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8)).astype(np.float32)
    y = rng.integers(0, 3, 600)
    stage_head = LinearHead(loss="balanced_softmax", early_stopping=False, lr=0.03)
    head = DLSAHead(stage_head, rho=0.5, depth=1, points_per_cluster=2, max_epochs=40,
                    device="cpu").fit(X, y)
    assert head.stages_[0]["train"]["n"] == 300
    assert head.stage_report(X, y)[0]["accuracy"] < 0.45


def test_dlsa_routing_prior_adds_the_log_share_of_each_class_routed_to_the_stage(long_tail):
    # A Balanced Softmax stage head estimates log p(z | c, stage); a balanced test needs
    # log p(z | c) = that + log r[s, c], r[s, c] being the share of class c's training rows the
    # stage classifies. Plain cross-entropy stage logits already estimate the training posterior.
    train, val, _ = long_tail
    head = DLSAHead(rho=0.3, depth=1, **FAST).fit(train.X, train.y, X_val=val.X, y_val=val.y)
    routing = head.router_state_["routing"]
    stage = head.route(train.X)
    counts = np.stack([np.bincount(train.y[stage == s], minlength=10) for s in range(2)])
    np.testing.assert_allclose(routing, counts / counts.sum(axis=0))
    with_prior = head._raw_logits(train.X)
    without = head.set_params(routing_prior=False)._raw_logits(train.X)
    for s in range(2):  # classes a stage never saw stay below every other class instead
        seen = routing[s] > 0
        rows = stage == s
        np.testing.assert_allclose((with_prior - without)[np.ix_(rows, seen)],
                                   np.broadcast_to(np.log(routing[s, seen]),
                                                   (int(rows.sum()), int(seen.sum()))), atol=1e-5)
    plain = DLSAHead(LinearHead(), rho=0.3, depth=1, **FAST).fit(train.X, train.y)
    np.testing.assert_allclose(plain._raw_logits(val.X),
                               plain.set_params(routing_prior=False)._raw_logits(val.X))


def test_dlsa_head_saved_without_routing_shares_is_refused_by_name(long_tail):
    train, val, _ = long_tail
    head = DLSAHead(rho=0.3, depth=1, **FAST).fit(train.X, train.y)
    del head.router_state_["routing"]
    with pytest.raises(FeatltError, match=r"predates the routing prior.*re-fit"):
        head.predict(val.X)


# ---------------------------------------------------------------- correctness: CIBL


def test_supcon_and_instance_weights_by_hand():
    import torch

    weights = instance_weights(torch.tensor([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(weights.numpy(), [2 / 3, 2 / 3, 2 / 3, 0.0], rtol=1e-6)
    feats = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1]]), dim=1)
    loss = supervised_contrastive(feats, torch.tensor([0, 0, 1]), temperature=1.0)
    sim = (feats @ feats.T).numpy()
    expected0 = -(sim[0, 1] - np.log(np.exp(sim[0, 1]) + np.exp(sim[0, 2])))
    assert loss[0].item() == pytest.approx(expected0, rel=1e-5)


def test_cibl_larger_lambda_raises_tail_third_accuracy():
    counts = long_tail_counts(300, 6, 30)
    train = gaussian_classes(counts, dim=16, separation=3.0, seed=1)
    test = gaussian_classes(np.full(6, 200), dim=16, centres=train.centres, seed=11)
    tail = []
    for lam in (0.0, 2.0):
        head = CIBLHead(lam=lam, hidden=16, tau=0.0, device="cpu", max_epochs=15,
                        early_stopping=False, random_state=1).fit(train.X, train.y)
        tail.append(per_class_recall(test.y, head.predict(test.X), 6)[4:].mean())
    assert tail[1] > tail[0] + 0.01


def test_cibl_uses_given_views_and_says_so(long_tail):
    train, val, _ = long_tail
    rng = np.random.default_rng(0)
    views = train.X[:, None, :] + rng.normal(0, 0.3, (train.y.size, 2, 32)).astype(np.float32)
    head = CIBLHead(hidden=16, max_epochs=3, device="cpu")
    head.fit(train.X, train.y, X_val=val.X, y_val=val.y, views=views)
    assert head.views_source_ == "store views (2 per row)"
    with pytest.raises(FeatltError, match="views for CIBLHead"):
        head.fit(train.X, train.y, views=views[:10])


# ---------------------------------------------------------------- determinism, save, reload


SHORT = {"device": "cpu", "max_epochs": 4}


@pytest.mark.parametrize("make", [
    lambda: DLSAHead(depth=1, **SHORT),
    lambda: CWSHead(hidden=8, **SHORT),
    lambda: CIBLHead(hidden=16, **SHORT),
    lambda: make_head("la_loss", stages=1, **SHORT),
], ids=["dlsa", "cws_dynamic", "cibl", "stages_option"])
def test_each_method_is_deterministic_on_cpu_and_reloads_identically(long_tail, make, tmp_path):
    train, val, test = long_tail
    a = make().fit(train.X, train.y, X_val=val.X, y_val=val.y)
    b = make().fit(train.X, train.y, X_val=val.X, y_val=val.y)
    np.testing.assert_array_equal(a.logits(test.X), b.logits(test.X))
    save_head(a, tmp_path / "head")
    loaded, _ = load_head(tmp_path / "head")
    np.testing.assert_array_equal(loaded.logits(test.X), a.logits(test.X))
    np.testing.assert_array_equal(loaded.predict_proba(test.X), a.predict_proba(test.X))


# ---------------------------------------------------------------- bad input


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "feats.h5"
    return write_synthetic_store(path, n_classes=5, n_max=80, imbalance_factor=1.0, dim=8,
                                 separation=3.0, n_test_per_class=20)


def test_cli_cibl_on_a_store_without_views_uses_noise_and_says_so(store, tmp_path):
    result = _run("fit-classifier", store, "--head", "cibl", "--head", "dlsa", "--profile",
                  "cao2019", "--imbalance-factor", "10", "--max-epochs", "3", "--bootstrap",
                  "20", "--device", "cpu", "-o", tmp_path / "heads")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "heads" / "cibl" / "head.json").read_text())
    assert "feature-space noise" in document["head"]["fitted"]["views_source_"]
    dlsa = json.loads((tmp_path / "heads" / "dlsa" / "head.json").read_text())
    assert sum(stage["n"] for stage in dlsa["stages_test"]) == 100
    predicted = _run("predict", tmp_path / "heads" / "cibl", store, "--device", "cpu")
    assert predicted.exit_code == 0, predicted.output


def test_cli_cibl_reads_stored_views(tmp_path):
    data = gaussian_classes(np.array([80, 40, 20]), dim=6, separation=4.0, seed=0)
    views = data.X[:, None, :] + np.float32(0.1)
    path = tmp_path / "views.h5"
    names = ["a", "b", "c"]
    with StoreWriter(path, {"backbone": {"arch": "synthetic"}}) as writer:
        writer.begin_split("train", data.y, np.arange(data.y.size), names, 6, n_views=2)
        writer.write_rows("train", 0, data.X, views=np.repeat(views, 2, axis=1))
        writer.begin_split("test", data.y, np.arange(data.y.size), names, 6)
        writer.write_rows("test", 0, data.X)
        writer.mark_complete()
    result = _run("fit-classifier", path, "--head", "cibl", "--max-epochs", "2", "--bootstrap",
                  "0", "--device", "cpu", "-o", tmp_path / "heads")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "heads" / "cibl" / "head.json").read_text())
    assert document["head"]["fitted"]["views_source_"] == "store views (2 per row)"


def test_dlsa_stage_left_without_rows_is_skipped_and_reported(long_tail):
    train, val, _ = long_tail
    head = DLSAHead(rho=0.9, depth=3, **FAST).fit(train.X, train.y, X_val=val.X, y_val=val.y)
    skipped = [stage for stage in head.stages_ if "skipped" in stage]
    assert len(skipped) == 1 and "rho=0.9" in skipped[0]["skipped"]
    assert "depth=3" in skipped[0]["skipped"] and head.stages_[-1]["kind"] == "final"
    assert len(head.sub_heads_) < 4


@pytest.mark.parametrize("params, name", [
    ({"rho": 1.0}, "rho"), ({"rho": 0.0}, "rho"), ({"depth": -1}, "depth"),
    ({"stage_head": TauNorm(LinearHead())}, "stage_head"),
    ({"stage_head": LDAMDRWHead()}, "stage_head"), ({"stage_head": CIBLHead()}, "stage_head"),
    ({"stage_head": NCMHead()}, "stage_head"), ({"stage_head": "balanced_softmax"}, "stage_head"),
])
def test_dlsa_rejects_bad_options_by_name(long_tail, params, name):
    train, _, _ = long_tail
    with pytest.raises(FeatltError, match=f"The '{name}' parameter of DLSAHead"):
        DLSAHead(**params).fit(train.X, train.y)


def test_dlsa_modules_do_not_import_the_registry():
    # The registry builds DLSA heads (make_head("dlsa"), stages=k); DLSA takes its stage head as
    # an estimator, so neither DLSA module imports the registry, at the top or in a function.
    import ast
    import inspect

    import featlt.heads.dlsa
    import featlt.heads.dlsa_router

    for module in (featlt.heads.dlsa, featlt.heads.dlsa_router):
        imported = set()
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        assert "numpy" in imported and "featlt.heads.base" in imported  # the walk sees imports
        assert not {name for name in imported if name and "registry" in name}, module.__name__


def test_dlsa_rows_of_weight_zero_change_nothing(long_tail):
    # Zero-weight rows are left out of the router too (k-means, peeling quantile, histograms),
    # so adding far-away rows of weight 0 gives exactly the head fitted without them.
    train, val, test = long_tail
    rng = np.random.default_rng(3)
    extra = rng.normal(0, 20, (60, train.X.shape[1])).astype(np.float32)
    X = np.concatenate([train.X, extra])
    y = np.concatenate([train.y, rng.integers(0, 10, 60)])
    weights = np.concatenate([np.ones(train.y.size), np.zeros(60)])
    with_zeros = DLSAHead(rho=0.3, depth=1, **SHORT).fit(X, y, sample_weight=weights,
                                                         X_val=val.X, y_val=val.y)
    without = DLSAHead(rho=0.3, depth=1, **SHORT).fit(train.X, train.y, X_val=val.X,
                                                      y_val=val.y)
    np.testing.assert_array_equal(with_zeros.logits(test.X), without.logits(test.X))
    assert with_zeros.stages_[0]["entering"]["n"] == train.y.size


@pytest.mark.parametrize("val, match", [
    ({"y_val": np.zeros(5)}, "pass both X_val and y_val"),
    ({"X_val": np.zeros((5, 32)), "y_val": np.zeros(4)}, "X_val has 5 rows and y_val 4"),
    ({"X_val": np.zeros((2, 32)), "y_val": np.array([0, 99])}, r"labels \[99\] do not occur"),
])
def test_dlsa_refuses_validation_data_that_does_not_fit(long_tail, val, match):
    train, _, _ = long_tail
    with pytest.raises(FeatltError, match=match):
        DLSAHead(depth=1, **SHORT).fit(train.X, train.y, **val)


@pytest.mark.parametrize("name", ["tau_norm", "ldam_drw", "cibl", "ncm_cosine"])
def test_staging_a_head_dlsa_cannot_stage_is_refused_by_name(name):
    with pytest.raises(FeatltError, match=f"head '{name}' cannot be staged"):
        make_head(name, stages=1)


def test_stages_option_clones_the_named_head_per_stage(long_tail):
    # make_head(name, stages=k): the registry builds the named head with the given parameters
    # and DLSA clones it per stage with its own device, seed and epoch budget; the template
    # itself stays unfitted and unchanged.
    train, val, _ = long_tail
    head = make_head("la_loss", stages=1, lr=0.01, tau=1.5, **FAST)
    template = head.stage_head
    assert isinstance(template, LinearHead) and template.get_params()["loss"] == "la"
    before = template.get_params()
    head.fit(train.X, train.y, X_val=val.X, y_val=val.y)
    assert template.get_params() == before and not hasattr(template, "state_")
    assert len(head.sub_heads_) == 2 and all(sub is not template for sub in head.sub_heads_)
    for sub in head.sub_heads_:
        params = sub.get_params()
        assert (params["loss"], params["lr"], params["tau"]) == ("la", 0.01, 1.5)
        assert (params["device"], params["max_epochs"]) == ("cpu", FAST["max_epochs"])
    assert head.sub_heads_[0].random_state != head.sub_heads_[1].random_state
    # Two heads built by the registry never share a stage head (set_params on one is local).
    a, b = make_head("dlsa"), make_head("dlsa")
    a.set_params(stage_head__lr=0.5)
    assert b.stage_head.lr != 0.5 and a.stage_head is not b.stage_head


def test_dlsa_head_saved_with_a_family_name_loads_with_identical_predictions(long_tail, tmp_path):
    # A DLSA head saved before the stage head became an estimator recorded the family's name
    # (final_head, head_params); it loads, with that family as its stage_head, and predicts the
    # same (the fitted stage heads are saved in full).
    train, _, test = long_tail
    head = make_head("la_loss", stages=1, lr=0.01, **FAST).fit(train.X, train.y)
    save_head(head, tmp_path / "dlsa")
    path = tmp_path / "dlsa" / "head.json"
    document = json.loads(path.read_text())
    assert document["head"]["estimators"]["stage_head"]["class"] == "LinearHead"
    del document["head"]["estimators"]
    document["head"]["params"].update(final_head="la_loss", head_params={"lr": 0.01})
    path.write_text(json.dumps(seal(document, SEAL_KEY)))
    loaded, _ = load_head(tmp_path / "dlsa")
    assert loaded.stage_head.get_params() == make_head("la_loss", lr=0.01).get_params()
    np.testing.assert_array_equal(loaded.logits(test.X), head.logits(test.X))


def test_class_smaller_than_its_subclasses_stays_whole_and_is_reported(modes):
    (X, y, _), _, _ = modes
    cws = CWSHead(k_per_class=[2, 2, 1, 1, 40], early_stopping=False, **FAST).fit(X, y)
    assert cws.split_plan_["k_per_class"] == [2, 2, 1, 1, 1]
    assert "40 sub-classes asked for but the class has 30 points" in \
        cws.split_plan_["kept_whole"]["4"]


def test_cws_with_a_single_sample_class(modes):
    (X, y, _), _, (Xt, _, _) = modes
    X = np.concatenate([X, np.full((1, X.shape[1]), 12.0, np.float32)])
    y = np.concatenate([y, [5]])
    cws = CWSHead(**FAST).fit(X, y)  # carved validation keeps the single row in train
    plan = cws.split_plan_
    assert plan["class_counts"][5] >= 1 and plan["k_per_class"][5] == 1
    assert cws.logits(Xt).shape == (Xt.shape[0], 6)


def test_saved_head_whose_parameters_do_not_match_is_refused(long_tail, tmp_path):
    train, val, _ = long_tail
    head = CWSHead(max_epochs=2, device="cpu").fit(train.X, train.y, X_val=val.X, y_val=val.y)
    save_head(head, tmp_path / "cws")
    path = tmp_path / "cws" / "head.json"
    document = json.loads(path.read_text())
    document["head"]["params"]["split_strategy"] = "kmeans++"  # a parameter the code lacks
    path.write_text(json.dumps(seal(document, SEAL_KEY)))  # re-sealed: only the params differ
    with pytest.raises(FeatltError, match=r"parameters do not match.*re-fit"):
        load_head(tmp_path / "cws")


def test_view_needing_rows_the_source_lacks_is_refused(store):
    from featlt.data.protocol import Protocol, resolve_view
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(store) as opened, pytest.raises(
            FeatltError, match="asks for 500 samples of class 0 but the split has 80"):
        resolve_view(opened, Protocol(profile="cao2019", imbalance_factor=10, n_max=500))
