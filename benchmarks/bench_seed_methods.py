"""The seed methods (DLSA, CWS, CIBL) on CIFAR-10-LT, each next to its base and to the strongest
established head, with a balanced-data ceiling: ``results/seed_methods_cifar10lt.json``.

Runs in pieces so partial results survive a busy machine: every (cell, seed, part) is written to
``--parts`` as soon as it is done, and ``--summarise`` compiles whatever is there into the results
file and the CIBL lambda plot. Typical use (each piece under the shared lock):

    python3 benchmarks/bench_seed_methods.py --cell lite0/if100 --seeds 0 1 2 3 4
    python3 benchmarks/bench_seed_methods.py --cell lite0/if100 --part ceiling --seeds 0 1 2
    python3 benchmarks/bench_seed_methods.py --summarise

Protocol: ``cao2019`` long-tailed train view (fixed), validation 20 per class outside the subset
drawn with the seed, a fixed balanced test subset of 500 per class (5,000 images). The seed also
sets head initialisation and batch order. Everything is chosen on validation; test is scored
once per fitted head. Bases: DLSA at depth 0 (its final head on all rows), CWS's linear
logit-adjusted head without splitting (same grid), CIBL with lambda 0 (same projection + cosine
head). "Strongest established": the best on validation of every registry head that is not a seed
method (12 heads, each selected on its own grid first). A method "beats" another when the mean
paired difference of balanced accuracy is >= 0.3 points and either every paired difference is
positive or the mean exceeds two standard errors.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, finish_record, run_record

FEATURES = Path.home() / ".cache" / "featlt" / "features"
STORES = {"lite0": FEATURES / "cifar10-efficientnet-lite0-160.h5",
          "lite2": FEATURES / "cifar10-efficientnet-lite2-160.h5"}
VIEW_STORES = {"lite0/if100": FEATURES / "cifar10lt100-lite0-160-views2.h5",
               "lite0/if10": FEATURES / "cifar10lt10-lite0-160-views2.h5"}
CELLS = {"lite0/if100": ("lite0", 100.0, None), "lite0/if10": ("lite0", 10.0, None),
         "lite2/if100": ("lite2", 100.0, None), "lite2/if10": ("lite2", 10.0, None),
         "lite0/cifar10lt500": ("lite0", 100.0, 500)}
PARTS = ("dlsa", "cws", "cibl", "established", "ceiling")
SEED_METHODS = ("dlsa", "cws", "cibl")
CIBL_PLOT_LAMBDAS = (0.0, 0.5, 2.0)  # lambda 0 is the base, the others the registry grid
TEST_PER_CLASS = 500
METRIC_KEYS = ("balanced_accuracy", "head_third", "mid_third", "tail_third", "many", "medium",
               "few")
RESULT = REPO / "results" / "seed_methods_cifar10lt.json"
PLOT = REPO / "results" / "seed_methods_cibl_lambda.png"
PARTS_DIR = Path.home() / ".cache" / "featlt" / "bench" / "seed_methods"


# ------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=1)
def load_cell(cell: str, seed: int, balanced: bool = False) -> Any:
    """Arrays of a cell for a seed (validation draw); ``balanced``: the ceiling's training set
    of the long-tailed subset's size, from the same store. Kept for the next call, so the parts
    of one seed read the store once (the heads copy their inputs, never change them)."""
    from featlt.data.protocol import Protocol, load_arrays
    from featlt.store.feature_store import FeatureStore

    backbone, imbalance, n_max = CELLS[cell]
    protocol = Protocol(profile="cao2019", imbalance_factor=imbalance, n_max=n_max,
                        test_per_class=TEST_PER_CLASS, seed=seed)
    with FeatureStore(STORES[backbone]) as store:
        arrays = load_arrays(store, protocol)
        if balanced:
            per_class = round(arrays.y_train.size / len(arrays.class_names))
            arrays = load_arrays(store, Protocol(
                profile="balanced", balanced_per_class=per_class, n_max=n_max,
                test_per_class=TEST_PER_CLASS, seed=seed))
    return arrays


def stored_views(cell: str, arrays: Any) -> tuple[np.ndarray | None, str]:
    """Augmented views (n_train, V, D) of the cell's training rows from the views store, aligned
    by source position; ``(None, why)`` when there is none."""
    from featlt.errors import FeatltError
    from featlt.store.feature_store import FeatureStore

    path = VIEW_STORES.get(cell)
    if path is None or not path.is_file():
        return None, f"no views store for {cell} ({path}): feature-space noise views"
    try:
        store = FeatureStore(path)
    except FeatltError as err:  # an incomplete or locked extraction
        return None, f"views store {path} unusable ({err}): feature-space noise views"
    with store:
        position = {int(p): i for i, p in enumerate(store.source_index("train"))}
        wanted = arrays.view.train_rows  # rows of the full store's train split = positions
        with FeatureStore(STORES[CELLS[cell][0]]) as full:
            sources = full.source_index("train")[wanted]
        missing = [int(s) for s in sources if int(s) not in position]
        if missing:
            return None, f"views store {path} lacks {len(missing)} training rows: noise views"
        order = np.array([position[int(s)] for s in sources])
        views = store.read("train", np.sort(order), array="views")
        views = views[np.argsort(np.argsort(order))]
    return views.astype(np.float32), f"store views from {path.name}"


def selection_data(arrays: Any, views: np.ndarray | None = None) -> Any:
    from featlt.heads.selection import SelectionData

    return SelectionData(arrays.X_train, arrays.y_train, arrays.X_val, arrays.y_val,
                         arrays.train_counts, views)


# ------------------------------------------------------------------------------- scoring


def test_metrics(head: Any, arrays: Any) -> dict[str, Any]:
    from featlt.evaluation.metrics import evaluate

    metrics = evaluate(arrays.y_test, head.predict_proba(arrays.X_test), arrays.train_counts,
                       n_bootstrap=0)
    return {k: metrics[k] for k in METRIC_KEYS}


def val_balanced_accuracy(head: Any, arrays: Any) -> float:
    from featlt.heads.selection import val_score

    return val_score(head.logits(arrays.X_val), arrays.y_val)[0]


def select(name: str, data: Any, seed: int) -> tuple[Any, dict[str, Any]]:
    """A registry head selected on validation: ``(head, record)`` with fit seconds (selection
    included) and the chosen point."""
    from featlt.heads.selection import select_head

    result = select_head(name, data, device="cpu", seed=seed)
    return result, {"head": name, "fit_seconds": result.fit_seconds,
                    "selected": result.selected, "val_balanced_accuracy": result.val[
                        "balanced_accuracy"]}


def select_grid(build: Any, grid: dict[str, tuple], data: Any, seed: int) -> tuple[Any, dict]:
    """Fit ``build(**point)`` for every grid point, keep the best validation balanced accuracy."""
    from featlt.heads.selection import grid_points, val_score

    start, best = time.perf_counter(), None
    for point in grid_points(grid):
        head = build(**point, device="cpu", random_state=seed)
        head.fit(data.X_train, data.y_train, X_val=data.X_val, y_val=data.y_val)
        score = val_score(head.logits(data.X_val), data.y_val)
        if best is None or (score[0], -score[1]) > (best[0][0], -best[0][1]):
            best = (score, head, point)
    assert best is not None
    return best[1], {"fit_seconds": time.perf_counter() - start, "selected": best[2],
                     "val_balanced_accuracy": best[0][0]}


def timed_fit(head: Any, data: Any, **fit_kwargs: Any) -> tuple[Any, dict[str, Any]]:
    start = time.perf_counter()
    head.fit(data.X_train, data.y_train, X_val=data.X_val, y_val=data.y_val, **fit_kwargs)
    return head, {"fit_seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------- parts


def run_dlsa(arrays: Any, seed: int) -> dict[str, Any]:
    from featlt.heads.dlsa import DLSAHead

    data = selection_data(arrays)
    result, record = select("dlsa", data, seed)
    base, base_record = timed_fit(DLSAHead(depth=0, device="cpu", random_state=seed), data)
    method = test_metrics(result.head, arrays)
    # The same fitted stages without the routing prior (the authors' form), for its effect.
    authors = test_metrics(result.head.set_params(routing_prior=False), arrays)
    result.head.set_params(routing_prior=True)
    return {
        "method": {**record, **method},
        "without_routing_prior": authors,
        "base": {**base_record, **test_metrics(base, arrays)},
        "stages_fit": result.head.stages_,
        "stages_test": result.head.stage_report(arrays.X_test, arrays.y_test),
    }


def run_cws(arrays: Any, seed: int) -> dict[str, Any]:
    from featlt.heads.linear import LinearHead
    from featlt.heads.registry import TRAIN_GRID

    data = selection_data(arrays)
    result, record = select("cws", data, seed)
    head = result.head
    mapping_test = {}
    for mapping in ("mean", "sum"):
        head.set_params(mapping=mapping)
        mapping_test[mapping] = test_metrics(head, arrays)["balanced_accuracy"]
    head.set_params(mapping="mean")
    base, base_record = select_grid(lambda **p: LinearHead(loss="la", **p), TRAIN_GRID, data,
                                    seed)
    plan = head.split_plan_
    return {
        "method": {**record, **test_metrics(head, arrays)},
        "base": {"head": "linear, logit-adjusted (la_loss at tau 1), no split", **base_record,
                 **test_metrics(base, arrays)},
        "mapping": {"test_balanced_accuracy": mapping_test, "val_balanced_accuracy":
                    head.mapping_val_},
        "split": {k: plan[k] for k in ("imbalance_before", "imbalance_after",
                                       "imbalance_equal_split", "k_per_class", "n_subclasses",
                                       "kept_whole", "n_ref", "m_min")},
    }


def run_cibl(arrays: Any, seed: int, cell: str) -> dict[str, Any]:
    from featlt.heads.cibl import CIBLHead

    views, views_note = stored_views(cell, arrays)
    data = selection_data(arrays, views)
    result, record = select("cibl", data, seed)
    base, base_record = timed_fit(CIBLHead(lam=0.0, device="cpu", random_state=seed), data)
    sweep = {"0.0": test_metrics(base, arrays)}
    for head, point in result.fits:
        sweep[str(float(point["lam"]))] = test_metrics(head, arrays)
    return {
        "method": {**record, **test_metrics(result.head, arrays)},
        "base": {"head": "CIBL lambda 0", **base_record, **sweep["0.0"]},
        "views": result.head.views_source_, "views_note": views_note,
        "lambda_sweep": sweep,
    }


def established_heads() -> list[str]:
    """Every registry head that is not a seed method."""
    from featlt.heads.registry import list_heads

    return [name for name in list_heads() if name not in SEED_METHODS]


def run_established(arrays: Any, seed: int) -> dict[str, Any]:
    """The established head best on validation; only it is scored on test. A wrapper's fit
    seconds include its base's (as ``select_head`` reports them)."""
    from featlt.heads.selection import select_heads

    selected = select_heads(established_heads(), selection_data(arrays), device="cpu",
                            seed=seed)
    best = max(selected.values(), key=lambda r: r.val["balanced_accuracy"])
    record = {"head": best.name, "fit_seconds": best.fit_seconds, "selected": best.selected,
              "val_balanced_accuracy": best.val["balanced_accuracy"]}
    return {**record, **test_metrics(best.head, arrays),
            "candidates": {name: r.val["balanced_accuracy"] for name, r in selected.items()}}


