"""Benchmark: does a pair of backbones beat the best single one, and does featlt find it?

    python3 benchmarks/bench_pairs.py --dataset cifar10lt_if100 [--dataset fmnistlt_if100 ...]
    python3 benchmarks/bench_pairs.py --smoke        # synthetic stores, end to end, < 1 min
    python3 benchmarks/bench_pairs.py --dataset cifar10lt_if10 --normalised-only  # beside it

Issue 20's measurement, on the zoo of ``benchmarks/zoo_features.py`` (the views, heads and view
seeds of ``benchmarks/bench_rank.py``, so every single file's heads are reused from its runs):

1. **Full mode with pairs, view seed 0**: :func:`featlt.rank.ranking.rank_files` with
   ``--full --pairs`` (top ``--pairs-top`` 3, 5-fold cross-validation): every single file and
   every pair gets its cheap scores, the top 3 pairs by featlt's frozen default score
   (:data:`featlt.rank.model.DEFAULT_SCORE`) are written as combined stores, fitted and
   cross-validated, and the recommendation names a pair only when its cross-validated gain over
   the best single backbone has an interval above 0.
2. **Three more pairs**, drawn from the other pairs with :data:`PAIR_DRAW_SEED` (committed before
   any run), written as combined stores: the recommendation is checked against pairs the score
   did not choose.
3. **The singles normalised like the pairs**: every single file L2-normalised under the same
   recipe (a one-member ``combine``), so a pair's gain is not the normalisation's.
4. **The seed-pooled truth**: for every view seed (``--view-seeds``, default 0-2) each raw single,
   each normalised single and each of the 6 pairs gets its validation-selected head
   (:func:`featlt.rank.measured.measure`, the heads of ``bench_rank.py``'s ``BENCH_HEADS``, seeded
   by the view seed, reused when fitted before); the measured value is the mean over the seeds of
   the test balanced accuracy, with one paired bootstrap of the test images shared by every set
   and seed (:func:`featlt.rank.resolvable.pooled_resamples`).

Reported per dataset (``results/pairs.json``, with the run record):

- ``recommendation``: what full mode names, its cross-validated gain and interval, and its
  seed-pooled test gain over the best single (raw or normalised, whichever measures higher) with
  the paired-bootstrap interval;
- ``regret_points``: the best measured set (random pairs included) minus the recommendation;
- ``cheap_scores``: every score's resolvable-pair accuracy (Wilson interval) among the raw singles
  and the 6 measured pairs together, with each score's cheap-mode scores taken from step 1 (the
  rank averages over singles and all pairs), and its top-1 regret there;
- ``normalisation``: each single's measured accuracy raw and normalised;
- ``costs``: seconds per step, each pair's scoring seconds and width, each measured pair's CPU
  time per image relative to its cheapest member.
- ``goal``: on CIFAR-10-LT IF100 the recommendation at least 1.5 points ahead of the best single,
  and on every dataset a regret of at most 0.5 points.

Each dataset runs in one turn of the shared heavy lock (``/tmp/featlt-heavy.lock``) per step, so
other heavy jobs can slip in between; everything fitted or written is kept (heads under
``--heads-dir``, combined stores under its ``combined/`` and ``normalised/``, the step-1 document
under ``--work``), so a rerun resumes. CIFAR results are in-sample for the default score (it was
chosen on them); Fashion-MNIST-LT is the check.

Steps 3 and 4 for the normalised singles do not depend on step 1, and every fit is single-threaded
(featlt's heads train on 1 CPU thread): ``--normalised-only`` runs just those, taking no turn of
the heavy lock, so a second process can fit them on the other core while a full run of the same
dataset ranks; the full run then reuses them as it reuses the raw singles' heads. Pair-scoring
seconds measured meanwhile share the machine with it (the quiet timing of one pair is
``benchmarks/bench_pair_scores.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from bench_rank import (
    BENCH_HEADS,
    CACHE,
    PROTOCOLS,
    RESULTS,
    SMOKE,
    SMOKE_HEADS,
    SMOKE_PROTOCOL,
    ZOO_FOLDER,
    complete_files,
    heavy_lock,
    log,
    parse_seeds,
    smoke_stores,
)
from common import finish_record, run_record

#: Seeds the draw of the three pairs the score did not choose (fixed 2026-12-07, before any run).
PAIR_DRAW_SEED = 20261207
N_TOP = 3
N_RANDOM = 3
#: The scores whose ordering of singles and pairs is checked (those every combination gets).
CHEAP_SCORES = ("featlt", "featlt_v1", "logme", "ncm", "knn", "ridge", "ridge_tail")
GOAL = {"gain_points_min": 1.5, "gain_dataset": "cifar10lt_if100", "regret_points_max": 0.5}
NORMALISED_DIR = "normalised"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=sorted(PROTOCOLS))
    parser.add_argument("--view-seeds", type=parse_seeds, default=parse_seeds("0-2"),
                        help="View seeds the truth is pooled over; the first one runs full mode")
    parser.add_argument("--smoke", action="store_true",
                        help="Run end to end on synthetic stores under --work (no zoo)")
    parser.add_argument("--zoo", type=Path, default=CACHE / "zoo")
    parser.add_argument("--heads-dir", type=Path, default=CACHE / "rank-heads")
    parser.add_argument("--work", type=Path, default=None,
                        help="Where each dataset's step-1 ranking document is kept, for a "
                             "rerun to resume (default: ~/.cache/featlt/bench-pairs; --smoke: "
                             "the folder of everything it writes, default a new temporary one)")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "pairs.json")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--normalised-only", action="store_true",
                        help="Only steps 3-4 for the L2-normalised singles, kept under "
                             "--heads-dir for a full run to reuse; takes no turn of the heavy "
                             "lock, to run on the second core beside a full run; writes no "
                             "results")
    args = parser.parse_args(argv)
    if args.smoke:
        if args.dataset:
            parser.error("--smoke runs on synthetic stores: no --dataset")
        work = args.work or Path(tempfile.mkdtemp(prefix="featlt-bench-pairs-smoke-"))
        args.zoo, args.heads_dir, args.work = work / "zoo", work / "heads", work / "work"
        args.output, args.dataset = work / "pairs.json", [SMOKE]
    elif not args.dataset:
        parser.error("--dataset is required (or --smoke)")
    else:
        args.work = args.work or CACHE / "bench-pairs"
    return args


def turn(name: str, args: argparse.Namespace) -> AbstractContextManager[None]:
    """One turn of the shared heavy lock (none for the smoke mode's few seconds of work, and none
    for ``--normalised-only``, which runs beside a full run that holds it)."""
    return nullcontext() if name == SMOKE or args.normalised_only else heavy_lock()


def dataset_files(name: str, args: argparse.Namespace) -> list[Path]:
    """The dataset's complete zoo files (the smoke mode's synthetic stores)."""
    if name == SMOKE:
        return smoke_stores(args.zoo / name)
    files = complete_files(args.zoo / ZOO_FOLDER[name])
    if len(files) < 2:
        raise SystemExit(f"{name}: {len(files)} complete feature sets; run "
                         "benchmarks/zoo_features.py first")
    return files


def protocol_of(name: str, seed: int) -> Any:
    from featlt.data.protocol import Protocol

    return Protocol(**(SMOKE_PROTOCOL if name == SMOKE else PROTOCOLS[name]), seed=seed)


def head_settings(name: str, seed: int, n_bootstrap: int) -> Any:
    from featlt.rank.model import HeadSettings

    return HeadSettings(heads=SMOKE_HEADS if name == SMOKE else BENCH_HEADS, seed=seed,
                        n_bootstrap=n_bootstrap)


def full_mode_with_pairs(name: str, files: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """Step 1: the full-mode ranking of the singles and their pairs on the first view seed
    (kept under ``--work``; reused when it ranked the same files)."""
    from featlt.rank.model import PairSettings
    from featlt.rank.ranking import RankConfig, rank_files
    from featlt.runtime import write_json_atomic

    seed = args.view_seeds[0]
    kept = args.work / name / f"ranking_seed{seed}.json"
    if kept.is_file():
        document = json.loads(kept.read_text())
        if sorted(r["file"] for r in document["rows"] if r.get("combination") is None) == \
                sorted(str(f) for f in files):
            log(f"{name}: reusing the full-mode ranking {kept}")
            return document
    config = RankConfig(full=True, heads_dir=args.heads_dir / name, n_bootstrap=args.bootstrap,
                        cv_folds=args.cv_folds, pairs=PairSettings(top=N_TOP),
                        heads=head_settings(name, seed, args.bootstrap))
    document = rank_files(files, protocol_of(name, seed), config, device=args.device,
                          threads=args.threads, log=lambda line: log(f"{name} {line}"))
    write_json_atomic(kept, document)
    return document


def drawn_pairs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Step 2: :data:`N_RANDOM` combination rows drawn with :data:`PAIR_DRAW_SEED` from those
    full mode did not fit (sorted by label before the draw)."""
    rest = sorted((r for r in document["rows"]
                   if r.get("combination") and r.get("measured") is None),
                  key=lambda r: r["label"])
    rng = np.random.default_rng(PAIR_DRAW_SEED)
    chosen = rng.choice(len(rest), size=min(N_RANDOM, len(rest)), replace=False)
    return [rest[i] for i in sorted(chosen)]


