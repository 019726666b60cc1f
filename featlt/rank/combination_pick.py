"""``rank --pairs --full``: name a combination only when it is reliably better than one backbone.

[featlt design, docs/methods.md "Ranking combinations"] The gain of a combination over the best
single backbone (the single file with the best K-fold cross-validated balanced accuracy, each
file represented by its best cross-validated head, :mod:`featlt.rank.crossval`) is the
difference of their cross-validated balanced accuracies, each with its own best head. The two
cross-validation records are *paired*: they hold, for the same training rows in the same order
(the same images, checked by source position), the same labels and the same folds (the folds
are drawn from the labels with the heads' seed), and each head's out-of-fold prediction of every
row. The interval of the gain is the 2.5-97.5 percentile interval of the difference over paired
bootstrap resamples of those training rows (:func:`featlt.evaluation.bootstrap.paired_bootstrap`,
``--bootstrap`` resamples, the run's seed): every resample redraws the same rows for both.

The recommendation names the combination with the best cross-validated balanced accuracy among
those whose interval lies above 0; otherwise it stays with the single backbone (cheaper at
inference), and says how far the best combination got. Records that cannot be paired name no
combination: the test images are never used to choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featlt.evaluation.bootstrap import class_mean, paired_bootstrap, percentile_interval
from featlt.evaluation.metrics import per_class_recall
from featlt.rank.crossval import CrossValidated, CrossValidatedPick
from featlt.rank.model import RankedFile
from featlt.rank.pairs import top_combinations

METHOD = ("paired bootstrap of the training rows over the out-of-fold predictions of both "
          "K-fold cross-validation records (same rows, labels and folds)")


@dataclass(frozen=True)
class Gain:
    """A combination's cross-validated gain over the best single backbone."""

    label: str  # the combination's label
    gain: float | None  # balanced accuracy difference (None: the records do not pair)
    interval: list[float] | None  # 95% paired-bootstrap interval of the gain
    problem: str | None  # why the records do not pair (None: they do)

    @property
    def reliable(self) -> bool:
        """Whether the interval lies above 0."""
        return self.interval is not None and self.interval[0] > 0

    def record(self) -> dict[str, Any]:
        return {"label": self.label, "gain": self.gain, "gain_ci": self.interval,
                "reliable": self.reliable, "unpaired": self.problem}


def training_positions(path: Path, protocol: Any) -> np.ndarray:
    """(n_train,) int64 source positions of the view's training rows, in the order the heads
    and the cross-validation read them (:func:`featlt.data.protocol.load_arrays`)."""
    from featlt.data.protocol import resolve_view
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(path) as store:
        view = resolve_view(store, protocol)
        return np.asarray(store.source_index(view.train_split)[view.train_rows], dtype=np.int64)


def cross_validated_gain(combination: RankedFile, crossval: CrossValidated, single: RankedFile,
                         reference: CrossValidated, protocol: Any, n_classes: int,
                         n_bootstrap: int, seed: int) -> Gain:
    """The gain of ``combination`` (its record ``crossval``) over ``single`` (``reference``),
    each with its best cross-validated head, paired over the training rows (module docstring).
    """
    label = combination.entry.label
    same_rows = np.array_equal(training_positions(combination.entry.path, protocol),
                               training_positions(single.entry.path, protocol))
    if not (same_rows and np.array_equal(crossval.labels, reference.labels)
            and np.array_equal(crossval.folds, reference.folds)):
        return Gain(label, None, None,
                    f"the cross-validation records of {label} and {single.entry.label} do not "
                    "hold the same training rows, labels and folds, so they cannot be paired")
    labels = crossval.labels
    predictions = np.stack([crossval.predictions[crossval.heads.index(crossval.best)],
                            reference.predictions[reference.heads.index(reference.best)]])
    point = [class_mean(per_class_recall(labels, p, n_classes)) for p in predictions]
    resampled = class_mean(paired_bootstrap(labels, predictions == labels[None, :], n_classes,
                                            n_bootstrap, seed).recall)  # (B, 2)
    return Gain(label, float(point[0] - point[1]),
                percentile_interval(resampled[:, 0] - resampled[:, 1]), None)


def members_in_words(row: RankedFile) -> str:
    """A combination's members as a sentence names them: ``A at 160 px together with B at
    112 px`` (an inner layer as ``, layer blocks.4``; a member without a backbone record by its
    file's label)."""
    parts = []
    labels = row.combination.members if row.combination is not None else ()
    for member, label in zip(row.entry.backbone.get("members") or [], labels, strict=False):
        backbone = member.get("backbone") or {}
        name = str(backbone.get("zoo") or backbone.get("model") or label)
        if backbone.get("resolution"):
            name += f" at {backbone['resolution']} px"
        layer = (backbone.get("feature") or {}).get("layer")
        if layer and layer != "pre_logits":
            name += f", layer {layer}"
        parts.append(name)
    return " together with ".join(parts)


