"""The page's sections: one function per section, each returning a :class:`Section` built only
from numbers in the result files (per-class accuracies and reliability bins come from the heads'
per-image test predictions, through featlt's own per-class recall and ECE binning)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from featlt.evaluation.metrics import ECE_BINS, ece_bins
from featlt.evaluation.shots import ABSOLUTE_GROUPS, ALL_GROUPS, RELATIVE_GROUPS, shot_groups
from featlt.rank.model import SCORE_COLUMNS
from featlt.report.charts import Point, heatmap, reliability, scatter, share_bars
from featlt.report.headfiles import (
    Predictions,
    UnusableFileError,
    read_head_fields,
    read_predictions,
)
from featlt.report.model import (
    DatasetResults,
    HeadsResult,
    NotShown,
    RankResult,
    SeparabilityResult,
)
from featlt.report.page import Cell, Section, cell, number, table
from featlt.report.svg import GROUP_COLOURS, esc

HIGHER = "higher is better"
LOWER = "lower is better"
#: Words for the score columns of a rank document (any other column is shown by its own name).
SCORE_NAMES: dict[str, str] = {
    "featlt": "featlt", "logme": "LogME", "gbc": "GBC", "sfda": "SFDA", "knn": "kNN bal. acc.",
    "ncm": "NCM bal. acc.", "params": "parameters", "imagenet_top1": "ImageNet top-1",
    "featlt_v1": "featlt v1", "logme_ncm": "LogME+NCM rank", "ridge": "ridge probe",
    "ridge_tail": "ridge tail", "cv_la": "CV LA head"}
#: Short group names for the axes of heat maps.
GROUP_SHORT: dict[str, str] = {"head_third": "head", "mid_third": "mid", "tail_third": "tail"}
GROUP_NAMES: dict[str, str] = {"head_third": "head third", "mid_third": "mid third",
                               "tail_third": "tail third", "many": "many (>100)",
                               "medium": "medium (20-100)", "few": "few (<20)"}


class Context:
    """What every section of one page shares: unique anchors and the "not shown" list."""

    def __init__(self, not_shown: list[NotShown]) -> None:
        self.not_shown = not_shown
        self._anchors: set[str] = set()

    def anchor(self, *parts: str) -> str:
        """A unique HTML id made of ``parts`` (letters, digits and dashes only)."""
        base = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-") or "section"
        anchor, n = base, 1
        while anchor in self._anchors:
            n += 1
            anchor = f"{base}-{n}"
        self._anchors.add(anchor)
        return anchor


def score_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The score columns the rows hold: featlt.rank's order first, unknown ones last (a newer
    featlt's columns are shown, not dropped)."""
    present = list(dict.fromkeys(name for row in rows for name in row.get("scores") or {}))
    known = [name for name in SCORE_COLUMNS if name in present]
    return known + [name for name in present if name not in SCORE_COLUMNS]


def ranked_columns(document: dict[str, Any]) -> list[str]:
    """The score columns of the ranking table: those :data:`SCORE_COLUMNS` declares or a newer
    featlt added, without the separability sub-scores rows also carry (knn_tail, ...)."""
    if document.get("columns") is not None:  # version 4 on: the document lists them
        return list(document["columns"])
    rows = document.get("rows") or []
    validated = set((document.get("validation") or {}).get("scores") or {})
    return [name for name in score_columns(rows)
            if name in SCORE_COLUMNS or name in validated or not _is_sub_score(name)]


def _is_sub_score(name: str) -> bool:
    return name.endswith(("_tail", "_val", "_balanced")) and name not in SCORE_COLUMNS


