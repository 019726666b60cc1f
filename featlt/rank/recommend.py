"""The one sentence a ranking ends with: which backbone and head to use, and how sure that is.

- Full mode, ``--cv-folds K`` (K >= 2, the default 5): the backbone and head with the best
  K-fold cross-validated balanced accuracy over the training view (:mod:`featlt.rank.crossval`),
  with that estimate and its interval, the head's test balanced accuracy (fitted on the whole
  training view, test scored once) and the share of paired bootstrap resamples of the test
  images in which it is the best on test, every backbone represented by its best
  cross-validated head; the validation-only pick is reported beside it.
- Full mode, ``--cv-folds 0``: the backbone whose validation-selected head has the best
  *validation* balanced accuracy (choices are made on validation, never on test), with that
  head's test balanced accuracy, its interval, and the share of paired bootstrap resamples of
  the test images in which it is the best backbone on test.
- Cheap mode: the first backbone by the sorting score (a score equal on every file says that it
  cannot separate them, :mod:`featlt.rank.quality`). For featlt's score, how sure is the
  share of resamples in which it stays first (each class's kNN/NCM recall redrawn,
  :func:`featlt.rank.formula.resampled_featlt_score`). No head has been measured, so the
  sentence names featlt's default long-tail head, logit-adjusted linear (``la_loss``), and
  says how to measure the heads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.evaluation.bootstrap import class_mean, probability_best
from featlt.rank.crossval import CrossValidatedPick
from featlt.rank.formula import resampled_featlt_score
from featlt.rank.model import DEFAULT_SCORE, RankConfig, RankedFile
from featlt.rank.paired import measured_recall
from featlt.rank.quality import saturated_scores
from featlt.rank.scoring import RANK_AVERAGES

# The best head by validation on CIFAR-10-LT (results/heads_cifar10lt.json).
DEFAULT_HEAD = "la_loss"


def recommend(rows: list[RankedFile], config: RankConfig,
              picks: list[CrossValidatedPick] | None = None) -> dict[str, Any]:
    """``{"label", "backbone", "head", "probability_best", "basis", "sentence"}``; with
    ``picks`` (one per row, ``--cv-folds K``) also the cross-validated estimate, its interval,
    the test result and the validation-only pick."""
    if all(row.measured is not None for row in rows):
        if picks is not None:
            return _cross_validated(rows, config, picks)
        return _measured(rows, config)
    return _cheap(rows, config)


def _validation_pick(rows: list[RankedFile]) -> RankedFile:
    """The backbone today's rule picks: best validation balanced accuracy (first on ties)."""
    return rows[max(range(len(rows)),
                    key=lambda i: rows[i].measured.val_balanced_accuracy)]  # type: ignore[union-attr]


def _cross_validated(rows: list[RankedFile], config: RankConfig,
                     picks: list[CrossValidatedPick]) -> dict[str, Any]:
    """The (backbone, head) with the best cross-validated balanced accuracy (first row in
    table order, then first head in head order, on ties)."""
    if len(picks) != len(rows):
        raise FeatltError(f"recommend: {len(picks)} cross-validations for {len(rows)} "
                          "backbones; cross-validate every file (--cv-folds K)")
    index = max(range(len(rows)), key=lambda i: picks[i].crossval.balanced_accuracy[
        picks[i].crossval.best])
    best, crossval, m = rows[index], picks[index].crossval, picks[index].measured
    head = crossval.best
    estimate, (low, high) = crossval.balanced_accuracy[head], crossval.interval[head]
    probability, caveat = None, ""
    if len(rows) > 1:  # every backbone represented by its best cross-validated head
        represented = [replace(row, measured=pick.measured)
                       for row, pick in zip(rows, picks, strict=True)]
        _, resampled, _ = measured_recall(represented, config.n_bootstrap, config.seed)
        shares = probability_best(class_mean(resampled))
        probability = float(shares[index])
        leader = int(np.argmax(shares))
        if leader != index:  # cross-validation and test disagree: say so rather than hide it
            caveat = (f", while {rows[leader].entry.label} (its {picks[leader].crossval.best} "
                      f"head) is ahead on test (probability {shares[leader]:.2f})")
    by_validation = _validation_pick(rows)
    validation = by_validation.measured
    assert validation is not None and m is not None  # every row was measured (dispatch)
    same = by_validation is best and validation.head == head
    ci = m.balanced_accuracy_ci
    sentence = (
        f"Use {best.entry.describe()} ({best.entry.label}) with the {head} head: "
        f"{crossval.n_folds}-fold cross-validated balanced accuracy {estimate:.3f} "
        f"[{low:.3f}, {high:.3f}] over the training view"
        + (f", best of {len(rows)} backbones x {len(crossval.heads)} heads"
           if len(rows) > 1 else "")
        + f"; test balanced accuracy {m.balanced_accuracy:.3f}"
        + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        + (f"; bootstrap probability that it is the best on test: {probability:.2f}{caveat}"
           if probability is not None else "; nothing else was ranked, so there is no comparison")
        + ("" if same else
           f" (validation alone would pick {by_validation.entry.label} with {validation.head}: "
           f"{validation.balanced_accuracy:.3f} on test)")
        + "."
    )
    return {"label": best.entry.label, "backbone": best.entry.describe(), "head": head,
            "probability_best": probability,
            "basis": f"{crossval.n_folds}-fold cross-validated balanced accuracy over the "
                     "training view of every head (full mode)",
            "sentence": sentence, "n_folds": crossval.n_folds,
            "cv_balanced_accuracy": estimate, "cv_balanced_accuracy_ci": [low, high],
            "balanced_accuracy": m.balanced_accuracy, "balanced_accuracy_ci": ci,
            "validation_pick": {"label": by_validation.entry.label, "head": validation.head,
                                "val_balanced_accuracy": validation.val_balanced_accuracy,
                                "balanced_accuracy": validation.balanced_accuracy}}