def run_ceiling(cell: str, seed: int) -> dict[str, Any]:
    """Balanced training set of the LT subset's size; each method's head family (DLSA's
    balanced_softmax, CWS, CIBL) selected on validation; the best on validation is scored."""
    arrays = load_cell(cell, seed, balanced=True)
    data = selection_data(arrays)
    fitted = [select(name, data, seed) for name in ("balanced_softmax", "cws", "cibl")]
    best = max(fitted, key=lambda item: item[1]["val_balanced_accuracy"])
    return {**best[1], **test_metrics(best[0].head, arrays), "n_train": int(arrays.y_train.size),
            "candidates": {r["head"]: r["val_balanced_accuracy"] for _, r in fitted}}


def run_part(cell: str, seed: int, part: str, parts_dir: Path) -> Path:
    from featlt.runtime import to_jsonable, write_json_atomic

    start, record = time.perf_counter(), run_record(sys.argv)
    if part == "ceiling":
        payload = run_ceiling(cell, seed)
    else:
        arrays = load_cell(cell, seed)
        payload = {"dlsa": lambda: run_dlsa(arrays, seed), "cws": lambda: run_cws(arrays, seed),
                   "cibl": lambda: run_cibl(arrays, seed, cell),
                   "established": lambda: run_established(arrays, seed)}[part]()
        payload["train_counts"] = arrays.train_counts
    path = parts_dir / f"{cell.replace('/', '_')}-{part}-seed{seed}.json"
    write_json_atomic(path, to_jsonable({"cell": cell, "seed": seed, "part": part,
                                         "seconds": time.perf_counter() - start, **payload,
                                         "run": finish_record(record)}))
    return path