def _rank_command(rank: RankResult) -> str:
    """The command that wrote ``rank``: as recorded (version 4 on, from the command line), else
    rebuilt from its settings."""
    recorded = (rank.document.get("run") or {}).get("command")
    if recorded:
        return str(recorded)
    config = rank.document.get("config") or {}
    files = " ".join(str(row.get("file")) for row in rank.document.get("rows") or [])
    flags = [f"--by {config['by']}"] if config.get("by", "featlt") != "featlt" else []
    flags += ["--full"] if config.get("full") else []
    flags += ["--validate"] if config.get("validate") else []
    if config.get("full"):
        flags.append(f"--cv-folds {config.get('cv_folds')}")
    flags += [f"--with {name}" for name in config.get("optional") or []]
    flags.append(f"--bootstrap {config.get('n_bootstrap')}")
    return f"featlt rank {files} {' '.join(flags)} --json-output {rank.path}"


def ranking_section(rank: RankResult, ctx: Context, dataset_anchor: str) -> Section:
    """The recommendation, the ranking table, the validation of every score and the
    score-vs-measured scatter plots."""
    document = rank.document
    rows = document.get("rows") or []
    columns = ranked_columns(document)
    saturated = set(document.get("saturated") or [])
    body = []  # the recommendation sentence heads the page (featlt.report.build)
    headers: list[str | tuple[str, str]] = ["#", "backbone", "model"]
    headers += [(SCORE_NAMES.get(c, c) + ("*" if c in saturated else ""), HIGHER)
                for c in columns]
    full = any(row.get("measured") for row in rows)
    if full:
        headers += ["best head (validation)", ("test bal. acc.", HIGHER), "95% interval",
                    ("tail third", HIGHER)]
    cv = any(row.get("cv") for row in rows)
    if cv:
        headers += ["best head (cross-validated)", ("CV bal. acc.", HIGHER), "95% interval"]
    # rank --pairs (version 5): combination rows, with their width and relative CPU time
    pairs = any(row.get("combination") for row in rows)
    if pairs:
        headers += ["width", "CPU time per image (x cheapest member)"]
    table_rows = []
    for position, row in enumerate(rows, 1):
        scores = row.get("scores") or {}
        cells: list[Cell | str] = [cell(position), str(row.get("label")),
                                   str(row.get("backbone"))]
        cells += [cell(scores.get(c)) for c in columns]
        if full:
            measured = row.get("measured") or {}
            cells += [str(measured.get("head", "-")), cell(measured.get("balanced_accuracy")),
                      _interval(measured.get("balanced_accuracy_ci")),
                      cell(measured.get("tail_third"))]
        if cv:
            record = row.get("cv") or {}
            best = (record.get("heads") or {}).get(record.get("best_head")) or {}
            cells += [str(record.get("best_head", "-")), cell(best.get("balanced_accuracy")),
                      _interval(best.get("balanced_accuracy_ci"))]
        if pairs:
            combination = row.get("combination") or {}
            cells += [cell(combination.get("width")), cell(combination.get("cpu_time_relative"))]
        table_rows.append(cells)
    body.append(table(headers, table_rows, css_class="ranking"))
    notes = document.get("notes") or []
    if notes:
        body.append('<div class="note"><ul>' + "".join(f"<li>{esc(n)}</li>" for n in notes)
                    + "</ul></div>")
    children = []
    validation = document.get("validation")
    if validation:
        children.append(_validation_section(validation, ctx, dataset_anchor))
    if full:
        children.append(_score_scatter_section(rows, columns, ctx, dataset_anchor))
    return Section(ctx.anchor(dataset_anchor, "ranking"), "Recommendation and ranking",
                   "Each backbone's scores and measured accuracy, best first (the sentence at "
                   "the top of the page says which to use): look for whether the cheap scores "
                   "order the backbones the way the measured accuracy does.", "".join(body),
                   _rank_command(rank), level=3, children=children)


def _interval(values: Any) -> Cell:
    if isinstance(values, (list, tuple)) and len(values) == 2 and all(
            isinstance(v, (int, float)) for v in values):
        return Cell(f"[{number(values[0])}, {number(values[1])}]",
                    hover=f"[{values[0]!r}, {values[1]!r}]")
    return cell(None)