def recommend_combination(
    recommendation: dict[str, Any], singles: list[RankedFile], single_picks: list[
        CrossValidatedPick], combinations: list[RankedFile],
    combination_picks: list[CrossValidatedPick], protocol: Any, n_bootstrap: int, seed: int,
) -> dict[str, Any]:
    """The single-backbone ``recommendation`` (:func:`featlt.rank.recommend.recommend`), turned
    into a combination's when one is reliably better (module docstring); its ``combination``
    field holds every measured combination's gain.

    Args:
        singles, single_picks: the single files and their cross-validated picks (same order).
        combinations, combination_picks: the measured combinations and theirs (same order).
    """
    index = max(range(len(singles)), key=lambda i: single_picks[i].crossval.balanced_accuracy[
        single_picks[i].crossval.best])
    best, reference = singles[index], single_picks[index].crossval
    n_classes = len(best.report["data"]["class_names"])
    gains = [cross_validated_gain(row, pick.crossval, best, reference, protocol, n_classes,
                                  n_bootstrap, seed)
             for row, pick in zip(combinations, combination_picks, strict=True)]
    reliable = [i for i, g in enumerate(gains) if g.reliable]
    record = {"method": METHOD, "best_single": best.entry.label,
              "gains": [g.record() for g in gains], "chosen": None}
    if not reliable:
        return {**recommendation, "combination": record,
                "sentence": recommendation["sentence"] + _why_single(gains)}
    chosen = max(reliable, key=lambda i: combination_picks[i].crossval.balanced_accuracy[
        combination_picks[i].crossval.best])
    row, pick, gain = combinations[chosen], combination_picks[chosen], gains[chosen]
    crossval, measured = pick.crossval, pick.measured
    head = crossval.best
    low, high = crossval.interval[head]
    assert gain.gain is not None and gain.interval is not None  # reliable: paired
    ratio = (None if row.cpu_seconds is None or not best.cpu_seconds
             else row.cpu_seconds / best.cpu_seconds)
    ci = measured.balanced_accuracy_ci
    sentence = (
        f"Use {members_in_words(row)} ({row.entry.label}), {head} head: {crossval.n_folds}-fold "
        f"cross-validated balanced accuracy {crossval.balanced_accuracy[head]:.3f} "
        f"[{low:.3f}, {high:.3f}] over the training view, {100 * gain.gain:+.1f} points "
        f"[{100 * gain.interval[0]:+.1f}, {100 * gain.interval[1]:+.1f}] over the best single "
        f"backbone ({best.entry.label}, {reference.best} head)"
        + (f", at {ratio:.1f}x its CPU time per image" if ratio is not None else
           ", CPU time per image not measured (see the notes)")
        + f"; test balanced accuracy {measured.balanced_accuracy:.3f}"
        + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + ".")
    record["chosen"] = row.entry.label
    return {"label": row.entry.label, "backbone": row.entry.describe(), "head": head,
            "probability_best": None,
            "basis": f"{crossval.n_folds}-fold cross-validated gain of a combination over the "
                     "best single backbone, interval excluding 0 (full mode, --pairs)",
            "sentence": sentence, "n_folds": crossval.n_folds,
            "cv_balanced_accuracy": crossval.balanced_accuracy[head],
            "cv_balanced_accuracy_ci": [low, high],
            "balanced_accuracy": measured.balanced_accuracy, "balanced_accuracy_ci": ci,
            "cpu_time_relative_to_best_single": ratio, "single": recommendation,
            "combination": record}


def mention_best_combination(recommendation: dict[str, Any],
                             combinations: list[RankedFile]) -> dict[str, Any]:
    """Cheap mode: the single-backbone ``recommendation`` with the best combination by featlt's
    score named after it (no head was measured, so no combination is recommended)."""
    top = top_combinations(combinations, 1)
    if not top:
        return recommendation
    row, combination = top[0], top[0].combination
    assert combination is not None  # top_combinations returns combination rows
    return {**recommendation, "sentence": recommendation["sentence"] + (
        f" Best combination by featlt's score: {row.entry.label} ({row.scores['featlt']:.4g}, "
        f"{combination.width} wide); rank with --full to see whether it is reliably better "
        "than one backbone.")}


def _why_single(gains: list[Gain]) -> str:
    """The sentence's tail when no combination is named."""
    paired = [g for g in gains if g.gain is not None]
    if not paired:
        return (" No combination is named: " + "; ".join(g.problem or "" for g in gains)
                if gains else "")
    top = max(paired, key=lambda g: g.gain or 0.0)
    assert top.gain is not None and top.interval is not None
    return (f" No combination is reliably better: the best, {top.label}, gains "
            f"{100 * top.gain:+.1f} points [{100 * top.interval[0]:+.1f}, "
            f"{100 * top.interval[1]:+.1f}] by cross-validation, an interval that includes 0 or "
            "lies below it, so the single backbone (cheaper at inference) stays.")