def written_pair(row: dict[str, Any], heads_dir: Path) -> Path:
    """A combination row's combined store, where full mode writes (and reuses) it."""
    from featlt.combine.write import combine_stores
    from featlt.rank.combined import combination_path

    if row["combination"].get("combined_file"):
        return Path(row["combination"]["combined_file"])
    files = tuple(Path(f) for f in row["combination"]["files"])
    path = combination_path(row["label"], files, heads_dir)
    if not path.is_file():
        combine_stores(list(files), path, mode="overwrite")
    return path


def normalised_single(path: Path, heads_dir: Path) -> Path:
    """Step 3: ``path`` L2-normalised under the combination recipe (a one-member combination),
    keyed like the combined stores."""
    from featlt.combine.write import combine_stores
    from featlt.rank.combined import combination_key

    out = heads_dir / NORMALISED_DIR / f"{path.stem}-l2-{combination_key((path,))}.h5"
    if not out.is_file():
        combine_stores([path], out, mode="overwrite", min_members=1)
    return out


def measure_sets(name: str, sets: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """Step 4: every set's validation-selected head for every view seed, pooled.

    Args:
        sets: label -> feature file, M sets.
    Returns:
        ``labels`` (M,), ``measured`` (M,) seed-pooled balanced accuracy, ``interval`` (M, 2),
        ``resampled`` (B, M), ``per_seed`` (S, M), ``heads`` {label: [head per seed]}.
    """
    from featlt.data.protocol import resolve_view
    from featlt.rank.inputs import open_inputs
    from featlt.rank.measured import measure
    from featlt.rank.resolvable import pooled_resamples
    from featlt.store.feature_store import FeatureStore

    labels = list(sets)
    entries, _ = open_inputs(list(sets.values()), protocol_of(name, 0).test_split, need_test=True)
    correct, heads, truth, n_classes = [], {label: [] for label in labels}, None, 0
    for seed in args.view_seeds:
        protocol, settings = protocol_of(name, seed), head_settings(name, seed, args.bootstrap)
        outcomes = []
        for label, entry in zip(labels, entries, strict=True):
            with turn(name, args), FeatureStore(entry.path) as store:
                view = resolve_view(store, protocol)
                n_classes = len(store.info(protocol.test_split).class_names)
                clock = time.perf_counter()
                result = measure(entry, protocol, view.record(), args.heads_dir / name, settings,
                                 args.device, log=lambda line: log(f"{name} {line}"))
            log(f"{name} seed {seed} {label}: {result.head} {result.balanced_accuracy:.4f} "
                f"({'reused' if result.reused else f'{time.perf_counter() - clock:.0f} s'})")
            if truth is None:
                truth = (result.positions, result.labels)
            elif not (np.array_equal(truth[0], result.positions)
                      and np.array_equal(truth[1], result.labels)):
                raise SystemExit(f"{label}, view seed {seed}: scored on other test images")
            outcomes.append(result.predictions == result.labels)
            heads[label].append(result.head)
        correct.append(outcomes)
    assert truth is not None
    pooled = pooled_resamples(truth[1], np.array(correct, dtype=bool), n_classes,
                              args.bootstrap, seed=0)
    return {"labels": labels, "heads": heads, **pooled}


def gain_over(truth: dict[str, Any], label: str, reference: str) -> dict[str, Any]:
    """The seed-pooled test gain of ``label`` over ``reference``, in points, with the 95%
    percentile interval of the paired-bootstrap difference."""
    i, j = truth["labels"].index(label), truth["labels"].index(reference)
    diff = 100 * (truth["resampled"][:, i] - truth["resampled"][:, j])
    return {"over": reference, "points": round(100 * float(truth["measured"][i]
                                                           - truth["measured"][j]), 3),
            "interval_points": [round(float(v), 3) for v in np.nanpercentile(diff, [2.5, 97.5])]}


def cheap_score_check(document: dict[str, Any], truth: dict[str, Any],
                      compared: list[str]) -> dict[str, Any]:
    """Every cheap score's resolvable-pair accuracy and top-1 regret among ``compared`` (the
    raw singles and the measured pairs), against the seed-pooled truth."""
    from featlt.rank.resolvable import pair_accuracy, resolvable_matrix

    index = [truth["labels"].index(label) for label in compared]
    measured = truth["measured"][index]
    better = resolvable_matrix(truth["resampled"][:, index])
    rows = {r["label"]: r for r in document["rows"]}
    out: dict[str, Any] = {"sets": compared, "n_resolvable": int(better.sum()), "scores": {}}
    for score in CHEAP_SCORES:
        column = [rows[label]["scores"].get(score) for label in compared]
        result = pair_accuracy(column, better)
        defined = [k for k, v in enumerate(column) if v is not None]
        if defined:
            top = max(defined, key=lambda k: column[k])
            result["top1"] = compared[top]
            result["top1_regret_points"] = round(100 * float(measured.max() - measured[top]), 3)
        out["scores"][score] = result
    return out


def analyse(name: str, document: dict[str, Any], truth: dict[str, Any], singles: list[str],
            normalised: dict[str, str], pairs: dict[str, str], view_seeds: list[int]
            ) -> dict[str, Any]:
    """The dataset's entry of ``results/pairs.json`` (see the module docstring).

    Args:
        singles: the raw singles' labels; normalised: raw label -> its normalised set's label;
        pairs: pair label -> ``"top"`` (fitted by full mode) or ``"drawn"``.
    """
    value = dict(zip(truth["labels"], truth["measured"].tolist(), strict=True))
    interval = dict(zip(truth["labels"], truth["interval"].tolist(), strict=True))
    single_sets = [*singles, *normalised.values()]
    best_single = max(single_sets, key=lambda label: value[label])
    best_overall = max(truth["labels"], key=lambda label: value[label])
    recommendation = document["recommendation"]
    record = recommendation.get("combination") or {}
    named = record.get("chosen") or recommendation["label"]
    # a single is measured as itself; a pair named by full mode is one of the top pairs
    gain = gain_over(truth, named, best_single) if named in value else None
    best_pair = max(pairs, key=lambda label: value[label])
    regret = round(100 * (value[best_overall] - value[named]), 3) if named in value else None
    rows = {r["label"]: r for r in document["rows"]}
    return {
        "sets": [{"label": label, "kind": ("pair, " + pairs[label]) if label in pairs else (
            "single, L2-normalised" if label in normalised.values() else "single"),
            "balanced_accuracy": value[label], "balanced_accuracy_ci": interval[label],
            "heads_per_seed": truth["heads"][label]} for label in truth["labels"]],
        "view_seeds": view_seeds,
        "best_single": {"label": best_single, "balanced_accuracy": value[best_single]},
        "best_overall": {"label": best_overall, "balanced_accuracy": value[best_overall]},
        "recommendation": {
            "named": named, "is_pair": record.get("chosen") is not None,
            "head": recommendation.get("head"), "sentence": recommendation["sentence"],
            "cross_validated_gains": record.get("gains"),
            "test_gain_over_best_single": gain,
        },
        "best_measured_pair": {"label": best_pair, "kind": pairs[best_pair],
                               "gain_over_best_single": gain_over(truth, best_pair, best_single)},
        "regret_points": regret,
        "cheap_scores": cheap_score_check(document, truth, [*singles, *pairs]),
        "normalisation": {raw: {"raw": value[raw], "l2": value[l2],
                                "l2_minus_raw_points": round(100 * (value[l2] - value[raw]), 3)}
                          for raw, l2 in normalised.items()},
        "pairs_scored": {label: {"seconds": rows[label]["score_seconds"],
                                 "width": rows[label]["combination"]["width"],
                                 "cpu_time_relative": rows[label]["combination"][
                                     "cpu_time_relative"]}
                         for label in rows if rows[label].get("combination")},
        "goal": {
            "gain_at_least_1.5_points": (None if name != GOAL["gain_dataset"] or gain is None
                                         else gain["points"] >= GOAL["gain_points_min"]),
            "regret_at_most_0.5_points": (None if regret is None
                                          else regret <= GOAL["regret_points_max"]),
        },
    }


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-4 and the analysis of one dataset; ``costs`` holds each step's seconds."""
    costs: dict[str, float] = {}
    clock = time.perf_counter()
    files = dataset_files(name, args)
    with turn(name, args):
        document = full_mode_with_pairs(name, files, args)
    costs["full_mode_with_pairs_seconds"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    heads_dir = args.heads_dir / name
    singles = {r["label"]: Path(r["file"]) for r in document["rows"]
               if r.get("combination") is None}
    top = [r for r in document["rows"] if r.get("combination") and r.get("measured")]
    drawn = drawn_pairs(document)
    with turn(name, args):
        pairs = {r["label"]: written_pair(r, heads_dir) for r in [*top, *drawn]}
        normalised = {label: normalised_single(path, heads_dir) for label, path in singles.items()}
    costs["write_sets_seconds"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    sets = {**singles, **{f"{label} (L2)": p for label, p in normalised.items()}, **pairs}
    truth = measure_sets(name, sets, args)
    costs["truth_seconds"] = round(time.perf_counter() - clock, 1)
    result = analyse(name, document, truth, list(singles),
                     {label: f"{label} (L2)" for label in singles},
                     {**{r["label"]: "top" for r in top}, **{r["label"]: "drawn" for r in drawn}},
                     list(args.view_seeds))
    result["costs"] = {**costs, "pairs_scoring_seconds_total": round(sum(
        p["seconds"] for p in result["pairs_scored"].values()), 1)}
    result["pair_draw_seed"] = PAIR_DRAW_SEED
    result["view"] = document["view"]
    return result


def fit_normalised_only(name: str, args: argparse.Namespace) -> None:
    """Steps 3 and 4 for the normalised singles alone (``--normalised-only``): their combined
    stores and heads are kept where :func:`run_dataset` finds and reuses them."""
    clock = time.perf_counter()
    heads_dir = args.heads_dir / name
    sets = {f"{path.stem} (L2)": normalised_single(path, heads_dir)
            for path in dataset_files(name, args)}
    measure_sets(name, sets, args)
    log(f"{name}: {len(sets)} normalised singles fitted for view seeds "
        f"{list(args.view_seeds)} in {time.perf_counter() - clock:.0f} s, kept for the full run")


def main(argv: list[str] | None = None) -> None:
    from featlt.rank.model import DEFAULT_SCORE
    from featlt.runtime import write_json_atomic

    args = parse_args(argv)
    if args.normalised_only:
        for name in args.dataset:
            fit_normalised_only(name, args)
        return
    record = run_record(sys.argv)
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    for name in args.dataset:
        results[name] = run_dataset(name, args)
        results["default_score"] = DEFAULT_SCORE
        results["heads"] = list(SMOKE_HEADS if name == SMOKE else BENCH_HEADS)
        results["goal"] = GOAL
        results.setdefault("runs", {})[name] = finish_record(record)
        write_json_atomic(args.output, results)
        entry = results[name]
        log(f"{name}: written to {args.output}; recommendation {entry['recommendation']['named']}"
            f", regret {entry['regret_points']} points, goal {entry['goal']}")


if __name__ == "__main__":
    main()