def _listed(values: list[Any]) -> Cell:
    """A list from a result file: an interval (two numbers), else its items joined."""
    if len(values) == 2 and all(isinstance(v, (int, float)) for v in values):
        return _interval(values)
    return Cell("; ".join(" > ".join(map(str, v)) if isinstance(v, list) else str(v)
                          for v in values) or "none")


def _validation_section(validation: dict[str, Any], ctx: Context, anchor: str) -> Section:
    scores = validation.get("scores") or {}
    keys = list(dict.fromkeys(k for result in scores.values() for k in result))
    headers: list[str | tuple[str, str]] = ["score"]
    for key in keys:
        direction = LOWER if "regret" in key else HIGHER if key.startswith(
            ("kendall_tau", "weighted_tau", "resolvable_pair_accuracy")) and not key.endswith(
            "_ci") else ""
        headers.append((key.replace("_", " "), direction))
    rows = []
    for name in score_columns([{"scores": scores}]):
        result = scores[name]
        row: list[Cell | str] = [SCORE_NAMES.get(name, name)]
        for key in keys:
            value = result.get(key)
            row.append(_listed(value) if isinstance(value, list) else Cell(
                "; ".join(f"{k} {v}" for k, v in value.items())) if isinstance(value, dict)
                else cell(value))
        rows.append(row)
    facts = [f"{len(validation.get('backbones') or [])} backbones",
             f"{validation.get('n_bootstrap')} bootstrap resamples"]
    best = validation.get("probability_best")
    if isinstance(best, list) and len(best) == len(validation.get("backbones") or []):
        facts.append("bootstrap probability of being the best on test: " + ", ".join(
            f"{label} {number(value, 2)}" for label, value in zip(
                validation["backbones"], best, strict=True)))
    if "n_resolvable" in validation:
        facts.append(f"{validation['n_resolvable']} resolvable pairs (pairs the bootstrap "
                     "orders with confidence)")
    body = f"<p>{esc('; '.join(facts))}.</p>" + table(headers, rows, css_class="validation")
    return Section(ctx.anchor(anchor, "validation"), "How far each score can be trusted",
                   "Rank correlation of every score's ranking with the measured balanced "
                   "accuracy (Kendall tau-b, weighted tau, bootstrap interval) and the accuracy "
                   "lost by trusting its top pick: look for scores whose interval stays above 0.",
                   body, level=4)


def _score_scatter_section(rows: list[dict[str, Any]], columns: list[str], ctx: Context,
                           anchor: str) -> Section:
    charts = []
    for column in columns:
        points = []
        for row in rows:
            value = (row.get("scores") or {}).get(column)
            measured = (row.get("measured") or {}).get("balanced_accuracy")
            if isinstance(value, (int, float)) and isinstance(measured, (int, float)):
                label = str(row.get("label"))
                points.append(Point(float(value), float(measured), label,
                                    f"{label}: {column} {value!r}, measured {measured!r}"))
        if len(points) >= 2:
            name = SCORE_NAMES.get(column, column)
            chart = scatter(points, f"{name} ({HIGHER})", "test bal. acc.",
                            f"{name} against measured balanced accuracy", width=420, height=300)
            charts.append(f"<figure>{chart}<figcaption>{esc(name)}</figcaption></figure>")
    body = f'<div class="charts">{"".join(charts)}</div>' if charts else \
        "<p>Fewer than two backbones have both a score and a measured accuracy.</p>"
    return Section(ctx.anchor(anchor, "scores-vs-measured"), "Scores against measured accuracy",
                   "One point per backbone: a score that ranks well puts the points on a rising "
                   "line.", body, level=4)


