"""Resolvable pairs of backbones and the share of them a score orders right.

A measured ranking of M backbones holds pairs that the test images cannot separate; counting
them against a score is counting noise. Here (docs/methods.md, "Ranking backbones"):

- **measured value**: each backbone's test balanced accuracy, on one view seed or pooled over
  several (:func:`pooled_resamples`: the mean over the seeds).
- **resolvable pair** (:func:`resolvable_matrix`): backbones i and j are resolvable when the 95%
  percentile interval of their resampled difference (a paired bootstrap of the test images, the
  same resample for every backbone and every seed) excludes 0; the better one is the one the
  whole interval favours. It is the complement of :func:`featlt.rank.validation.tie_matrix`.
- **resolvable-pair accuracy** (:func:`pair_accuracy`): over the resolvable pairs on which the
  score is defined for both backbones, the share it orders as measured; a pair the score ties
  counts one half (as a concordance index counts tied predictions: a score equal on every file
  gets 0.5, chance, neither 0 nor 1). Pairs that involve a backbone without the score are left
  out of that score's count; ``n_resolvable`` says how many were used.
- **interval**: the 95% Wilson score interval of that share over the ``n_resolvable`` pairs. The
  paired bootstrap cannot give it: a resolvable pair is one whose order is the same in at least
  97.5% of the resamples, so recounting the same pairs over the resamples barely moves the share
  and would claim a precision the handful of pairs does not have. What limits the share is how
  many pairs there are; the Wilson interval says that, and stays inside [0, 1] at 0 or n right.
  It treats the pairs as independent, which they are not (pairs share backbones), so it is, if
  anything, too narrow.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from featlt.evaluation.bootstrap import class_mean, paired_bootstrap
from featlt.evaluation.metrics import per_class_recall
from featlt.rank.validation import tie_matrix

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def resolvable_matrix(resampled: np.ndarray) -> np.ndarray:
    """(M, M) bool ``better``: ``better[i, j]`` when i beats j resolvably.

    That is, the 95% percentile interval of ``resampled[:, i] - resampled[:, j]`` lies above 0
    (so ``better | better.T`` are the resolvable pairs, and the diagonal is False).

    Args:
        resampled: (B, M) a measured value of every backbone on each paired resample.
    """
    resampled = np.asarray(resampled, dtype=np.float64)
    resolvable = ~tie_matrix(resampled)
    diff = resampled[:, :, None] - resampled[:, None, :]
    low = np.nanpercentile(diff, 2.5, axis=0)
    return resolvable & (low > 0)


def wilson_interval(successes: float, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval ``[low, high]`` of a share ``successes / n`` (None for n = 0).

    ``successes`` may be fractional (half-counted ties).
    """
    if n <= 0:
        return None
    share = successes / n
    denominator = 1.0 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def pair_accuracy(score: Any, better: np.ndarray) -> dict[str, Any]:
    """How a score orders the resolvable pairs (see the module docstring).

    Args:
        score: (M,) the score of every backbone, higher is better; None or NaN: missing.
        better: (M, M) bool from :func:`resolvable_matrix`.
    Returns:
        ``n_resolvable`` (pairs used: resolvable, score defined on both), ``resolvable_pairs``
        (``right`` / ``wrong`` / ``tied`` counts of those), ``resolvable_pair_accuracy``
        ((right + tied / 2) / n_resolvable; None when no pair is used) and
        ``resolvable_pair_accuracy_ci`` (95% Wilson interval, None when no pair is used).
    """
    values = np.array([np.nan if v is None else float(v) for v in score], dtype=np.float64)
    better = np.asarray(better, dtype=bool)
    if better.shape != (values.size, values.size):
        raise ValueError(f"pair_accuracy: {values.size} scores but a {better.shape} pair matrix")
    present = np.isfinite(values)
    winners, losers = np.nonzero(better & present[:, None] & present[None, :])
    gap = values[winners] - values[losers]
    right, wrong = int((gap > 0).sum()), int((gap < 0).sum())
    tied = int(gap.size - right - wrong)
    n = int(gap.size)
    successes = right + 0.5 * tied
    return {
        "n_resolvable": n,
        "resolvable_pairs": {"right": right, "wrong": wrong, "tied": tied},
        "resolvable_pair_accuracy": successes / n if n else None,
        "resolvable_pair_accuracy_ci": wilson_interval(successes, n),
    }


def resolvable_labels(better: np.ndarray, labels: list[str]) -> list[list[str]]:
    """Every resolvable pair as ``[better label, worse label]``, in row-major order."""
    winners, losers = np.nonzero(np.asarray(better, dtype=bool))
    return [[labels[i], labels[j]] for i, j in zip(winners, losers, strict=True)]


def pooled_resamples(
    labels: np.ndarray, correct: np.ndarray, n_classes: int, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Balanced accuracy of M backbones over S view seeds, pooled, with a paired bootstrap.

    Every seed's heads were scored on the same test images (``labels``), so one resample of
    those images serves every backbone *and* every seed
    (:func:`featlt.evaluation.bootstrap.paired_bootstrap` on the S x M models at once).

    Args:
        labels: (n,) int true class of each test image.
        correct: (S, M, n) bool, whether seed s's head of backbone m got image i right.
        n_classes: C.
        n_bootstrap: B resamples; seed: seeds them.
    Returns:
        ``per_seed`` (S, M) each seed's test balanced accuracy; ``measured`` (M,) their mean
        over seeds; ``resampled`` (B, M) the mean over seeds of each resample's balanced
        accuracy (so a difference of two columns is the seed-pooled difference);
        ``interval`` (M, 2) the 2.5-97.5 percentiles of ``resampled``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 3 or correct.shape[2] != labels.shape[0]:
        raise ValueError(f"pooled_resamples: correct of shape {correct.shape} is not (S, M, "
                         f"{labels.shape[0]})")
    n_seeds, n_models, n = correct.shape
    per_seed = np.array([[class_mean(per_class_recall(labels, np.where(c, labels, -1),
                                                      n_classes)) for c in seed_rows]
                         for seed_rows in correct])
    recall = paired_bootstrap(labels, correct.reshape(n_seeds * n_models, n), n_classes,
                              n_bootstrap, seed).recall
    resampled = class_mean(recall).reshape(n_bootstrap, n_seeds, n_models).mean(axis=1)
    return {"per_seed": per_seed, "measured": per_seed.mean(axis=0), "resampled": resampled,
            "interval": np.nanpercentile(resampled, [2.5, 97.5], axis=0).T}
