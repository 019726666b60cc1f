"""Heads: the protocol, the post-hoc identities, rebalancing gains, save/reload, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from featlt.data.profiles import long_tail_counts
from featlt.data.synthetic import gaussian_classes
from featlt.errors import FeatltError
from featlt.heads import (
    LWS,
    HeadInputError,
    LDAMDRWHead,
    LinearHead,
    NCMHead,
    PostHocLA,
    TauNorm,
    list_heads,
    load_head,
    make_head,
    save_head,
)
from featlt.heads.base import softmax

FAST = {"lr": 0.03, "device": "cpu"}
MARGIN = 0.04  # balanced-accuracy points each rebalancing method must gain over plain CE


@pytest.fixture(scope="module")
def lt():
    """10 overlapping Gaussian classes, train IF100 (300 .. 3 rows), balanced val and test."""
    counts = long_tail_counts(300, 10, 100)
    train = gaussian_classes(counts, dim=32, separation=2.5, seed=0)
    val = gaussian_classes(np.full(10, 20), 32, centres=train.centres, seed=2)
    test = gaussian_classes(np.full(10, 100), 32, centres=train.centres, seed=1)
    return train, val, test


@pytest.fixture(scope="module")
def ce_head(lt):
    train, val, _ = lt
    return LinearHead(**FAST).fit(train.X, train.y, X_val=val.X, y_val=val.y)


def bacc(head, data) -> float:
    return balanced_accuracy_score(data.y, head.predict(data.X))


def test_rebalancing_beats_plain_cross_entropy(lt, ce_head):
    train, val, test = lt
    base = bacc(ce_head, test)
    heads = {
        "la_loss": LinearHead(loss="la", **FAST),
        "balanced_softmax": LinearHead(loss="balanced_softmax", **FAST),
        "crt": LinearHead(sampling="class_balanced", **FAST),
        "lws": LWS(ce_head, lr=0.1, device="cpu"),
    }
    for name, head in heads.items():
        head.fit(train.X, train.y, X_val=val.X, y_val=val.y)
        assert bacc(head, test) > base + MARGIN, name


def test_tau_norm_with_tau_zero_is_the_base_without_bias(lt, ce_head):
    _, _, test = lt
    wrapped = TauNorm(ce_head, tau=0.0).fit(lt[0].X, lt[0].y)
    expected = ce_head.logits(test.X) - ce_head.state_["bias"]
    np.testing.assert_allclose(wrapped.logits(test.X), expected, rtol=0, atol=1e-12)
    assert np.abs(ce_head.state_["bias"]).max() > 1e-3  # the bias really was dropped


def test_tau_norm_with_tau_one_uses_unit_class_vectors(lt, ce_head):
    train, _, test = lt
    wrapped = TauNorm(ce_head, tau=1.0).fit(train.X, train.y)
    W = ce_head.state_["weight"]
    expected = ce_head.embed(test.X.astype(np.float64)) @ (W / np.linalg.norm(W, axis=1)[:, None]).T
    np.testing.assert_allclose(wrapped.logits(test.X), expected, atol=1e-12)


def test_posthoc_la_with_tau_zero_is_the_base(lt, ce_head):
    train, _, test = lt
    base_logits = ce_head.logits(test.X)
    zero = PostHocLA(ce_head, tau=0.0).fit(train.X, train.y)
    np.testing.assert_array_equal(zero.logits(test.X), base_logits)
    one = PostHocLA(ce_head, tau=1.0).fit(train.X, train.y)
    prior = np.bincount(train.y) / train.y.size
    np.testing.assert_allclose(one.logits(test.X), base_logits - np.log(prior),
                               atol=1e-12)


@pytest.mark.parametrize("name", list_heads())
def test_saved_head_reloads_and_predicts_identically(lt, tmp_path, name):
    train, val, test = lt
    params = {"device": "cpu"} if name in ("lws",) else {}
    if name not in ("ncm_l2", "ncm_cosine", "tau_norm", "lws", "posthoc_la"):
        params = {"max_epochs": 3, "device": "cpu"}
    head = make_head(name, **params).fit(train.X, train.y, X_val=val.X, y_val=val.y)
    head.set_params(temperature=0.7)
    save_head(head, tmp_path / name, {"note": "test"})
    loaded, document = load_head(tmp_path / name)
    assert document["note"] == "test" and document["head"]["class"] == type(head).__name__
    assert type(loaded) is type(head)
    np.testing.assert_array_equal(loaded.logits(test.X), head.logits(test.X))
    np.testing.assert_array_equal(loaded.predict_proba(test.X), head.predict_proba(test.X))
    np.testing.assert_array_equal(loaded.predict(test.X), head.predict(test.X))


def test_arbitrary_labels_map_through_classes():
    data = gaussian_classes(np.array([40, 30, 20]), dim=4, separation=6.0, seed=3)
    names = np.array(["emu", "cat", "dog"])[data.y]
    head = LinearHead(**FAST, max_epochs=20).fit(data.X, names)
    assert head.classes_.tolist() == ["cat", "dog", "emu"]
    assert set(head.predict(data.X)) <= {"cat", "dog", "emu"}
    assert (head.predict(data.X) == names).mean() > 0.9
    # class_counts follow classes_ (sorted labels): cat, dog, emu
    np.testing.assert_array_equal(head.class_counts_, [30, 20, 40])


def test_two_classes_give_raw_logits_for_both():
    data = gaussian_classes(np.array([30, 10]), dim=3, seed=1)
    head = LinearHead(**FAST, max_epochs=5, early_stopping=False).fit(data.X, data.y)
    logits = head.logits(data.X)
    assert logits.shape == (40, 2) and logits.dtype == np.float64
    np.testing.assert_allclose(head.predict_proba(data.X), softmax(logits))
    head.set_params(temperature=2.0)
    np.testing.assert_allclose(head.predict_proba(data.X), softmax(logits / 2.0))


def test_predictions_do_not_depend_on_batch_shape(lt):
    train, val, test = lt
    head = LinearHead(hidden=16, **FAST, max_epochs=5).fit(train.X, train.y, X_val=val.X,
                                                           y_val=val.y)
    whole = head.logits(test.X)
    rows = np.concatenate([head.logits(test.X[i : i + 7]) for i in range(0, 1000, 7)])
    np.testing.assert_allclose(rows, whole, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rows.argmax(1), whole.argmax(1))
    assert head.state_["proj_weight"].shape == (16, 32)


@pytest.mark.parametrize("kind", ["standardize", "l2", "pca_whiten"])
def test_preprocessing_is_fitted_on_train(lt, kind):
    from featlt.heads.preprocess import apply_preprocessor

    train, _, _ = lt
    head = LinearHead(preprocess=kind, max_epochs=1, early_stopping=False, device="cpu")
    head.fit(train.X, train.y)
    Z = apply_preprocessor(kind, head.preprocess_state_, train.X.astype(np.float64))
    if kind == "standardize":
        np.testing.assert_allclose(Z.mean(0), 0, atol=1e-9)
        np.testing.assert_allclose(Z.std(0), 1, atol=1e-9)
    elif kind == "l2":
        np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-12)
    else:  # whitened: covariance is diag(lambda / (lambda + eps)), close to identity
        cov = np.cov(Z.T, bias=True)
        np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-9)
        assert np.diag(cov).min() > 0.97 and np.diag(cov).max() < 1.0


def test_ldam_margins_and_drw_weights_golden():
    from featlt.heads.losses import drw_class_weights, ldam_margins

    np.testing.assert_allclose(ldam_margins(np.array([100, 10, 1]), 0.5),
                               [0.158114, 0.281171, 0.5], atol=1e-6)
    np.testing.assert_allclose(drw_class_weights(np.array([100, 10, 1]), 0.9999),
                               [0.0271587, 0.2703689, 2.7024724], atol=1e-6)


def test_ldam_keeps_a_reweighted_epoch(lt):
    train, val, _ = lt
    head = LDAMDRWHead(max_epochs=10, **FAST).fit(train.X, train.y, X_val=val.X, y_val=val.y)
    assert head.best_epoch_ > 8  # DRW starts at epoch 9 of 10 (drw_start 0.8)
    scores = [h["val_score"] for h in head.history_[8:]]
    assert head.history_[head.best_epoch_ - 1]["val_score"] == max(scores)


def test_class_counts_parameter_sets_the_prior(lt):
    train, _, test = lt
    counts = np.arange(10, 0, -1) * 10.0
    head = NCMHead(class_counts=counts).fit(train.X, train.y)
    np.testing.assert_allclose(np.exp(head.log_prior_), counts / counts.sum())
    shifted = PostHocLA(head, tau=1.0).fit(train.X, train.y).logits(test.X)
    np.testing.assert_allclose(shifted, head.logits(test.X) - head.log_prior_)


def test_ncm_ignores_zero_weight_rows(lt):
    train, _, test = lt
    keep = np.arange(train.y.size) % 3 != 0
    weighted = NCMHead().fit(train.X, train.y, sample_weight=keep.astype(float))
    subset = NCMHead().fit(train.X[keep], train.y[keep])
    np.testing.assert_allclose(weighted.logits(test.X),
                               subset.logits(test.X), atol=1e-12)


def test_unknown_head_name_lists_the_names():
    with pytest.raises(FeatltError, match="head 'nope': unknown; choose one of linear, crt"):
        make_head("nope")


def test_nan_features_are_refused(lt):
    train, _, test = lt
    X = train.X.copy()
    X[5, 3] = np.nan
    with pytest.raises(HeadInputError, match="NaN"):
        LinearHead().fit(X, train.y)
    head = NCMHead().fit(train.X, train.y)
    Xt = test.X.copy()
    Xt[0, 0] = np.inf
    with pytest.raises(HeadInputError, match="infinity"):
        head.predict(Xt)


def test_class_absent_from_train_is_refused_by_class_counts(lt):
    train, _, _ = lt
    with pytest.raises(HeadInputError, match="absent from the training rows"):
        LinearHead(class_counts=np.ones(11)).fit(train.X, train.y)


def test_single_class_and_empty_input_are_refused():
    with pytest.raises(HeadInputError, match="only one class"):
        LinearHead().fit(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(HeadInputError, match="0 sample"):
        NCMHead().fit(np.zeros((0, 2)), np.zeros(0))


def test_a_class_with_one_sample_is_learned_and_kept_in_train():
    data = gaussian_classes(np.array([50, 30, 1]), dim=4, separation=8.0, seed=4)
    # Validation is carved from classes with >= 2 rows; the single row stays in train.
    head = LinearHead(loss="balanced_softmax", **FAST, max_epochs=30).fit(data.X, data.y)
    np.testing.assert_array_equal(head.classes_, [0, 1, 2])
    assert head.class_counts_[2] == 1
    assert head.predict(data.X[-1:])[0] == 2
    ncm = NCMHead().fit(data.X, data.y)
    assert ncm.predict(data.X[-1:])[0] == 2


def test_too_little_data_to_carve_validation():
    X, y = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0, 1])
    with pytest.raises(HeadInputError, match="too little data to carve"):
        LinearHead().fit(X, y)
    head = LinearHead(early_stopping=False, max_epochs=2, device="cpu").fit(X, y)
    assert head.n_epochs_ == 2


def test_validation_labels_outside_the_training_classes(lt):
    train, val, _ = lt
    with pytest.raises(HeadInputError, match="do not occur in the training labels"):
        LinearHead().fit(train.X, train.y, X_val=val.X, y_val=val.y + 100)


def test_parameter_errors_name_the_parameter(lt, ce_head):
    train = lt[0]
    with pytest.raises(HeadInputError, match=r"The 'tau' parameter of TauNorm must be a float in "
                                             r"\[0, 2\]. Got -1 instead."):
        TauNorm(ce_head, tau=-1).fit(train.X, train.y)
    with pytest.raises(HeadInputError, match="needs a base with a linear layer"):
        TauNorm(NCMHead()).fit(train.X, train.y)
    with pytest.raises(FeatltError, match="'preprocess' parameter of LinearHead"):
        LinearHead(preprocess="zscore").fit(train.X, train.y)
    with pytest.raises(HeadInputError, match="'lr' parameter of LinearHead"):
        LinearHead(lr=0).fit(train.X, train.y)


def test_load_head_refuses_a_folder_without_a_head(tmp_path):
    with pytest.raises(FeatltError, match=r"needs head\.json and head\.safetensors"):
        load_head(tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_predicts_like_cpu(lt):
    train, val, test = lt
    cpu = LinearHead(lr=0.03, device="cpu").fit(train.X, train.y, X_val=val.X, y_val=val.y)
    gpu = LinearHead(lr=0.03, device="cuda").fit(train.X, train.y, X_val=val.X, y_val=val.y)
    assert gpu.device_ == "cuda"
    assert abs(bacc(gpu, test) - bacc(cpu, test)) < 0.03


def test_small_training_sets_get_smaller_batches_and_several_passes():
    from featlt.heads.training import effective_batch_size, epoch_draws, epoch_order

    assert effective_batch_size(512, 12386) == 512
    assert epoch_draws(12386, 512) == 12386  # large sets: one pass, as before
    assert effective_batch_size(512, 363) == 32
    assert epoch_draws(363, 32) == 2048  # 64 steps per epoch instead of 1 (batch 512)
    assert effective_batch_size(512, 10) == 10
    assert epoch_draws(10, 10) == 640  # 64 full-batch steps
    order = epoch_order(np.arange(363) % 3, "instance", np.random.default_rng(0), 2048)
    assert order.shape == (2048,)
    np.testing.assert_array_equal(np.sort(order[:363]), np.arange(363))  # whole passes first
    np.testing.assert_array_equal(np.bincount(order[:5 * 363]), np.full(363, 5))