def separability_section(result: SeparabilityResult, class_names: list[str], ctx: Context,
                         anchor: str) -> Section:
    """Scores with their directions, bin matrices as heat maps, the densest-fraction make-up
    and the classwise split plan of one backbone."""
    report = result.report
    info = report.get("score_info") or {}
    rows = []
    for name, value in (report.get("scores") or {}).items():
        meta = info.get(name) or {}
        direction = {True: HIGHER, False: LOWER}.get(meta.get("higher_is_better"), "")
        rows.append([name, cell(value), direction, str(meta.get("description", "")),
                     str(meta.get("source", ""))])
    body = [table(["score", "value", "direction", "what it measures", "source"], rows)]
    children = [_bins_section(report, ctx, anchor), _dense_section(report, ctx, anchor),
                _split_section(report.get("split_plan") or {}, class_names, ctx, anchor,
                               "Classwise split plan", "separability")]
    return Section(ctx.anchor(anchor, "separability"), "Separability of the feature space",
                   "How well the frozen features keep classes apart before any head is "
                   "fitted: look at the tail-class rows.", "".join(body),
                   f"featlt evaluate-separability {(report.get('input') or {}).get('file')}",
                   level=4, children=[c for c in children if c is not None])


def _bins_section(report: dict[str, Any], ctx: Context, anchor: str) -> Section | None:
    matrices = report.get("bin_matrices") or {}
    charts = []
    for kind, record in matrices.items():
        groups = [GROUP_SHORT.get(g, g) for g in record.get("groups") or []]
        for key, words in (("knn_confusion", "kNN confusion rate"),
                           ("bhattacharyya", "Bhattacharyya overlap")):
            matrix = record.get(key)
            if matrix:
                title = f"{words}, {kind} groups"
                charts.append(f"<figure>{heatmap(matrix, groups, groups, title, words)}"
                              f"<figcaption>{esc(title)} (row: from, column: to; "
                              f"{LOWER})</figcaption></figure>")
    if not charts:
        return None
    return Section(ctx.anchor(anchor, "bins"), "Bin-by-bin separability",
                   "Where the shot groups run into each other: a bright tail-row cell means "
                   "tail classes are confused with that group (grey: an empty group).",
                   f'<div class="charts">{"".join(charts)}</div>', level=4)


def _dense_section(report: dict[str, Any], ctx: Context, anchor: str) -> Section | None:
    dense = report.get("densest_fraction") or {}
    groups = dense.get("groups") or {}
    if not groups:
        return None
    bars = []
    for names in (RELATIVE_GROUPS, ABSOLUTE_GROUPS):
        present = [g for g in names if groups.get(g)]
        if present:
            rows = [(f"densest {dense.get('rho', 0):.0%}",
                     {g: groups[g].get("share_dense") for g in present}),
                    ("all training rows", {g: groups[g].get("share_all") for g in present})]
            bars.append(share_bars(rows, present, "Make-up of the densest training rows"))
    rows = [[GROUP_NAMES.get(g, g), cell(v.get("share_dense")), cell(v.get("share_all")),
             cell(v.get("enrichment"))] for g, v in groups.items() if v]
    body = "".join(bars) + table(["group", "share of densest", "share of all",
                                  "enrichment (dense / all)"], rows)
    return Section(ctx.anchor(anchor, "densest"), "Make-up of the densest region",
                   "DLSA's observation: the densest rows are dominated by head classes "
                   "(enrichment above 1), which is why peeling them off balances what is left.",
                   body, level=4)


def _split_section(plan: dict[str, Any], class_names: list[str], ctx: Context, anchor: str,
                   title: str, suffix: str) -> Section | None:
    k_per_class = plan.get("k_per_class")
    if not k_per_class:
        return None
    counts = plan.get("class_counts") or [None] * len(k_per_class)
    names = class_names or [str(i) for i in range(len(k_per_class))]
    rows = [[names[c] if c < len(names) else str(c), cell(counts[c]), cell(k)]
            for c, k in enumerate(k_per_class)]
    facts = (f"imbalance factor before splitting {number(plan.get('imbalance_before'))}, after "
             f"{number(plan.get('imbalance_after'))}; {plan.get('n_subclasses')} sub-classes")
    return Section(ctx.anchor(anchor, suffix, "split"), title,
                   "K_c sub-classes per class: splitting head classes should bring the "
                   "imbalance factor down.", f"<p>{esc(facts)}.</p>"
                   + table(["class", "training rows", "K_c (sub-classes)"], rows), level=4)


