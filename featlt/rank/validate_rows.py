"""``featlt rank --validate``: every score's ranking against the measured ranking.

The measured values are the balanced accuracy and the tail-third accuracy of each backbone's
best validation-selected head on the (shared) test images; one set of paired resamples of those
images gives the ties, the tau intervals and the probability that each backbone is the best.
Validated on all backbones and on the pretrained ones alone (not random init, not raw pixels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from featlt.errors import FeatltError
from featlt.rank.bootstrap import class_mean, probability_best, resampled_recall
from featlt.rank.validation import tie_matrix, validate_score

if TYPE_CHECKING:
    from featlt.rank.ranking import RankedFile

TARGETS = ("balanced_accuracy", "tail_third")


def measured_recall(rows: list[RankedFile], n_bootstrap: int, seed: int) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:
    """(point recall (M, C), resampled recall (B, M, C), tail-third class ids) of the heads."""
    from featlt.evaluation.metrics import per_class_recall
    from featlt.evaluation.shots import shot_groups

    measured = [row.measured for row in rows]
    if any(m is None for m in measured):
        raise FeatltError("--validate: every backbone needs measured heads; rank with --full")
    labels = measured[0].labels  # type: ignore[union-attr]
    positions = measured[0].positions  # type: ignore[union-attr]
    for row, m in zip(rows, measured, strict=True):
        if not (np.array_equal(m.positions, positions)  # type: ignore[union-attr]
                and np.array_equal(m.labels, labels)):  # type: ignore[union-attr]
            raise FeatltError(
                f"feature files {rows[0].entry.path} and {row.entry.path}: the heads were scored "
                "on different test images, so the backbones cannot be compared image by image; "
                "rank them with the same view (--test-per-class) on files of the same test rows"
            )
    n_classes = len(rows[0].report["data"]["class_names"])
    correct = np.stack([m.predictions == labels for m in measured])  # type: ignore[union-attr]
    point = np.stack([per_class_recall(labels, m.predictions, n_classes)  # type: ignore[union-attr]
                      for m in measured])
    resampled = resampled_recall(labels, correct, n_classes, n_bootstrap, seed)
    counts = np.asarray(rows[0].report["data"]["train_counts"], dtype=np.int64)
    return point, resampled, shot_groups(counts)["tail_third"]


def validate_rows(rows: list[RankedFile], n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Rank correlation, intervals and top-1 regret of every score (see the module docstring)."""
    from featlt.rank.ranking import SCORE_COLUMNS

    point, resampled, tail = measured_recall(rows, n_bootstrap, seed)
    values = {"balanced_accuracy": (class_mean(point), class_mean(resampled)),
              "tail_third": (class_mean(point, tail), class_mean(resampled, tail))}
    pretrained = np.array([row.entry.pretrained for row in rows])
    out: dict[str, Any] = {
        "backbones": [row.entry.label for row in rows],
        "pretrained": [row.entry.label for row in rows if row.entry.pretrained],
        "measured": {name: v[0].tolist() for name, v in values.items()},
        "probability_best": probability_best(values["balanced_accuracy"][1]).tolist(),
        "n_bootstrap": n_bootstrap, "scores": {},
    }
    ties = {name: tie_matrix(v[1]) for name, v in values.items()}
    out["ties"] = {name: [[rows[i].entry.label, rows[j].entry.label]
                          for i in range(len(rows)) for j in range(i + 1, len(rows))
                          if t[i, j]] for name, t in ties.items()}
    for score in SCORE_COLUMNS:
        column = [row.scores.get(score) for row in rows]
        result = validate_score(column, *values["balanced_accuracy"], ties["balanced_accuracy"])
        tail_result = validate_score(column, *values["tail_third"], ties["tail_third"])
        result.update({"kendall_tau_tail_third": tail_result["kendall_tau"],
                       "weighted_tau_tail_third": tail_result["weighted_tau"],
                       "ci_tail_third": tail_result["ci"]})
        if result["top1"] is not None:
            result["top1"] = rows[result["top1"]].entry.label
        if pretrained.sum() >= 2:
            keep = np.flatnonzero(pretrained)
            sub = validate_score([column[i] for i in keep], values["balanced_accuracy"][0][keep],
                                 values["balanced_accuracy"][1][:, keep],
                                 ties["balanced_accuracy"][np.ix_(keep, keep)])
            result.update({"kendall_tau_pretrained": sub["kendall_tau"],
                           "weighted_tau_pretrained": sub["weighted_tau"],
                           "ci_pretrained": sub["ci"], "top1_regret_pretrained":
                           sub["top1_regret"]})
        out["scores"][score] = result
    return out
