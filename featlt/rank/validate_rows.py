"""``featlt rank --validate``: every score's ranking against the measured ranking.

The measured values are the balanced accuracy and the tail-third accuracy of each backbone's
best validation-selected head on the (shared) test images; one set of paired resamples of those
images gives the ties, the tau intervals and the probability that each backbone is the best.
Validated on all backbones and on the pretrained ones alone (not random init, not raw pixels);
every score the ranking computed is validated (an opt-in score not asked for has no entry).
Beside the taus and the regret, every score's resolvable-pair accuracy on the run's own view
seed (:mod:`featlt.rank.resolvable`): the share of the pairs whose paired-bootstrap difference
of balanced accuracy excludes 0 that the score orders as measured, with its Wilson interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featlt.evaluation.bootstrap import class_mean, probability_best
from featlt.rank.model import SCORE_COLUMNS, RankedFile
from featlt.rank.paired import measured_recall
from featlt.rank.resolvable import pair_accuracy, resolvable_labels, resolvable_matrix
from featlt.rank.validation import tie_matrix, validate_score

TARGETS = ("balanced_accuracy", "tail_third")


def validate_rows(rows: list[RankedFile], n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Rank correlation, intervals and top-1 regret of every score (see the module docstring)."""
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
    labels = [row.entry.label for row in rows]
    better = resolvable_matrix(values["balanced_accuracy"][1])
    out["resolvable_pairs"] = resolvable_labels(better, labels)
    out["n_resolvable"] = len(out["resolvable_pairs"])
    keep = np.flatnonzero(pretrained)
    out["n_resolvable_pretrained"] = int(better[np.ix_(keep, keep)].sum())
    out["ties"] = {name: [[rows[i].entry.label, rows[j].entry.label]
                          for i in range(len(rows)) for j in range(i + 1, len(rows))
                          if t[i, j]] for name, t in ties.items()}
    for score in [name for name in SCORE_COLUMNS if any(name in row.scores for row in rows)]:
        column = [row.scores.get(score) for row in rows]
        result = validate_score(column, *values["balanced_accuracy"], ties["balanced_accuracy"])
        tail_result = validate_score(column, *values["tail_third"], ties["tail_third"])
        result.update({"kendall_tau_tail_third": tail_result["kendall_tau"],
                       "weighted_tau_tail_third": tail_result["weighted_tau"],
                       "ci_tail_third": tail_result["ci"]})
        result.update(pair_accuracy(column, better))
        if result["top1"] is not None:
            result["top1"] = rows[result["top1"]].entry.label
        if pretrained.sum() >= 2:
            sub = validate_score([column[i] for i in keep], values["balanced_accuracy"][0][keep],
                                 values["balanced_accuracy"][1][:, keep],
                                 ties["balanced_accuracy"][np.ix_(keep, keep)])
            result.update({"kendall_tau_pretrained": sub["kendall_tau"],
                           "weighted_tau_pretrained": sub["weighted_tau"],
                           "ci_pretrained": sub["ci"], "top1_regret_pretrained":
                           sub["top1_regret"]})
            pre = pair_accuracy([column[i] for i in keep], better[np.ix_(keep, keep)])
            result.update({f"{key}_pretrained": value for key, value in pre.items()})
        out["scores"][score] = result
    return out