def _fit_command(heads: HeadsResult) -> str:
    config = heads.summary.get("config") or {}
    flags = " ".join(f"--head {name}" for name in config.get("heads") or heads.heads)
    overrides = config.get("overrides") or {}
    if overrides.get("max_epochs"):
        flags += f" --max-epochs {overrides['max_epochs']}"
    return (f"featlt fit-classifier {config.get('feature_file')} {flags} --bootstrap "
            f"{config.get('n_bootstrap')} --seed {config.get('seed')} -o {heads.path.parent}")


def heads_section(heads: HeadsResult, ctx: Context, anchor: str) -> Section:
    """Every head's group accuracies, per-class accuracy against training count, reliability
    diagrams of the validation-best head, DLSA's stages and CWS's plan when fitted."""
    best = heads.best_head()
    metric_keys = ["balanced_accuracy", *ALL_GROUPS, "worst_class_accuracy", "macro_f1"]
    headers: list[str | tuple[str, str]] = ["head", ("val. bal. acc.", HIGHER)]
    headers += [(GROUP_NAMES.get(k, k.replace("_", " ")), HIGHER) for k in metric_keys]
    headers.insert(3, "95% interval")
    headers += [("ECE", LOWER)]
    rows = []
    for name, row in heads.heads.items():
        cells: list[Cell | str] = [name + (" (best on validation)" if name == best else ""),
                                   cell(row.get("val_balanced_accuracy"))]
        cells += [cell(row.get(k)) for k in metric_keys]
        cells.insert(3, _interval(row.get("balanced_accuracy_ci")))
        cells.append(cell(row.get("ece")))
        rows.append(cells)
    body = table(headers, rows, css_class="heads")
    children = [s for s in (_per_class_section(heads, best, ctx, anchor),
                            _reliability_section(heads, best, ctx, anchor),
                            _dlsa_section(heads, ctx, anchor),
                            _cws_section(heads, ctx, anchor)) if s is not None]
    return Section(ctx.anchor(anchor, "heads"), "Heads on these features",
                   "Test accuracy of every head, overall and per shot group (thirds by "
                   "training count; many / medium / few by absolute count; - : an empty "
                   "group): look for the head that lifts the tail without losing the head.",
                   body, _fit_command(heads), level=4, children=children)


def _predictions(heads: HeadsResult, name: str, ctx: Context) -> Predictions | None:
    try:
        return read_predictions(heads, name)
    except UnusableFileError as err:
        ctx.not_shown.append(NotShown(err.path, err.reason))
        return None


def _per_class_section(heads: HeadsResult, best: str | None, ctx: Context,
                       anchor: str) -> Section | None:
    counts = np.asarray(heads.train_counts, dtype=np.int64)
    names = heads.class_names
    if not counts.size or best is None:
        return None
    groups = shot_groups(counts)
    group_of = {int(c): g for g in RELATIVE_GROUPS for c in (groups[g] if groups[g] is not None
                                                           else [])}
    shown = list(dict.fromkeys([best, "linear"]))
    points, legend_entries = [], []
    for series, name in enumerate(h for h in shown if h in heads.heads):
        fields = _head_fields(heads, name, ctx)
        recall = (((fields or {}).get("metrics") or {}).get("test") or {}).get(
            "per_class_accuracy")
        if not isinstance(recall, list) or len(recall) != counts.size:
            continue
        legend_entries.append((name, "#333", series == 1))
        for c in range(counts.size):
            if counts[c] <= 0 or recall[c] is None:
                continue
            label = names[c] if c < len(names) else str(c)
            points.append(Point(float(counts[c]), float(recall[c]), label,
                                f"{label} ({GROUP_NAMES[group_of[c]]}): {int(counts[c])} "
                                f"training rows, {name} accuracy {recall[c]!r}",
                                GROUP_COLOURS[group_of[c]], hollow=series == 1))
    if not points:
        return None
    legend_entries += [(GROUP_NAMES[g], GROUP_COLOURS[g], False) for g in RELATIVE_GROUPS]
    chart = scatter(points, "training rows of the class (log scale)",
                    f"test accuracy of the class ({HIGHER})",
                    "Per-class accuracy against training count", log_x=True,
                    y_limits=(-0.05, 1.05), legend_entries=legend_entries, width=640, height=400)
    return Section(ctx.anchor(anchor, "per-class"), "Per-class accuracy against training count",
                   "One point per class (filled: the head best on validation; open: plain "
                   "linear; each head's recorded per-class test accuracy): look at the left, "
                   "where the rare classes are.", chart, level=4)


