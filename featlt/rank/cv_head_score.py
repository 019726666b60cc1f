"""k-fold cross-validated logit-adjusted linear head: a candidate cheap score of issue 17.

[featlt's protocol] The score estimates the balanced accuracy of the ``la_loss`` head
(:class:`featlt.heads.linear.LinearHead` with ``loss="la"``, Menon et al. 2021) on the training
view itself, without validation rows and without hyperparameter selection:

- stratified k folds over the training rows (:class:`sklearn.model_selection.StratifiedKFold`,
  shuffled with ``seed``); every class must have at least k rows, so that every class is in every
  fold's training part (otherwise the head could not predict it and the prior would lack it);
- in each fold, one head with fixed hyperparameters (:data:`CV_HEAD_PARAMS`: the registry's
  ``la_loss`` recipe at its default optimisation settings, a fixed number of epochs, no early
  stopping, so no rows are carved and nothing is selected) is trained on the training part, its
  prior counted from the training part's labels, and predicts the held-out part;
- the out-of-fold predictions of all folds are pooled: balanced accuracy and the mean recall of
  the tail third of classes (by training count, :func:`featlt.evaluation.shots.shot_groups`).

It lives in :mod:`featlt.rank` because it trains a head: :mod:`featlt.separability` may not
import :mod:`featlt.heads` (docs/architecture.md, the layering).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.evaluation.metrics import mean_over_classes, per_class_recall
from featlt.evaluation.shots import shot_groups
from featlt.separability.scores.common import check_xy, n_classes_of

DEFAULT_FOLDS = 5
#: the fixed head: the ``la_loss`` recipe (LinearHead, loss="la") at LinearHead's default
#: optimisation settings; no early stopping (the last of ``max_epochs`` epochs is kept)
CV_HEAD_PARAMS: dict[str, Any] = {
    "loss": "la", "tau": 1.0, "sampling": "instance", "preprocess": "standardize", "hidden": 0,
    "lr": 3e-3, "weight_decay": 1e-2, "batch_size": 512, "max_epochs": 30,
    "early_stopping": False,
}


@dataclass(frozen=True)
class CVHeadResult:
    """Pooled out-of-fold predictions of the k-fold logit-adjusted linear head."""

    balanced_accuracy: float  # mean per-class recall of the pooled out-of-fold predictions
    tail_recall: float | None  # mean recall of the tail-third classes (None: no such class)
    per_class_recall: np.ndarray  # (C,) float64; NaN for classes without rows
    fold_balanced_accuracies: np.ndarray  # (k,) float64 balanced accuracy of each held-out fold
    predictions: np.ndarray  # (n,) int64 out-of-fold predicted class of every row
    n_folds: int
    seed: int
    head_params: dict[str, Any] = field(default_factory=dict)  # what every fold's head used


def check_folds(y: np.ndarray, n_folds: int, what: str = "cv head score",
                class_names: Sequence[str] | None = None, fix: str | None = None) -> np.ndarray:
    """Refuse folds that would leave a class out of some fold's training part.

    Args:
        y: (n,) int64 class ids; n_folds: k.
        class_names: names of the class ids, to name a short class in the message.
        fix: what the message tells the user to do (default: fewer folds or more rows).
    Returns:
        (C,) int64 class counts.
    """
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool) or n_folds < 2:
        raise FeatltError(f"{what}: n_folds must be an int >= 2, got {n_folds!r}; pass e.g. 5")
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    if present.size < 2:
        raise FeatltError(
            f"{what}: the labels hold a single class ({int(present[0])}); pass a view with "
            "several classes"
        )
    short = present[counts[present] < n_folds]
    if short.size:
        c = int(short[np.argmin(counts[short])])
        name = f" ({class_names[c]})" if class_names is not None else ""
        fix = fix or (f"use at most {int(counts[present].min())} folds (fewer folds), or a view "
                      "with more rows")
        raise FeatltError(
            f"{what}: class {c}{name} has {int(counts[c])} training rows but {n_folds} folds "
            f"were asked for ({short.size} class(es) have fewer rows than folds: "
            f"{short[:10].tolist()}); every class must be in every fold: {fix}"
        )
    return counts


def cv_head_score(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int | None = None,
    n_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    max_epochs: int = int(CV_HEAD_PARAMS["max_epochs"]),
    device: str = "cpu",
) -> CVHeadResult:
    """Balanced accuracy of the pooled out-of-fold predictions of a logit-adjusted linear head.

    Args:
        X: (n, D) finite training features; y: (n,) non-negative int class ids.
        n_classes: C (default ``y.max() + 1``); classes without rows get NaN recall.
        n_folds: k >= 2; every present class needs at least k rows.
        seed: seeds the fold assignment and each fold's head (initialisation, batch order).
        max_epochs: the fixed number of epochs of every fold's head.
        device: cpu | cuda | auto for training (cpu is bit-for-bit deterministic).
    Returns:
        :class:`CVHeadResult`.
    Raises:
        FeatltError: bad features or labels, a single class, a class with fewer rows than folds.
    """
    from sklearn.model_selection import StratifiedKFold

    from featlt.heads.linear import LinearHead

    X, y = check_xy(X, y, "cv head score features")
    C = n_classes_of(y, n_classes)
    check_folds(y, n_folds)
    if not isinstance(max_epochs, (int, np.integer)) or max_epochs < 1:
        raise FeatltError(f"cv head score: max_epochs must be an int >= 1, got {max_epochs!r}")
    params = {**CV_HEAD_PARAMS, "max_epochs": int(max_epochs), "device": device}
    folds = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=int(seed))
    fold_seeds = np.random.SeedSequence(int(seed)).generate_state(int(n_folds))
    predictions = np.full(y.size, -1, dtype=np.int64)
    fold_scores = np.empty(int(n_folds))
    for k, (train, held) in enumerate(folds.split(np.zeros(y.size), y)):
        # class_counts=None: the prior is counted from this fold's training part
        head = LinearHead(**params, class_counts=None, random_state=int(fold_seeds[k]))
        head.fit(X[train], y[train])
        predictions[held] = np.asarray(head.predict(X[held]), dtype=np.int64)
        fold_scores[k] = mean_over_classes(per_class_recall(y[held], predictions[held], C))
    recall = per_class_recall(y, predictions, C)
    tail = shot_groups(np.bincount(y, minlength=C))["tail_third"]
    return CVHeadResult(
        balanced_accuracy=float(mean_over_classes(recall)),
        tail_recall=None if tail is None else mean_over_classes(recall[tail]),
        per_class_recall=recall,
        fold_balanced_accuracies=fold_scores,
        predictions=predictions,
        n_folds=int(n_folds),
        seed=int(seed),
        head_params={**params, "random_state": [int(s) for s in fold_seeds]},
    )
