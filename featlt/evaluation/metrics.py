"""Long-tail metrics (docs/methods.md, "Metrics"): accuracies with bootstrap intervals, shot groups,
worst-class accuracy, macro-F1, NLL, top-label ECE overall and per group, confusion matrix.

Definitions (all on one evaluation split; classes are 0..C-1, C = ``len(train_counts)``):

- ``accuracy``: share of correct rows. ``balanced_accuracy``: mean per-class recall over the
  classes present in ``y_true``.
- Group accuracies (``head_third``, ``mid_third``, ``tail_third``, ``many``, ``medium``, ``few``,
  groups from :func:`featlt.evaluation.shots.shot_groups` on the *training* counts): mean per-class
  recall over the group's classes present in ``y_true``; ``None`` when the group is empty.
- ``worst_class_accuracy``: the lowest per-class recall (and which class).
- ``macro_f1``: unweighted mean F1 over the classes present in ``y_true``.
- ``nll``: mean ``-log p(true class)``, probabilities clipped below at float64 eps.
- ``ece``: top-label expected calibration error with 15 equal-width confidence bins
  ``(k/15, (k+1)/15]``: ``sum_b |acc_b - conf_b| * n_b / n``; per-group ECE uses the rows whose
  *true* class is in the group.
- Bootstrap: ``n_bootstrap`` resamples of the evaluation rows (with replacement, seeded); the
  interval is the 2.5th-97.5th percentile of accuracy and balanced accuracy
  (:mod:`featlt.evaluation.bootstrap`, shared with ``featlt rank``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from featlt.errors import FeatltError
from featlt.evaluation.bootstrap import class_mean, paired_bootstrap, percentile_interval
from featlt.evaluation.shots import ALL_GROUPS, shot_groups

if TYPE_CHECKING:
    import torch

N_BOOTSTRAP = 1000
ECE_BINS = 15
PROB_FLOOR = float(np.finfo(np.float64).eps)


def check_predictions(y_true: Any, proba: Any, n_classes: int, what: str = "predictions") -> tuple[
    np.ndarray, np.ndarray
]:
    """Validate ``y_true`` (n,) ints in 0..C-1 and ``proba`` (n, C) probabilities."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] == 0:
        raise FeatltError(
            f"{what}: the evaluation split is empty (labels of shape {y.shape}); evaluate on a "
            "split with at least one row"
        )
    if p.ndim != 2 or p.shape != (y.shape[0], n_classes):
        raise FeatltError(
            f"{what}: probabilities have shape {p.shape}, expected ({y.shape[0]}, {n_classes}) "
            "(one row per label, one column per class)"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise FeatltError(
            f"{what}: labels must be class ids in 0..{n_classes - 1}, got values from "
            f"{y.min()} to {y.max()}; map labels to the training classes first"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0,
                                                                         atol=1e-6):
        raise FeatltError(
            f"{what}: probabilities must be finite, non-negative and sum to 1 per row; pass "
            "predict_proba output, not logits"
        )
    return y.astype(np.int64), p


def per_class_recall(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Recall of every class, the one numpy implementation in featlt.

    Args:
        y_true: (n,) int class ids in 0..C-1; y_pred: (n,) int predicted class ids.
        n_classes: C.
    Returns:
        (C,) float64: share of each class's rows predicted as that class; NaN for classes
        absent from ``y_true`` (also every class when there are no rows).
    """
    from sklearn.metrics import recall_score

    y_true = np.asarray(y_true)
    if y_true.shape[0] == 0:
        return np.full(n_classes, np.nan)
    return np.asarray(recall_score(y_true, np.asarray(y_pred), labels=np.arange(n_classes),
                                   average=None, zero_division=np.nan), dtype=np.float64)


def balanced_accuracy(y_true: Any, y_pred: Any, n_classes: int) -> float | None:
    """Mean per-class recall over the classes present in ``y_true`` (None without rows).

    Equals ``sklearn.metrics.balanced_accuracy_score`` when every predicted class occurs in
    ``y_true``; a prediction of a class absent from ``y_true`` only counts as a miss.

    Args:
        y_true: (n,) int class ids in 0..C-1; y_pred: (n,) int predicted class ids.
    """
    return mean_over_classes(per_class_recall(y_true, y_pred, n_classes))


def balanced_accuracy_torch(y_pred: torch.Tensor, y_true: torch.Tensor, n_classes: int) -> float:
    """:func:`balanced_accuracy` on torch tensors, for use inside a training loop.

    Stays on the tensors' device (no copy to numpy per validation step).

    Args:
        y_pred: (n,) int64 predicted class ids; y_true: (n,) int64 class ids in 0..C-1.
    """
    correct = (y_pred == y_true).double()
    hits = correct.new_zeros(n_classes).index_add_(0, y_true, correct)
    seen = y_true.bincount(minlength=n_classes).double()
    present = seen > 0
    return float((hits[present] / seen[present]).mean())


def mean_over_classes(values: Any) -> float | None:
    """Mean of the finite entries of per-class ``values`` (C,); None when there are none.

    NaN marks a class that was not evaluated (absent from ``y_true``), so it is skipped. The
    scalar form of :func:`featlt.evaluation.bootstrap.class_mean`, the one implementation.
    """
    value = float(class_mean(np.asarray(values, dtype=np.float64)))
    return None if np.isnan(value) else value


def group_means(
    values: Any, groups: dict[str, np.ndarray | None]
) -> dict[str, float | None]:
    """:func:`mean_over_classes` of ``values`` (C,) over each group's class indices.

    Args:
        values: (C,) per-class values (NaN: not evaluated).
        groups: group name -> class indices, or None for an empty group (its mean is None).
    """
    values = np.asarray(values, dtype=np.float64)
    return {name: None if members is None else mean_over_classes(values[members])
            for name, members in groups.items()}


def top_label_ece(proba: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """Top-label ECE with ``n_bins`` equal-width bins; None without rows.

    Args:
        proba: (n, C) probabilities; y_true: (n,) class ids.
    """
    if y_true.shape[0] == 0:
        return None
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    count, hits, confidence_sum = ece_bins(confidence, correct, n_bins)
    return float(np.abs(hits - confidence_sum).sum() / y_true.shape[0]) if count.sum() else None


def ece_bins(confidence: np.ndarray, correct: np.ndarray,
             n_bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The equal-width confidence bins of :func:`top_label_ece` (and of reliability diagrams).

    Bin k holds confidences in ``(k/n_bins, (k+1)/n_bins]``; a confidence of exactly 0 joins
    bin 0. ECE is ``sum(|hits - confidence_sum|) / n``.

    Args:
        confidence: (n,) top-label confidence of each row; correct: (n,) 1.0 where the top
            label is the true class, else 0.0.
    Returns:
        (count, hits, confidence_sum), each (n_bins,): rows per bin (int64), correct rows per
        bin and the sum of their confidences (float64).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return (np.bincount(bins, minlength=n_bins),
            np.bincount(bins, weights=correct, minlength=n_bins),
            np.bincount(bins, weights=confidence, minlength=n_bins))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in ``y_true``."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro",
                          zero_division=0))


def bootstrap_intervals(
    y_true: np.ndarray, correct: np.ndarray, n_classes: int, n_bootstrap: int, seed: int
) -> dict[str, list[float]]:
    """95% percentile intervals of accuracy and balanced accuracy over resampled rows.

    Args:
        y_true: (n,) class ids; correct: (n,) bool, whether each row was predicted right.
    Returns:
        ``{"accuracy": [low, high], "balanced_accuracy": [low, high]}``, from
        :func:`featlt.evaluation.bootstrap.paired_bootstrap` (one model) and
        :func:`~featlt.evaluation.bootstrap.percentile_interval`.
    """
    resampled = paired_bootstrap(y_true, correct, n_classes, n_bootstrap, seed)
    return {"accuracy": percentile_interval(resampled.accuracy[:, 0]),
            "balanced_accuracy": percentile_interval(class_mean(resampled.recall[:, 0]))}


def evaluate(
    y_true: Any,
    proba: Any,
    train_counts: Any,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Every long-tail metric of one set of predictions.

    Args:
        y_true: (n,) int class ids in 0..C-1.
        proba: (n, C) predicted probabilities.
        train_counts: (C,) int long-tailed training count per class (for the shot groups).
        n_bootstrap: resamples for the intervals (0: no intervals).
        seed: seeds the bootstrap.
    Returns:
        A JSON-able dict; empty groups and classes absent from ``y_true`` are None.
    """
    from sklearn.metrics import confusion_matrix

    counts = np.asarray(train_counts)
    n_classes = counts.shape[0]
    y, p = check_predictions(y_true, proba, n_classes)
    pred = p.argmax(axis=1)
    correct = pred == y
    recall = per_class_recall(y, pred, n_classes)
    groups = shot_groups(counts)
    present = ~np.isnan(recall)
    worst = int(np.flatnonzero(present)[np.argmin(recall[present])])
    result: dict[str, Any] = {
        "n": int(y.shape[0]),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": mean_over_classes(recall),
    }
    if n_bootstrap:
        intervals = bootstrap_intervals(y, correct, n_classes, n_bootstrap, seed)
        result["accuracy_ci"] = intervals["accuracy"]
        result["balanced_accuracy_ci"] = intervals["balanced_accuracy"]
    result.update(group_means(recall, {name: groups[name] for name in ALL_GROUPS}))
    result.update(
        worst_class_accuracy=float(recall[worst]),
        worst_class=worst if class_names is None else class_names[worst],
        macro_f1=macro_f1(y, pred),
        nll=float(-np.log(np.maximum(p[np.arange(y.shape[0]), y], PROB_FLOOR)).mean()),
        ece=top_label_ece(p, y),
    )
    in_group: dict[str, float | None] = {}
    for name in ALL_GROUPS:
        members = groups[name]
        mask = np.isin(y, members) if members is not None else np.zeros_like(correct)
        in_group[name] = top_label_ece(p[mask], y[mask]) if mask.any() else None
    result["ece_groups"] = in_group
    result["per_class_accuracy"] = [None if np.isnan(r) else float(r) for r in recall]
    result["confusion_matrix"] = confusion_matrix(y, pred, labels=np.arange(n_classes)).tolist()
    result["groups"] = {k: None if v is None else v.tolist() for k, v in groups.items()}
    result["bootstrap"] = {"n": int(n_bootstrap), "seed": seed, "interval": 0.95}
    return result