def _reliability_section(heads: HeadsResult, best: str | None, ctx: Context,
                         anchor: str) -> Section | None:
    if best is None:
        return None
    predictions = _predictions(heads, best, ctx)
    counts = np.asarray(heads.train_counts, dtype=np.int64)
    if predictions is None or not counts.size:
        return None
    try:
        recorded = ((read_head_fields(heads, best).get("metrics") or {}).get("test") or {}).get(
            "ece_groups") or {}
    except UnusableFileError as err:
        ctx.not_shown.append(NotShown(err.path, f"{err.reason} (the recorded per-group ECE is "
                                                "not shown)"))
        recorded = {}
    correct = (predictions.labels == predictions.predictions).astype(np.float64)
    charts = []
    for group, members in [("all", None), *shot_groups(counts).items()]:
        if group != "all" and members is None:
            continue
        rows = np.ones(correct.size, dtype=bool) if members is None else np.isin(
            predictions.labels, members)
        if not rows.any():
            continue
        count, hits, confidence_sum = ece_bins(predictions.confidence[rows], correct[rows],
                                               ECE_BINS)
        ece = float(np.abs(hits - confidence_sum).sum() / rows.sum())
        written = heads.heads[best].get("ece") if group == "all" else recorded.get(group)
        title = f"{GROUP_NAMES.get(group, 'all classes')}: ECE {ece:.4f}"
        note = "" if written is None else f" (recorded: {number(written)})"
        chart = reliability(count, hits, confidence_sum, title,
                            GROUP_COLOURS.get(group, "#009E73"))
        charts.append(f"<figure>{chart}<figcaption>{esc(title + note)}, "
                      f"{int(rows.sum())} test images</figcaption></figure>")
    return Section(ctx.anchor(anchor, "reliability"),
                   f"Calibration of {best} per shot group",
                   f"Bars: accuracy per confidence bin ({ECE_BINS} equal-width bins, featlt's "
                   "ECE binning); black ticks: mean confidence; on the dashed diagonal the "
                   "confidence can be trusted. Look at the tail groups.",
                   f'<div class="charts">{"".join(charts)}</div>', level=4)


def _head_fields(heads: HeadsResult, name: str, ctx: Context) -> dict[str, Any] | None:
    if name not in heads.heads:
        return None
    try:
        return read_head_fields(heads, name)
    except UnusableFileError as err:
        ctx.not_shown.append(NotShown(err.path, err.reason))
        return None


def _dlsa_section(heads: HeadsResult, ctx: Context, anchor: str) -> Section | None:
    fields = _head_fields(heads, "dlsa", ctx)
    stages = (((fields or {}).get("head") or {}).get("fitted") or {}).get("stages_")
    if not stages:
        return None
    rows, bars = [], []
    for stage in stages:
        entering, train, val = (stage.get(k) or {} for k in ("entering", "train", "val"))
        rows.append([cell(stage.get("stage")), str(stage.get("kind")),
                     cell(stage.get("threshold")), cell(entering.get("n")),
                     cell(train.get("n")), cell(train.get("n_classes")),
                     cell(train.get("imbalance_factor")), cell(val.get("n")),
                     cell(val.get("accuracy"))])
        bars.append((f"stage {stage.get('stage')} ({stage.get('kind')})",
                     train.get("make_up") or {}))
    body = share_bars(bars, RELATIVE_GROUPS, "DLSA stages: make-up of their training rows") + \
        table(["stage", "kind", "log-density threshold", "rows entering", "training rows",
               "classes", ("imbalance factor", LOWER), "validation rows",
               ("validation accuracy", HIGHER)], rows)
    return Section(ctx.anchor(anchor, "dlsa"), "DLSA stages",
                   "Each stage peels off the densest rows: later stages should see a more "
                   "balanced label space (lower imbalance factor, a larger tail share).", body,
                   level=4)


