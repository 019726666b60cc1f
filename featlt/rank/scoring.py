"""Cheap mode: every score of one feature file, from its training (and validation) rows only.

The separability report (:func:`featlt.separability.evaluate.evaluate_separability`) supplies
kNN and NCM balanced accuracy, LogME, class-balanced LogME and GBC with their per-class values;
SFDA (:mod:`featlt.separability.scores.sfda`) is added on the same rows, and ``featlt_v1``, the
formula of :mod:`featlt.rank.formula`, from the report. The test split is never read. ``featlt``
is the candidate :data:`featlt.rank.model.DEFAULT_SCORE` names, set with the relative scores.

Issue 17's candidate scores (docs/methods.md, "Candidate probe scores"):

- opt-in, per file (``optional``, ``featlt rank --with NAME``): ``ridge`` / ``ridge_tail``, the
  class-balanced ridge probe's best leave-one-out balanced accuracy and its tail-third recall
  (:mod:`featlt.separability.scores.ridge_probe`), and ``cv_la``, the 5-fold cross-validated
  logit-adjusted linear head's balanced accuracy (:mod:`featlt.rank.cv_head_score`), both on the
  view's training rows; a score not asked for is absent from the scores (not None);
- relative to the ranked files (:func:`add_relative_scores`, once every file is scored):
  ``logme_ncm``, the mean of LogME's and NCM's ranks among the files (:func:`rank_average`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from featlt.errors import FeatltError
from featlt.rank.cv_head_score import DEFAULT_FOLDS, check_folds, cv_head_score
from featlt.rank.formula import featlt_score
from featlt.rank.model import DEFAULT_SCORE, OPTIONAL_SCORES, RankedFile
from featlt.runtime import to_jsonable

#: ``cv_la``'s fixed number of folds (a score's definition does not change with the run).
CV_LA_FOLDS = DEFAULT_FOLDS
#: The relative scores: column -> the two scores whose ranks among the files it averages.
RANK_AVERAGES: dict[str, tuple[str, str]] = {"logme_ncm": ("logme", "ncm")}


@dataclass(frozen=True)
class FileScores:
    """The scores of one feature file."""

    scores: dict[str, float | None]  # featlt, logme, gbc, sfda, knn, ncm, the report's, and
    # the opt-in candidates asked for (absent when not asked for)
    report: dict[str, Any] = field(repr=False)  # the separability report (JSON form), with
    # "candidate_scores": each opt-in candidate's details and seconds
    seconds: float = 0.0


def check_optional(optional: Sequence[str]) -> tuple[str, ...]:
    """The opt-in score names, validated; unknown names are refused, listing the known ones."""
    unknown = [name for name in optional if name not in OPTIONAL_SCORES]
    if unknown:
        raise FeatltError(f"--with {','.join(unknown)}: unknown optional score; use one of "
                          f"{', '.join(OPTIONAL_SCORES)} (comma-separated or repeated)")
    return tuple(dict.fromkeys(optional))


def score_file(
    path: Any, protocol: Any, separability_config: Any, device: str, threads: int | None,
    optional: Sequence[str] = (), seed: int = 0, memory_budget_mb: float | None = None,
) -> FileScores:
    """Scores of ``path`` under the index view ``protocol`` (training and validation rows).

    Args:
        optional: opt-in candidates to add (:data:`featlt.rank.model.OPTIONAL_SCORES` keys):
            ``ridge`` adds ``ridge`` and ``ridge_tail``, ``cv_la`` adds ``cv_la``; both are
            computed on the view's training rows (the rows of SFDA and the report's kNN / NCM).
        seed: seeds ``cv_la``'s folds and heads.
        memory_budget_mb: the report and SFDA read the training rows chunk by chunk under it
            (:func:`featlt.separability.evaluate.evaluate_store`); the opt-in scores need the
            rows in memory and are refused with it.
    Raises:
        FeatltError: an unknown optional score; ``cv_la`` on a view with a class of fewer
        training rows than its folds.
    """
    from featlt.separability.evaluate import evaluate_store
    from featlt.separability.scores.sfda import sfda

    optional = check_optional(optional)
    if optional and memory_budget_mb is not None:
        raise FeatltError(f"--with {','.join(optional)}: needs the training rows in memory; "
                          "leave it out under --memory-budget")
    start = time.perf_counter()
    report = to_jsonable(evaluate_store(path, protocol, separability_config, device,
                                        threads, memory_budget_mb).record())
    import threadpoolctl

    n_classes = len(report["data"]["class_names"])
    if memory_budget_mb is not None:
        with threadpoolctl.threadpool_limits(limits=threads):
            sfda_score = _streamed_sfda(path, protocol, report, n_classes)
        candidates: dict[str, float | None] = {}
        details: dict[str, Any] = {}
    else:
        X, y = _training_rows(path, protocol)
        with threadpoolctl.threadpool_limits(limits=threads):
            sfda_start = time.perf_counter()
            sfda_score = sfda(X, y, n_classes).score
            report["timings"]["sfda"] = round(time.perf_counter() - sfda_start, 3)
            candidates, details = optional_scores(X, y, report, optional, device, seed)
    raw = report["scores"]
    scores = {
        "featlt_v1": featlt_score(report),
        "logme": raw["logme"],
        "gbc": raw["gbc"],
        "sfda": sfda_score,
        "knn": raw["knn_balanced_accuracy"],
        "ncm": raw["ncm_balanced_accuracy"],
        "logme_balanced": raw["logme_balanced"],
        "knn_tail": raw["knn_tail_recall"],
        "ncm_tail": raw["ncm_tail_recall"],
        "knn_val": raw["knn_balanced_accuracy_val"],
        "ncm_val": raw["ncm_balanced_accuracy_val"],
        **candidates,
    }
    if details:
        report["candidate_scores"] = details
    return FileScores(scores=scores, report=report,
                      seconds=round(time.perf_counter() - start, 2))


def optional_scores(
    X: np.ndarray, y: np.ndarray, report: dict[str, Any], optional: tuple[str, ...], device: str,
    seed: int,
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """The opt-in candidates on the training rows ``X`` (n, D), ``y`` (n,): their values and,
    per name, what they chose and how long they took."""
    from featlt.separability.scores.ridge_probe import ridge_probe

    n_classes = len(report["data"]["class_names"])
    scores: dict[str, float | None] = {}
    details: dict[str, Any] = {}
    if "ridge" in optional:
        start = time.perf_counter()
        ridge = ridge_probe(X, y, n_classes)
        scores.update(ridge=ridge.balanced_accuracy, ridge_tail=ridge.tail_recall)
        details["ridge"] = {
            "balanced_accuracy": ridge.balanced_accuracy, "tail_recall": ridge.tail_recall,
            "best_lambda": ridge.best_lambda, "at_grid_edge": ridge.at_grid_edge,
            "excluded_classes": ridge.excluded_classes, "form": ridge.form, "rows": int(y.size),
            "seconds": round(time.perf_counter() - start, 2)}
    if "cv_la" in optional:
        check_folds(y, CV_LA_FOLDS, "--with cv_la", class_names=report["data"]["class_names"],
                    fix=f"drop --with cv_la, or use a view with at least {CV_LA_FOLDS} training "
                        "rows in every class (e.g. a smaller --imbalance-factor)")
        start = time.perf_counter()
        cv = cv_head_score(X, y, n_classes, n_folds=CV_LA_FOLDS, seed=seed,
                           device="cpu" if device == "auto" else device)
        scores["cv_la"] = cv.balanced_accuracy
        details["cv_la"] = {
            "balanced_accuracy": cv.balanced_accuracy, "tail_recall": cv.tail_recall,
            "fold_balanced_accuracies": cv.fold_balanced_accuracies.tolist(),
            "n_folds": cv.n_folds, "seed": cv.seed, "rows": int(y.size),
            "seconds": round(time.perf_counter() - start, 2)}
    return scores, details


def rank_average(columns: Sequence[Sequence[float | None]]) -> list[float | None]:
    """The mean, per file, of its rank under each column (rank 1 the lowest value, M the
    highest, so higher is better; tied values share their average rank).

    The ranks are taken among the files that have every column; a file missing any (None) gets
    None. The value is relative to the set of files: adding or removing a file can change it.

    Args:
        columns: K columns of M values each (None where a score is undefined).
    Returns:
        M values in [1, M'] (M' the files with every column), or None.
    """
    n = len(columns[0]) if columns else 0
    known = [i for i in range(n) if all(column[i] is not None for column in columns)]
    out: list[float | None] = [None] * n
    if not known:
        return out
    ranks = np.mean([rankdata([float(column[i]) for i in known], method="average")  # type: ignore[arg-type]
                     for column in columns], axis=0)
    for i, value in zip(known, ranks, strict=True):
        out[i] = float(value)
    return out


def add_relative_scores(rows: Sequence[RankedFile]) -> None:
    """Add every :data:`RANK_AVERAGES` score to each row's scores (once every file is scored,
    before sorting); None on a file where one of its two scores is undefined. Then ``featlt``,
    the value of :data:`featlt.rank.model.DEFAULT_SCORE` (which may be one of them)."""
    for name, parts in RANK_AVERAGES.items():
        values = rank_average([[row.scores.get(part) for row in rows] for part in parts])
        for row, value in zip(rows, values, strict=True):
            row.scores[name] = value
    for row in rows:
        row.scores["featlt"] = row.scores.get(DEFAULT_SCORE)


def _streamed_sfda(path: Any, protocol: Any, report: dict[str, Any], n_classes: int) -> float:
    """SFDA of the view's training rows read in the report's chunks (its memory budget plan);
    adds its seconds to the report's timings."""
    from featlt.cluster.rows import StoreRows
    from featlt.data.protocol import resolve_view
    from featlt.separability.scores.sfda import sfda
    from featlt.store.feature_store import FeatureStore

    start = time.perf_counter()
    with FeatureStore(path) as store:
        view = resolve_view(store, protocol)
        rows = StoreRows(store, view.train_split, view.train_rows,
                         report["input"]["memory_budget"]["chunk_rows"],
                         store.info(view.train_split).dim)
        score = sfda(rows, store.labels(view.train_split)[view.train_rows], n_classes).score
    report["timings"]["sfda"] = round(time.perf_counter() - start, 3)
    return score


def _training_rows(path: Any, protocol: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, D) float32 features and (n_train,) labels of the view's training rows."""
    from featlt.data.protocol import resolve_view
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(path) as store:
        view = resolve_view(store, protocol)
        return (store.read(view.train_split, view.train_rows),
                store.labels(view.train_split)[view.train_rows])
