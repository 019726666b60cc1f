"""How well a score's ranking of backbones agrees with the accuracy they actually reach.

For M backbones scored on the same test images (docs/methods.md, "Ranking backbones"):

- **ties**: backbones i and j are tied when the 95% paired-bootstrap interval of their measured
  difference contains 0 (:func:`tie_matrix`). Ties are turned into tied *values* for scipy by
  walking down the measured order: a backbone joins the current group when it is tied with the
  group's first (best) member, else it opens a new group; every member gets the group's mean
  (:func:`tie_grouped`).
- **Kendall tau-b** (``scipy.stats.kendalltau``) and **weighted tau** (``scipy.stats.weightedtau``,
  hyperbolic weights, both orders averaged: scipy's defaults) between the score and the grouped
  measured values; a score missing for a backbone (None) ranks it below every scored one, the
  missing ones tied.
- **interval**: the 2.5-97.5 percentiles of tau-b over the paired resamples of the test images
  (each resample regrouped with the same tie pairs).
- **top-1 regret**: measured value of the best backbone minus that of the score's first choice,
  in percentage points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featlt.evaluation.bootstrap import percentile_interval


def tie_matrix(resampled: np.ndarray) -> np.ndarray:
    """(M, M) bool: the 95% interval of resampled[:, i] - resampled[:, j] contains 0.

    Args:
        resampled: (B, M) a measured value of every backbone on each paired resample.
    """
    diff = resampled[:, :, None] - resampled[:, None, :]
    low, high = np.nanpercentile(diff, [2.5, 97.5], axis=0)
    ties = (low <= 0) & (high >= 0)
    np.fill_diagonal(ties, True)
    return ties


def tie_grouped(values: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """(M,) values where each tie group (see the module docstring) holds its mean.

    Args:
        values: (M,) measured values (higher is better); ties: (M, M) bool tie pairs.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-values, kind="stable")
    grouped = values.copy()
    group: list[int] = []
    for index in order:
        if group and not ties[group[0], index]:
            grouped[group] = values[group].mean()
            group = []
        group.append(int(index))
    grouped[group] = values[group].mean()
    return grouped


def filled(score: Any) -> np.ndarray:
    """(M,) float64 score with missing entries (None/NaN) set below every present one."""
    values = np.array([np.nan if v is None else float(v) for v in score])
    present = np.isfinite(values)
    floor = (values[present].min() - 1.0) if present.any() else 0.0
    return np.where(present, values, floor)


def rank_agreement(score: np.ndarray, measured: np.ndarray) -> dict[str, float | None]:
    """Kendall tau-b and weighted tau of two (M,) value vectors (None when undefined)."""
    from scipy.stats import kendalltau, weightedtau

    if np.unique(score).size < 2 or np.unique(measured).size < 2:
        return {"kendall_tau": None, "weighted_tau": None}
    tau = kendalltau(score, measured, variant="b").statistic
    weighted = weightedtau(score, measured).statistic
    return {"kendall_tau": None if np.isnan(tau) else float(tau),
            "weighted_tau": None if np.isnan(weighted) else float(weighted)}


def top1_regret(score: np.ndarray, measured: np.ndarray) -> float:
    """Points lost by taking the score's first choice (first of equal scores) over the best."""
    choice = int(np.argsort(-score, kind="stable")[0])
    return float(100.0 * (measured.max() - measured[choice]))


def validate_score(
    score: Any, measured: np.ndarray, resampled: np.ndarray, ties: np.ndarray
) -> dict[str, Any]:
    """Agreement of one score with the measured ranking, with its bootstrap interval.

    Args:
        score: (M,) the score of each backbone (None: absent).
        measured: (M,) measured value (e.g. balanced accuracy) of each backbone's head.
        resampled: (B, M) the measured value on each paired resample of the test images.
        ties: (M, M) tie pairs from :func:`tie_matrix`.
    """
    values = filled(score)
    if not any(v is not None and np.isfinite(v) for v in score):
        return {"kendall_tau": None, "weighted_tau": None, "ci": None, "top1_regret": None,
                "top1": None, "n_backbones": int(values.size)}
    point = rank_agreement(values, tie_grouped(measured, ties))
    taus = [rank_agreement(values, tie_grouped(row, ties))["kendall_tau"] for row in resampled]
    finite = np.array([t for t in taus if t is not None], dtype=np.float64)
    return {
        **point,
        "ci": percentile_interval(finite) if finite.size else None,
        "top1_regret": top1_regret(values, measured),
        "top1": int(np.argsort(-values, kind="stable")[0]),
        "n_backbones": int(values.size),
    }
