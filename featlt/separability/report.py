"""Run the separability report on feature files: JSON document, plots, readable text.

``featlt evaluate-separability`` calls :func:`run_separability` and prints
:func:`format_document`. Several files give one document with one report each and a comparison
table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featlt.runtime import (
    atomic_outputs,
    refuse_output_onto_inputs,
    to_jsonable,
    write_json_atomic,
)
from featlt.separability.evaluate import REPORT_KIND, REPORT_VERSION, SCORES, SeparabilityConfig

# Short column names of the comparison table, in order.
COLUMNS: dict[str, str] = {
    "knn_balanced_accuracy": "kNN-bacc",
    "knn_tail_recall": "kNN-tail",
    "ncm_balanced_accuracy": "NCM-bacc",
    "ncm_tail_recall": "NCM-tail",
    "knn_balanced_accuracy_val": "kNN-val",
    "ncm_balanced_accuracy_val": "NCM-val",
    "logme": "LogME",
    "logme_balanced": "LogME-bal",
    "gbc": "GBC",
    "purity": "purity",
    "nmi": "NMI",
}


def _label(record: dict[str, Any]) -> str:
    """A short name for a report: the file name and, when recorded, the backbone."""
    source = record.get("input") or {}
    name = Path(source.get("file", "features")).name
    backbone = (source.get("features") or {}).get("backbone")
    arch = backbone.get("arch") if isinstance(backbone, dict) else None
    return f"{name} [{arch}]" if arch else name


def run_separability(
    paths: list[Path],
    protocol: Any = None,
    config: SeparabilityConfig | None = None,
    device: str = "auto",
    threads: int | None = None,
    output: Path | None = None,
    plots_dir: Path | None = None,
    memory_budget_mb: float | None = None,
) -> dict[str, Any]:
    """Evaluate every file, write the JSON document (atomically) and the plots.

    ``memory_budget_mb``: each file's training rows are read chunk by chunk under it
    (:func:`featlt.separability.evaluate.evaluate_store`); None: in memory.

    Returns:
        the document: ``{"kind", "report_version", "reports": [record, ...], "comparison":
        [{"label", "file", scores...}], "outputs": {...}}`` (JSON-able).
    """
    from featlt.separability.evaluate import evaluate_store

    config = config or SeparabilityConfig()
    if output is not None:
        refuse_output_onto_inputs(output, paths)
    records = [to_jsonable(evaluate_store(path, protocol, config, device, threads,
                                          memory_budget_mb).record()) for path in paths]
    comparison = [{"label": _label(r), "file": r["input"]["file"], **r["scores"]}
                  for r in records]
    document: dict[str, Any] = {
        "kind": REPORT_KIND, "report_version": REPORT_VERSION, "reports": records,
        "comparison": comparison, "outputs": {"report": None, "plots": []},
    }
    if plots_dir is not None:
        from featlt.separability.plots import write_plots

        stems: set[str] = set()
        with atomic_outputs("plot") as batch:  # every plot, or none and no new empty folder
            for index, record in enumerate(records):
                stem = Path(record["input"]["file"]).stem
                stem = f"{stem}_{index}" if stem in stems else stem
                stems.add(stem)
                document["outputs"]["plots"] += [str(p) for p in
                                                 write_plots(record, plots_dir, stem, batch)]
    if output is not None:
        document["outputs"]["report"] = str(output)
        write_json_atomic(output, document)
    return document


def _fmt(value: Any, width: int = 9) -> str:
    if value is None:
        return f"{'null':>{width}}"
    return f"{value:>{width}.4g}"


def format_record(record: dict[str, Any]) -> str:
    """A readable summary of one report record."""
    data, knn, split = record["data"], record["knn"], record["split_plan"]
    view = (record.get("input") or {}).get("view") or {}
    protocol = view.get("protocol") or {}
    lines = [
        f"{_label(record)}: train {data['n_train']} x {data['dim']}, {data['n_classes']} classes, "
        f"imbalance {data['imbalance_factor']:.4g}, validation {data['n_val']} rows"
        + (f" (profile {protocol.get('profile')}, val {view.get('val', {}).get('regime')})"
           if protocol else ""),
        f"  {'score':<28}{'value':>9}  direction",
    ]
    for name, info in SCORES.items():
        direction = "higher is better" if info.higher_is_better else "lower is better"
        lines.append(f"  {name:<28}{_fmt(record['scores'][name])}  {direction}")
    for grouping, block in record["bin_matrices"].items():
        groups = block["groups"]
        lines.append(f"  bin matrices ({grouping}; row: class's group, column: other classes' "
                     "group; lower is better)")
        lines.append("    " + f"{'':<12}" + "".join(f"{g:>11}" for g in groups)
                     + "   |" + "".join(f"{g:>11}" for g in groups))
        for g, knn_row, bc_row in zip(groups, block["knn_confusion"], block["bhattacharyya"],
                                      strict=True):
            lines.append(f"    {g:<12}" + "".join(_fmt(v, 11) for v in knn_row) + "   |"
                         + "".join(_fmt(v, 11) for v in bc_row))
        lines.append(f"    {'':<12}{'kNN confusion':>{11 * len(groups)}}   |"
                     f"{'Bhattacharyya':>{11 * len(groups)}}")
    dense = record["densest_fraction"]
    parts = [f"{name} {g['share_dense']:.2f} (all {g['share_all']:.2f})"
             for name, g in dense["groups"].items() if g is not None]
    lines.append(f"  densest {dense['rho']:.0%} of training samples: " + ", ".join(parts))
    lines.append(
        f"  split plan: K_c {split['k_per_class']} -> {split['n_subclasses']} sub-classes, "
        f"imbalance {_fmt(split['imbalance_before'], 1).strip()} -> "
        f"{_fmt(split['imbalance_after'], 1).strip()}"
    )
    tail = "all" if knn["all_tail_third_samples_included"] else "not all"
    lines.append(
        f"  kNN: k={knn['k']} {knn['metric']}, {knn['n_queries']} queries of {data['n_train']}"
        f" ({tail} tail-third samples included); faiss on {record['faiss']['device']} with "
        f"{record['faiss']['threads']} thread(s)"
    )
    lines += [f"  note: {note}" for note in record["notes"]]
    return "\n".join(lines)


def format_comparison(comparison: list[dict[str, Any]]) -> str:
    """One row per file, one column per score."""
    width = max(len("features"), *(len(row["label"]) for row in comparison))
    header = f"{'features':<{width}}" + "".join(f"{c:>11}" for c in COLUMNS.values())
    rows = [f"{row['label']:<{width}}" + "".join(_fmt(row[k], 11) for k in COLUMNS)
            for row in comparison]
    worse_low = [COLUMNS[k] for k in COLUMNS if not SCORES[k].higher_is_better]
    legend = "higher is better for every column" if not worse_low else (
        "higher is better except " + ", ".join(worse_low))
    return "\n".join([header, *rows, f"({legend})"])


def format_document(document: dict[str, Any]) -> str:
    """The text the command prints: each report, then the comparison when several files."""
    parts = [format_record(record) for record in document["reports"]]
    if len(document["reports"]) > 1:
        parts.append("comparison\n" + format_comparison(document["comparison"]))
    outputs = document["outputs"]
    if outputs["report"]:
        parts.append(f"report written to {outputs['report']}")
    if outputs["plots"]:
        parts.append("plots: " + ", ".join(outputs["plots"]))
    return "\n\n".join(parts)