def _measured(rows: list[RankedFile], config: RankConfig) -> dict[str, Any]:
    index = max(range(len(rows)),
                key=lambda i: rows[i].measured.val_balanced_accuracy)  # type: ignore[union-attr]
    best = rows[index]
    m = best.measured
    assert m is not None  # every row was measured (recommend's dispatch)
    probability, caveat = None, ""
    if len(rows) > 1:
        _, resampled, _ = measured_recall(rows, config.n_bootstrap, config.seed)
        shares = probability_best(class_mean(resampled))
        probability = float(shares[index])
        leader = int(np.argmax(shares))
        if leader != index:  # validation and test disagree: say so rather than hide it
            caveat = (f", while {rows[leader].entry.label} is ahead on test (probability "
                      f"{shares[leader]:.2f}): too few validation rows to separate them")
    ci = m.balanced_accuracy_ci
    sentence = (
        f"Use {best.entry.describe()} ({best.entry.label}) with the {m.head} head: balanced "
        f"accuracy {m.balanced_accuracy:.3f}"
        + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + " on test"
        + (f", best of {len(rows)} backbones on validation; bootstrap probability that it is "
           f"the best on test: {probability:.2f}{caveat}." if probability is not None
           else "; nothing else was ranked, so there is no comparison.")
    )
    return {"label": best.entry.label, "backbone": best.entry.describe(), "head": m.head,
            "probability_best": probability, "basis": "validation balanced accuracy of the "
            "best validation-selected head (full mode)", "sentence": sentence}


def _cheap(rows: list[RankedFile], config: RankConfig) -> dict[str, Any]:
    best = rows[0]
    probability = None
    source = DEFAULT_SCORE if config.by == "featlt" else config.by
    if source == "featlt_v1" and len(rows) > 1:  # the one score with a per-file resampling
        draws = np.stack([resampled_featlt_score(row.report, config.n_bootstrap,
                                                 config.seed + i) for i, row in enumerate(rows)],
                         axis=1)
        probability = float(probability_best(draws)[0])
    value = best.scores.get(config.by)
    how_sure = (
        f"{config.by} is the same on every file, so it cannot separate them: this is only the "
        "first file given" if config.by in saturated_scores(rows) else
        f"bootstrap probability that it stays first by {config.by}: {probability:.2f}"
        if probability is not None else
        "nothing else was ranked, so there is no comparison" if len(rows) == 1 else
        f"no interval for {config.by}, which is "
        + ("a rank average over the files ranked" if source in RANK_AVERAGES
           else "a single number per backbone"))
    sentence = (
        f"Use {best.entry.describe()} ({best.entry.label}), first by {config.by} "
        f"({'n/a' if value is None else f'{value:.4g}'}; {how_sure}), with the {DEFAULT_HEAD} "
        "head (featlt's default; rank with --full to measure every head)."
    )
    return {"label": best.entry.label, "backbone": best.entry.describe(), "head": DEFAULT_HEAD,
            "probability_best": probability, "basis": f"{config.by} (cheap mode)",
            "sentence": sentence}
