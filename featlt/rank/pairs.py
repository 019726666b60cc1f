"""``featlt rank --pairs``: the combinations of the ranked files, enumerated and scored in memory.

[featlt design, docs/methods.md "Ranking combinations"] Every pair of the given files is scored
as the combined feature set ``featlt combine`` would write (each member's rows L2-normalised,
concatenated: :func:`featlt.combine.arrays.combine_members`), without writing it; each input is
read once (:func:`featlt.combine.arrays.read_member`) and every combination is built from those
arrays. With ``max_k`` K > 2 combinations grow greedily: the ``top`` N combinations of k - 1
members by featlt's score (:data:`featlt.rank.model.DEFAULT_SCORE`, relative scores taken over
the singles and the combinations scored so far) are each extended by every other file, up to K.

A combination gets LogME, kNN and NCM (with their per-class recalls, so ``featlt_v1``), the
leave-one-out ridge probe (``ridge``, ``ridge_tail``) and whatever else the default score needs
(``cv_la`` when it is the default), each computed exactly as for a single file on the view's
training rows (:mod:`featlt.separability.scores`, the separability report's settings); no SFDA,
GBC, clustering, density or split plan: those are absent from its scores, so missing in the
table, never 0. Relative scores (rank averages) are set later over singles and combinations
together (:func:`featlt.rank.scoring.add_relative_scores`). A combination wider than the width
bound is skipped with a note.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from featlt.combine.arrays import MemberArrays, combine_members, read_member
from featlt.errors import FeatltError
from featlt.extractors.static_baselines import static_baselines
from featlt.rank.cost import ForwardTime, combination_seconds, relative_cost
from featlt.rank.formula import featlt_score
from featlt.rank.model import (
    Combination,
    PairSettings,
    RankedFile,
    RankInput,
    defined,
    needed_optional,
    sort_key,
)
from featlt.rank.scoring import add_relative_scores, optional_scores
from featlt.runtime import to_jsonable
from featlt.store.feature_store import FeatureStore
from featlt.store.members import feature_identity, is_combined


def pair_optional() -> tuple[str, ...]:
    """The opt-in scores every combination gets: the ridge probe and the one the default needs."""
    return needed_optional(("ridge",))


def pair_members(inputs: Sequence[RankInput], settings: PairSettings) -> tuple[
    list[RankInput], list[str]
]:
    """The inputs that can be members of a combination, and notes.

    A combined store given as input is ranked as it is, not used as a member (its rows are
    already normalised per member).

    Raises:
        FeatltError: a combined input wider than ``settings.max_width`` (naming width and
            limit); fewer than two files left to combine.
    """
    members, notes = [], []
    for entry in inputs:
        if not is_combined(entry.provenance):
            members.append(entry)
            continue
        with FeatureStore(entry.path) as store:
            width = store.info(store.splits[0]).dim
        if width > settings.max_width:
            raise FeatltError(
                f"feature file {entry.path}: a combination {width} wide ({entry.describe()}), "
                f"over --max-width {settings.max_width}; raise --max-width if a head that wide "
                "fits your memory and time, or rank its members with --pairs instead")
        notes.append(f"{entry.label} is already a combined feature set: ranked as given, not "
                     "combined again")
    if len(members) < 2:
        raise FeatltError(
            f"featlt rank --pairs: needs at least 2 feature files to combine, got {len(members)}"
            f" ({', '.join(str(e.path) for e in members) or 'none'}); pass two or more "
            "FEATURES.h5 of one dataset, or rank without --pairs")
    return members, notes


@dataclass(frozen=True)
class PairContext:
    """What scoring a combination needs besides its members."""

    separability_config: Any  # featlt.separability.evaluate.SeparabilityConfig
    faiss: Any  # featlt.cluster.faiss_ops.FaissContext
    device: str
    seed: int
    max_width: int


def score_combination(members: Sequence[MemberArrays], entries: Sequence[RankInput],
                      times: Sequence[ForwardTime], context: PairContext) -> RankedFile:
    """One combination's row: its scores (module docstring), parameters and cost.

    Args:
        members: the k member files read by :func:`read_member` under one view, member i's
            training rows (n_train, D_i) in ascending source position; the scores are computed
            on their combination, (n_train, sum D_i) float32.
        entries: (k,) the members as ranked inputs, in the same order.
        times: (k,) each member's CPU time per image (:func:`featlt.rank.cost.time_forward`).
    Returns:
        The row: ``scores`` (absent: the scores not computed on combinations), ``report`` (the
        part of a separability report the scores read: ``data`` with the (C,) training counts
        and shot groups, ``per_class`` (C,) kNN and NCM recalls, ``knn`` with the (C,) queries
        per class, ``timings``, ``candidate_scores``), ``combination`` and ``cpu_seconds``.
    Raises:
        FeatltError: the members cannot be combined
            (:func:`featlt.combine.arrays.combine_members`).
    """
    import threadpoolctl

    from featlt.evaluation.metrics import mean_over_classes
    from featlt.evaluation.shots import shot_groups
    from featlt.separability.scores.common import check_xy
    from featlt.separability.scores.logme import logme_from_moments
    from featlt.separability.scores.moments import feature_moments
    from featlt.separability.scores.neighbours import (
        fit_ncm,
        knn_evaluate,
        ncm_loo,
        stratified_query_rows,
    )

    start = time.perf_counter()
    arrays = combine_members(members, context.max_width)
    X, y = check_xy(arrays.X_train, arrays.y_train, "combined training features")
    n_classes = len(arrays.class_names)
    config = context.separability_config
    timings: dict[str, float] = {}
    with threadpoolctl.threadpool_limits(limits=context.faiss.threads):
        clock = time.perf_counter()
        moments = feature_moments(X, y, n_classes)
        logme = logme_from_moments(moments).score
        timings["logme"] = round(time.perf_counter() - clock, 3)
        counts = moments.counts
        groups = shot_groups(counts)
        clock = time.perf_counter()
        queries = stratified_query_rows(y, n_classes, config.knn_queries, groups["few"],
                                        seed=config.seed)
        knn, _ = knn_evaluate(X, y, n_classes, queries, context.faiss, k=config.knn_k,
                              metric=config.knn_metric, mean=moments.mean)
        timings["knn"] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()
        ncm = ncm_loo(X, y, n_classes, fit=fit_ncm(X, y, n_classes, moments.mean))
        timings["ncm"] = round(time.perf_counter() - clock, 3)
        tail = groups["tail_third"]
        report = to_jsonable({
            "input": {"features": arrays.provenance["features"],
                      "view": arrays.provenance["view"]},
            "data": {"n_train": int(X.shape[0]), "dim": int(X.shape[1]),
                     "n_classes": n_classes, "class_names": list(arrays.class_names),
                     "train_counts": counts, "shot_groups": groups},
            "per_class": {"knn_recall": knn.per_class_recall, "ncm_recall": ncm.per_class_recall},
            "knn": {"k": knn.k, "metric": config.knn_metric,
                    "queries_per_class": knn.queries_per_class},
            "timings": timings,
        })
        candidates, details = optional_scores(X, y, report, pair_optional(), context.device,
                                              context.seed)
    report["candidate_scores"] = details
    scores = {"featlt_v1": featlt_score(report), "logme": logme,
              "knn": knn.balanced_accuracy, "ncm": ncm.balanced_accuracy,
              "knn_tail": None if tail is None else mean_over_classes(
                  knn.per_class_recall[tail]),
              "ncm_tail": None if tail is None else mean_over_classes(
                  ncm.per_class_recall[tail]),
              **candidates}
    provenance = arrays.provenance["features"]
    try:
        static = static_baselines(provenance)
        scores["params"], source = float(static.params), static.source
    except FeatltError as err:  # a member without a backbone record (e.g. synthetic features)
        scores["params"], source = None, str(err)
    label = "+".join(e.label for e in entries)
    # a path no file holds (the row's file is null) until full mode writes the combination
    entry = RankInput(path=entries[0].path.parent / f"{label}.h5", label=label,
                      provenance=provenance, identity=feature_identity(provenance),
                      backbone=provenance["backbone"], has_test=arrays.X_test is not None)
    return RankedFile(
        entry=entry, scores={name: defined(value) for name, value in scores.items()},
        static_source=source,
        report=report, seconds=round(time.perf_counter() - start, 2),
        combination=Combination(members=tuple(e.label for e in entries),
                                files=tuple(e.path for e in entries),
                                width=int(X.shape[1]), cpu_relative=relative_cost(times)),
        cpu_seconds=combination_seconds(times))


def rank_combinations(
    entries: Sequence[RankInput], singles: Sequence[RankedFile], protocol: Any,
    settings: PairSettings, context: PairContext, times: dict[str, ForwardTime],
    log: Callable[[str], None] | None = None,
) -> tuple[list[RankedFile], list[str]]:
    """Score the pairs of ``entries`` and, up to ``settings.max_k`` members, their greedy growth.

    Args:
        entries: the M files that may be members (:func:`pair_members`).
        singles: every single file's row (for the relative scores that choose what grows).
        times: label -> CPU time per image of each member.
    Returns:
        (the combinations' rows in scoring order, notes: the combinations skipped as too wide).
    """
    read = {e.label: read_member(e.path, protocol) for e in entries}  # each file read once
    widths = {label: m.arrays.X_train.shape[1] for label, m in read.items()}
    scored: dict[tuple[int, ...], RankedFile] = {}
    too_wide: list[str] = []
    candidates = list(itertools.combinations(range(len(entries)), 2))
    for size in range(2, settings.max_k + 1):
        if size > 2:
            kept = _best(scored, singles, size - 1, settings.top)
            candidates = sorted({tuple(sorted((*combo, j))) for combo in kept
                                 for j in range(len(entries)) if j not in combo})
        for combo in candidates:
            members = [entries[i] for i in combo]
            width = sum(widths[e.label] for e in members)
            if width > settings.max_width:
                too_wide.append(f"{'+'.join(e.label for e in members)} ({width})")
                continue
            row = score_combination([read[e.label] for e in members], members,
                                    [times[e.label] for e in members], context)
            scored[combo] = row
            if log is not None:
                log(f"{row.entry.label}: scored in {row.seconds:.1f} s ({width} wide, LogME "
                    f"{_shown(row.scores.get('logme'))}, NCM {_shown(row.scores.get('ncm'))})")
    notes = [f"{len(too_wide)} combination(s) wider than --max-width {settings.max_width} "
             f"skipped: {', '.join(too_wide)}"] if too_wide else []
    return list(scored.values()), notes


def _best(scored: dict[tuple[int, ...], RankedFile], singles: Sequence[RankedFile], size: int,
          top: int) -> list[tuple[int, ...]]:
    """The ``top`` combinations of ``size`` members by featlt's score (relative scores over
    the singles and every combination scored so far)."""
    add_relative_scores([*singles, *scored.values()])
    ordered = sorted((combo for combo in scored if len(combo) == size),
                     key=lambda combo: sort_key(scored[combo], "featlt"))
    return ordered[:top]


def top_combinations(rows: Sequence[RankedFile], top: int) -> list[RankedFile]:
    """The ``top`` combination rows by featlt's score (the default score,
    :data:`featlt.rank.model.DEFAULT_SCORE`), best first; a
    combination without that score is not chosen."""
    ordered = sorted((r for r in rows if r.combination is not None
                      and r.scores.get("featlt") is not None),
                     key=lambda r: sort_key(r, "featlt"))
    return ordered[:top]


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