# ------------------------------------------------------------------------------- summary


def mean_std(values: list[float | None]) -> dict[str, Any] | None:
    vals = np.array([v for v in values if v is not None], dtype=np.float64)
    if vals.size == 0:
        return None
    return {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "n": int(vals.size)}


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: mean_std([r.get(k) for r in rows]) for k in METRIC_KEYS}
    out["fit_seconds"] = mean_std([r.get("fit_seconds") for r in rows])
    return out


def beats(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired comparison of balanced accuracies (same seeds): the issue's rule."""
    diff = np.asarray(a) - np.asarray(b)
    if diff.size == 0:
        return {"beats": None, "n": 0}
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("inf")
    verdict = mean >= 0.003 and (bool((diff > 0).all()) or mean > 2 * se)
    return {"beats": bool(verdict), "mean_difference": mean, "standard_error": se,
            "differences": diff.tolist(), "n": int(diff.size)}


def load_parts(parts_dir: Path) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    found: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for path in sorted(parts_dir.glob("*.json")):
        part = json.loads(path.read_text())
        found.setdefault((part["cell"], part["part"]), {})[part["seed"]] = part
    return found


def summarise_method(name: str, found: dict, cells: list[str]) -> dict[str, Any]:
    section: dict[str, Any] = {"cells": {}}
    for cell in cells:
        runs = found.get((cell, name), {})
        if not runs:
            continue
        established = found.get((cell, "established"), {})
        seeds = sorted(runs)
        paired = [s for s in seeds if s in established]
        bacc = {s: runs[s]["method"]["balanced_accuracy"] for s in seeds}
        entry = {
            "seeds": seeds,
            "method": aggregate([runs[s]["method"] for s in seeds]),
            "selected": {s: runs[s]["method"]["selected"] for s in seeds},
            "base": aggregate([runs[s]["base"] for s in seeds]),
            "beats_base": beats([bacc[s] for s in seeds],
                                [runs[s]["base"]["balanced_accuracy"] for s in seeds]),
        }
        if established:
            entry["strongest_established"] = {
                "head": {s: established[s]["head"] for s in sorted(established)},
                **aggregate([established[s] for s in sorted(established)]),
            }
            entry["beats_strongest_established"] = beats(
                [bacc[s] for s in paired], [established[s]["balanced_accuracy"] for s in paired])
        section["cells"][cell] = entry
        first = runs[seeds[0]]
        for key in ("stages_fit", "stages_test", "split", "views", "views_note"):
            if key in first:
                section.setdefault(key, {})[cell] = first[key]
        if name == "dlsa":
            section.setdefault("routing_prior", {})[cell] = {
                "with": entry["method"]["balanced_accuracy"],
                "without": mean_std([runs[s]["without_routing_prior"]["balanced_accuracy"]
                                     for s in seeds]),
                "with_beats_without": beats(
                    [bacc[s] for s in seeds],
                    [runs[s]["without_routing_prior"]["balanced_accuracy"] for s in seeds])}
        if name == "cws":
            section.setdefault("mapping", {})[cell] = {
                m: mean_std([runs[s]["mapping"]["test_balanced_accuracy"][m] for s in seeds])
                for m in ("mean", "sum")}
        if name == "cibl":
            section.setdefault("lambda_sweep", {})[cell] = {
                lam: {k: mean_std([runs[s]["lambda_sweep"][lam][k] for s in seeds])
                      for k in ("balanced_accuracy", "head_third", "mid_third", "tail_third")}
                for lam in runs[seeds[0]]["lambda_sweep"]}
    return section


def chosen_seed_method(found: dict, cell: str) -> dict[str, Any] | None:
    """Per seed, the seed method (DLSA, CWS, CIBL) best on validation, scored on test; set
    beside the ceiling of the same seeds (the goal: the long tail costs nothing)."""
    runs = {name: found.get((cell, name), {}) for name in SEED_METHODS}
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    if not seeds:
        return None
    picks = {s: max(SEED_METHODS, key=lambda n: runs[n][s]["method"]["val_balanced_accuracy"])
             for s in seeds}
    entry: dict[str, Any] = {"chosen": picks, **aggregate(
        [runs[picks[s]][s]["method"] for s in seeds])}
    ceiling = found.get((cell, "ceiling"), {})
    paired = [s for s in seeds if s in ceiling]
    if paired:
        entry["versus_ceiling"] = beats(
            [runs[picks[s]][s]["method"]["balanced_accuracy"] for s in paired],
            [ceiling[s]["balanced_accuracy"] for s in paired])
    return entry


def plot_lambda(sweep: dict[str, Any], cell: str, views: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams = sorted(sweep, key=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label in (("head_third", "head third"), ("mid_third", "mid third"),
                       ("tail_third", "tail third"), ("balanced_accuracy", "balanced")):
        means = [sweep[lam][key]["mean"] for lam in lams]
        stds = [sweep[lam][key]["std"] for lam in lams]
        ax.errorbar([float(v) for v in lams], means, yerr=stds, marker="o", capsize=3,
                    label=label, linestyle="--" if key == "balanced_accuracy" else "-")
    n = sweep[lams[0]]["balanced_accuracy"]["n"]
    ax.set_xlabel("CIBL lambda (contrastive weight)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    kind = "feature-noise views" if "noise" in views else "stored augmented views"
    ax.set_title(f"CIBL on {cell}, {n} seeds, {kind}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(parts_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    from featlt.runtime import to_jsonable, write_json_atomic

    found = load_parts(parts_dir)
    cells = [c for c in CELLS if any(cell == c for cell, _ in found)]
    document: dict[str, Any] = {
        name: summarise_method(name, found, cells) for name in ("dlsa", "cws", "cibl")}
    document["dlsa"]["base_head"] = "dlsa at depth 0: balanced_softmax on all training rows"
    document["cws"]["base_head"] = "linear logit-adjusted head without splitting (same grid)"
    document["cibl"]["base_head"] = "the same projection + cosine head with lambda 0"
    document["ceiling"] = {cell: {**aggregate(list(runs.values())), "seeds": sorted(runs),
                                  "chosen": {s: r["head"] for s, r in sorted(runs.items())}}
                           for (cell, part), runs in found.items() if part == "ceiling"}
    document["seed_method_chosen_on_validation"] = {
        cell: chosen_seed_method(found, cell) for cell in cells}
    document["cells_run"] = {f"{cell} {part}": sorted(runs) for (cell, part), runs in
                             sorted(found.items())}
    # Each piece's own run record (command, load average at its start and end, date); pieces
    # measured before this field existed have none (null).
    document["pieces"] = {f"{cell} {part} seed {seed}": {
        k: run.get("run", {}).get(k) for k in ("command", "git_commit", "load_average_start",
                                                "load_average_end", "date_utc", "seconds")}
        for (cell, part), runs in sorted(found.items()) for seed, run in sorted(runs.items())}
    document["config"] = {
        "stores": {k: str(v) for k, v in STORES.items()}, "view_stores": {
            k: str(v) for k, v in VIEW_STORES.items()},
        "protocol": "cao2019 long-tailed train (fixed); validation 20/class outside the subset "
                    "drawn per seed; balanced test subset 500/class",
        "established": established_heads(),
        "beats_rule": "mean paired difference >= 0.003 and (all positive or mean > 2 SE)",
        "device": "cpu", "parts_dir": str(parts_dir)}
    cibl = document["cibl"].get("lambda_sweep", {})
    if "lite0/if100" in cibl:
        plot_lambda(cibl["lite0/if100"], "lite0/if100",
                    document["cibl"].get("views", {}).get("lite0/if100", ""), PLOT)
        document["cibl"]["plot"] = str(PLOT.relative_to(REPO))
    document["run"] = finish_record(record)
    write_json_atomic(RESULT, to_jsonable(document))
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=list(CELLS), default="lite0/if100")
    parser.add_argument("--part", choices=PARTS, action="append",
                        help="repeatable; default: dlsa, cws, cibl and established")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--parts-dir", type=Path, default=PARTS_DIR)
    parser.add_argument("--summarise", action="store_true",
                        help="compile the parts found into the results file and the plot")
    args = parser.parse_args()
    record = run_record(sys.argv)
    if args.summarise:
        summarise(args.parts_dir, record)
        print(f"wrote {RESULT}")
        return
    args.parts_dir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for part in args.part or ("dlsa", "cws", "cibl", "established"):
            start = time.perf_counter()
            path = run_part(args.cell, seed, part, args.parts_dir)
            print(f"{args.cell} seed {seed} {part}: {time.perf_counter() - start:.0f} s -> "
                  f"{path}", flush=True)


if __name__ == "__main__":
    main()