def _cws_section(heads: HeadsResult, ctx: Context, anchor: str) -> Section | None:
    fields = _head_fields(heads, "cws", ctx)
    plan = (((fields or {}).get("head") or {}).get("fitted") or {}).get("split_plan_")
    return None if not plan else _split_section(plan, heads.class_names, ctx, anchor,
                                                "CWS head's split plan", "cws")


def provenance_section(group: DatasetResults, ctx: Context, anchor: str) -> Section:
    """Backbone, weights and their hash, data, view, featlt version, date and machine of every
    backbone's features."""
    rows = []
    for backbone in group.backbones():
        features, view, source = _provenance_of(group, backbone)
        model = features.get("backbone") or {}
        weights = model.get("weights") or {}
        origin = weights.get("origin") or {}
        data = features.get("data") or {}
        run = features.get("run") or {}
        versions = run.get("versions") or {}
        protocol = view.get("protocol") or {}
        weights_text = str(weights.get("source", "-"))
        if origin.get("package") or origin.get("file"):
            weights_text += f" ({origin.get('package') or origin.get('file')})"
        sha = weights.get("tensors_sha256") or (run.get("weights_file") or {}).get("sha256")
        rows.append([
            backbone, f"{model.get('model', model.get('arch', '-'))}, "
                      f"{model.get('resolution', '-')} px",
            weights_text, Cell(str(sha or "-")[:16] + ("..." if sha else ""), hover=str(sha)),
            f"{data.get('uri', '-')} ({data.get('origin', data.get('scheme', '-'))})",
            f"{protocol.get('profile', '-')}, IF {protocol.get('imbalance_factor', '-')}, "
            f"n_max {protocol.get('n_max', '-')}, seed {protocol.get('seed', '-')}",
            str(versions.get("featlt", "-")), str(run.get("git_commit", "not recorded")),
            str(run.get("started", "-")),
            f"{model.get('device', '-')}, {run.get('threads', '-')} threads, torch "
            f"{versions.get('torch', '-')}, python {versions.get('python', '-')}",
            str(source)])
    body = table(["backbone", "model", "weights", "weights sha256", "data", "view",
                  "featlt", "git commit", "extracted", "machine", "read from"], rows)
    for rank in group.ranks:  # the ranking's own run (rank documents of version 4 on)
        run = rank.document.get("run") or {}
        if run:
            body += "<p>" + esc(
                f"Ranked by featlt {run.get('featlt', '-')} (git commit "
                f"{run.get('git_commit') or 'not recorded'}) on {run.get('hostname', '-')} "
                f"({run.get('cpu_count', '-')} CPUs) at {run.get('date_utc', '-')}: "
                f"{rank.path.name}.") + "</p>"
    return Section(ctx.anchor(anchor, "provenance"), "Provenance",
                   "Where every number on this page comes from: the features' backbone, "
                   "weights, data and view, and the run that extracted them.", body, level=3)


def _provenance_of(group: DatasetResults, backbone: str) -> tuple[dict[str, Any],
                                                                  dict[str, Any], Path]:
    """The features' provenance, view record and source file of ``backbone``'s results."""
    if backbone in group.heads:
        heads = group.heads[backbone]
        provenance = heads.summary.get("provenance") or {}
        return provenance.get("features") or {}, provenance.get("view") or {}, heads.path
    if backbone in group.separability:
        result = group.separability[backbone]
        source = result.report.get("input") or {}
        return source.get("features") or {}, source.get("view") or {}, result.path
    return {}, {}, group.ranks[0].path if group.ranks else Path("-")
