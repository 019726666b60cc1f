"""``featlt rank``: rank backbones (feature files) for long-tailed data, and check the ranking.

:func:`rank_files` scores every file (cheap mode, :mod:`featlt.rank.scoring`), adds the static
baselines (:mod:`featlt.extractors.static_baselines`), in full mode fits the heads
(:mod:`featlt.rank.measured`) and, with ``cv_folds`` K > 0, cross-validates them over the
training view (:mod:`featlt.rank.crossval`), sorts, validates each score against the measured
ranking (:mod:`featlt.rank.validation`) when asked, and recommends one backbone and head with
how sure the evidence is (:mod:`featlt.rank.recommend`). The document it returns is what
``--json`` prints.

With ``config.pairs`` (``--pairs``) the combinations of the files are ranked beside them: timed
(:mod:`featlt.rank.cost`), scored in memory (:mod:`featlt.rank.pairs`), in full mode the top ones
written as combined stores (:mod:`featlt.rank.combined`), fitted and cross-validated like files,
and named by the recommendation only when reliably better (:mod:`featlt.rank.combination_pick`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from featlt.data.protocol import Protocol, resolve_view
from featlt.errors import FeatltError
from featlt.extractors.static_baselines import static_baselines
from featlt.rank.combination_pick import mention_best_combination, recommend_combination
from featlt.rank.combined import write_combination
from featlt.rank.cost import TIMING_BATCH, TIMING_REPEATS, time_forward
from featlt.rank.crossval import CrossValidatedPick, cross_validate
from featlt.rank.inputs import open_inputs, require_same_images
from featlt.rank.measured import measure, measured_head
from featlt.rank.model import (
    KIND,
    OPTIONAL_SCORES,
    SCORE_COLUMNS,
    VERSION,
    Measured,
    RankConfig,
    RankedFile,
    RankInput,
    defined,
    needed_optional,
    sort_key,
)
from featlt.rank.pairs import (
    PairContext,
    pair_members,
    pair_optional,
    rank_combinations,
    top_combinations,
)
from featlt.rank.quality import (
    held_scores,
    missing_scores,
    quality_notes,
    quality_record,
    saturated_scores,
)
from featlt.rank.recommend import recommend
from featlt.rank.scoring import RANK_AVERAGES, add_relative_scores, score_file
from featlt.rank.validate_rows import validate_rows
from featlt.run_record import run_record
from featlt.runtime import to_jsonable
from featlt.store.feature_store import FeatureStore


def _score_entry(entry: RankInput, protocol: Any, separability_config: Any, device: str,
                 threads: int | None, config: RankConfig,
                 memory_budget_mb: float | None = None) -> RankedFile:
    # --pairs: every single file also gets what every combination gets (the ridge probe)
    optional = needed_optional((*config.optional, *(pair_optional() if config.pairs else ())))
    scored = score_file(entry.path, protocol, separability_config, device, threads,
                        optional=optional, seed=config.seed, memory_budget_mb=memory_budget_mb)
    try:
        static = static_baselines(entry.provenance)
        params, top1, source = float(static.params), static.imagenet_top1, static.source
    except FeatltError as err:  # no backbone record (e.g. synthetic features): both absent
        params, top1, source = None, None, str(err)
    # NaN or inf (a score undefined on this file) becomes None: missing, never 0
    scores = {name: defined(value) for name, value in
              {**scored.scores, "params": params, "imagenet_top1": top1}.items()}
    return RankedFile(entry=entry, scores=scores, static_source=source,
                      report=scored.report, seconds=scored.seconds)


def _check_budget_mode(config: RankConfig, budget_mb: float) -> None:
    """Refuse what ``--memory-budget`` cannot keep: the modes that hold features in memory."""
    held = [flag for flag, on in (("--full", config.full), ("--pairs", config.pairs is not None),
                                  (f"--with {','.join(config.optional)}", bool(config.optional)))
            if on]
    if held:
        raise FeatltError(
            f"--memory-budget {budget_mb:g}: {', '.join(held)} "
            f"{'needs' if len(held) == 1 else 'need'} the features in memory; rank "
            "under a budget in cheap mode (leave them out), and fit heads under a budget with "
            "`featlt fit-classifier FILE --memory-budget MB`")


def rank_files(
    paths: list[Path], protocol: Any = None, config: RankConfig | None = None,
    separability_config: Any = None, device: str = "auto", threads: int | None = None,
    log: Any = None, memory_budget_mb: float | None = None,
) -> dict[str, Any]:
    """Rank the feature files; returns the JSON-able ranking document.

    Args:
        protocol: the index view (:class:`featlt.data.protocol.Protocol`) applied to every file.
        log: called with a line of progress per file (None: silent).
        memory_budget_mb: score every file from training rows read chunk by chunk under it
            (the separability report and SFDA stream); cheap mode only (``--full``,
            ``--pairs`` and ``--with`` hold features in memory and are refused with it).
    """
    from featlt.separability.evaluate import SeparabilityConfig  # torch and faiss: load late

    config = config or RankConfig()
    config.check()
    if memory_budget_mb is not None:
        _check_budget_mode(config, memory_budget_mb)
    protocol = protocol or Protocol(seed=config.seed)
    separability_config = separability_config or SeparabilityConfig(seed=config.seed)
    inputs, notes = open_inputs(list(paths), protocol.test_split, need_test=config.full,
                                distinct=config.pairs is not None)
    require_same_images(inputs, protocol, with_test=config.full)
    members: list[RankInput] = []
    if config.pairs is not None:
        members, pair_notes = pair_members(inputs, config.pairs)
        notes += pair_notes
    rows: list[RankedFile] = []
    picks: dict[str, CrossValidatedPick] = {}  # label -> its cross-validated pick (--cv-folds K)
    for entry in inputs:
        row = _score_entry(entry, protocol, separability_config, device, threads, config,
                           memory_budget_mb)
        if config.full:
            _measure_row(row, protocol, config, device, picks, log)
        rows.append(row)
        if log is not None:
            log(_progress(row, picks.get(entry.label)))
    singles = list(rows)
    combinations: list[RankedFile] = []
    pairs_record: dict[str, Any] | None = None
    if config.pairs is not None:
        combinations, pairs_record = _rank_pairs(
            rows, members, protocol, config, separability_config, device, threads, notes, log)
        if config.full:  # the top combinations by featlt's score, over singles and all
            add_relative_scores([*rows, *combinations])
            chosen = {id(r) for r in top_combinations(combinations, config.pairs.top)}
            combinations = [_fit_combination(r, protocol, config, device, picks, log)
                            if id(r) in chosen else r for r in combinations]
        rows += combinations
    add_relative_scores(rows)  # scores relative to the ranked set, once every file is scored
    rows.sort(key=lambda r: sort_key(r, config.by))
    missing, saturated = missing_scores(rows), saturated_scores(rows)
    notes += quality_notes(missing, saturated, config.by, held_scores(rows))
    columns = [c for c in SCORE_COLUMNS if any(c in r.scores for r in rows)]
    for row in combinations:  # a score a combination does not have is null, never 0
        for name in columns:
            row.scores.setdefault(name, None)
    measured = [r for r in rows if r.measured is not None]
    document: dict[str, Any] = {
        "kind": KIND, "version": VERSION, "run": run_record(), "config": _config_record(config),
        "view": singles[0].report["input"]["view"], "columns": columns,
        "rows": [_row_record(r, picks) for r in rows],
        **quality_record(missing, saturated),
        # full separability reports of the single files (a combination's partial record is in
        # pairs.scored)
        "separability": {r.entry.label: r.report for r in singles}, "notes": notes,
    }
    if pairs_record is not None:
        pairs_record["scored"] = {r.entry.label: {"seconds": r.seconds,
                                                  "timings": r.report["timings"],
                                                  "candidate_scores": r.report["candidate_scores"]}
                                  for r in combinations}
        document["pairs"] = pairs_record
    if config.validate and len(measured) > 1:
        document["validation"] = validate_rows(measured, config.n_bootstrap, config.seed)
    elif config.validate:
        notes.append("--validate: a single backbone has no ranking to validate")
    ordered = [r for r in rows if r.combination is None]  # the singles, in table order
    document["recommendation"] = recommend(ordered, config, [picks[r.entry.label] for r in
                                                             ordered] if picks else None)
    if combinations and not config.full:
        document["recommendation"] = mention_best_combination(document["recommendation"],
                                                              combinations)
    fitted = [r for r in rows if r.combination is not None and r.measured is not None]
    if fitted and picks:
        document["recommendation"] = recommend_combination(
            document["recommendation"], ordered, [picks[r.entry.label] for r in ordered], fitted,
            [picks[r.entry.label] for r in fitted], protocol, config.n_bootstrap, config.seed)
    elif fitted:
        notes.append("--pairs --full --cv-folds 0: a combination is named only when its "
                     "cross-validated gain over the best single backbone is reliable, so with "
                     "no cross-validation the recommendation is a single backbone; use "
                     "--cv-folds K")
    return to_jsonable(document)


def _measure_row(row: RankedFile, protocol: Any, config: RankConfig, device: str,
                 picks: dict[str, CrossValidatedPick], log: Any) -> None:
    """Full mode on one row: cross-validate (``--cv-folds K``), then fit and measure its heads."""
    entry = row.entry
    with FeatureStore(entry.path) as store:
        view_record = resolve_view(store, protocol).record()
    # cross-validation first: a class with fewer rows than folds is refused before anything
    # is fitted
    crossval = None if not config.cv_folds else cross_validate(
        entry, protocol, view_record, config.heads_dir, config.heads, config.cv_folds,
        device, config.n_bootstrap, config.seed, log=log)
    row.measured = measure(entry, protocol, view_record, config.heads_dir, config.heads, device,
                           config.reuse_summaries, log=log)
    if crossval is not None:
        picks[entry.label] = CrossValidatedPick(crossval, _picked_head(
            entry, row.measured, crossval.best, protocol.test_split))


def _fit_combination(row: RankedFile, protocol: Any, config: RankConfig, device: str,
                     picks: dict[str, CrossValidatedPick], log: Any) -> RankedFile:
    """Full mode on a combination: written as a combined store (or reused), then measured."""
    assert config.pairs is not None  # called with --pairs only
    written = write_combination(row, config.heads_dir, config.pairs.max_width,
                                protocol.test_split, log=log)
    _measure_row(written, protocol, config, device, picks, log)
    if log is not None:
        log(_progress(written, picks.get(written.entry.label)))
    return written


def _rank_pairs(
    singles: list[RankedFile], members: list[RankInput], protocol: Any, config: RankConfig,
    separability_config: Any, device: str, threads: int | None, notes: list[str], log: Any,
) -> tuple[list[RankedFile], dict[str, Any]]:
    """``--pairs``: time every single file's backbone, score the combinations of ``members``;
    returns their rows and the document's ``pairs`` record (adds notes)."""
    from featlt.cluster.faiss_ops import resolve_faiss

    assert config.pairs is not None  # called with --pairs only
    times = {row.entry.label: time_forward(row.entry.provenance, row.entry.label, threads)
             for row in singles}
    for row in singles:
        row.cpu_seconds = times[row.entry.label].seconds
    untimed = [t.problem for t in times.values() if t.problem]
    if untimed:
        notes.append("CPU time per image not measured for: " + "; ".join(untimed))
    context = PairContext(separability_config, resolve_faiss(device, threads), device,
                          config.seed, config.pairs.max_width)
    combinations, pair_notes = rank_combinations(members, singles, protocol, config.pairs,
                                                 context, times, log=log)
    notes += pair_notes
    record = {"max_k": config.pairs.max_k, "top": config.pairs.top,
              "max_width": config.pairs.max_width, "members": [e.label for e in members],
              "scores": ["featlt_v1", "logme", "knn", "ncm", *[
                  c for name in pair_optional() for c in OPTIONAL_SCORES[name]],
                  *RANK_AVERAGES],
              "timing": {"batch": TIMING_BATCH, "repeats": TIMING_REPEATS, "threads": threads}}
    return combinations, record


def _picked_head(entry: RankInput, measured: Measured, head: str, test_split: str) -> Measured:
    """The test results of ``head`` among the heads ``measured`` was chosen from (same
    summary: fitted on the whole training view, test scored once)."""
    if head == measured.head:
        return measured
    summary = json.loads(Path(measured.summary).read_text())
    return measured_head(entry, summary, Path(measured.summary), head, test_split,
                         measured.reused)


def _row_record(row: RankedFile, picks: dict[str, CrossValidatedPick]) -> dict[str, Any]:
    """A row of the document; with ``--cv-folds K`` its ``cv`` record (every head's
    cross-validated balanced accuracy and interval, the best head and its test result)."""
    record = row.record()
    pick = picks.get(row.entry.label)
    if pick is not None:
        record["cv"] = {**pick.crossval.record(), "best_head_test": pick.measured.record()}
    return record


def _progress(row: RankedFile, pick: CrossValidatedPick | None = None) -> str:
    def shown(name: str) -> str:
        value = row.scores.get(name)
        return "n/a" if value is None else f"{value:.4f}"
    text = (f"{row.entry.label}: scored in {row.seconds:.1f} s (LogME {shown('logme')}, "
            f"NCM {shown('ncm')})")
    if row.measured is not None:
        text += (f", best head {row.measured.head} balanced accuracy "
                 f"{row.measured.balanced_accuracy:.4f}"
                 + (" (reused)" if row.measured.reused else ""))
    if pick is not None:
        cv = pick.crossval
        text += (f"; {cv.n_folds}-fold cross-validation: best head {cv.best} balanced accuracy "
                 f"{cv.balanced_accuracy[cv.best]:.4f}"
                 + (" (reused)" if cv.reused else f" ({cv.seconds:.1f} s)"))
    return text


def _config_record(config: RankConfig) -> dict[str, Any]:
    record = asdict(config)
    record["heads_dir"] = str(config.heads_dir)
    record["reuse_summaries"] = [str(p) for p in config.reuse_summaries]
    return record
