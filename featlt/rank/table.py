"""The ranking as text (what ``featlt rank`` prints) and as CSV (``-o ranking.csv``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHORT = {"featlt": "featlt", "logme": "LogME", "gbc": "GBC", "sfda": "SFDA", "knn": "kNN-bacc",
         "ncm": "NCM-bacc", "params": "params(M)", "imagenet_top1": "IN-top1"}
CSV_MEASURED = ("head", "val_balanced_accuracy", "balanced_accuracy", "tail_third")


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "params":
        return f"{value / 1e6:.2f}"
    return f"{value:.4g}"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}p"


def _tau(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def ranking_text(document: dict[str, Any]) -> str:
    """One line per backbone (rank order), the validation table when present, notes, sentence."""
    from featlt.rank.ranking import SCORE_COLUMNS

    rows = document["rows"]
    width = max(len("backbone"), *(len(r["label"]) for r in rows))
    full = any(r["measured"] for r in rows)
    header = f"{'#':>2} {'backbone':<{width}}" + "".join(f"{SHORT[c]:>10}" for c in SCORE_COLUMNS)
    if full:
        header += f"  {'best head':<17}{'bal.acc':>8}{'tail':>7}"
    lines = [f"ranking by {document['config']['by']} (every score: higher is better)", header]
    for rank, row in enumerate(rows, 1):
        line = f"{rank:>2} {row['label']:<{width}}" + "".join(
            f"{_fmt(c, row['scores'].get(c)):>10}" for c in SCORE_COLUMNS)
        measured = row["measured"]
        if measured:
            line += (f"  {measured['head']:<17}{measured['balanced_accuracy']:>8.3f}"
                     f"{_fmt('tail', measured['tail_third']):>7}")
        lines.append(line)
    if "validation" in document:
        lines += ["", validation_text(document["validation"])]
    lines += [f"note: {note}" for note in document["notes"]]
    lines += ["", document["recommendation"]["sentence"]]
    return "\n".join(lines)


def validation_text(validation: dict[str, Any]) -> str:
    """Kendall tau-b [interval], weighted tau and top-1 regret of every score."""
    lines = [f"validation against the measured balanced accuracy of {len(validation['backbones'])}"
             f" backbones ({len(validation['pretrained'])} pretrained); ties: pairs whose "
             "difference lies inside its paired bootstrap interval",
             f"{'score':<10}{'tau-b':>7}{'95% interval':>16}{'w-tau':>7}{'regret':>8}"
             f"{'tau-b pre':>10}{'tau-b tail':>11}"]
    for name, r in validation["scores"].items():
        ci = r.get("ci")
        lines.append(
            f"{SHORT[name]:<10}{_tau(r['kendall_tau']):>7}"
            f"{(f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '-'):>16}"
            f"{_tau(r['weighted_tau']):>7}{_points(r['top1_regret']):>8}"
            f"{_tau(r.get('kendall_tau_pretrained')):>10}"
            f"{_tau(r.get('kendall_tau_tail_third')):>11}")
    return "\n".join(lines)


def csv_columns(document: dict[str, Any]) -> dict[str, list[Any]]:
    """Equal-length columns, one row per backbone in rank order."""
    from featlt.rank.ranking import SCORE_COLUMNS

    rows = document["rows"]
    columns: dict[str, list[Any]] = {
        "rank": list(range(1, len(rows) + 1)),
        "label": [r["label"] for r in rows], "backbone": [r["backbone"] for r in rows],
        "file": [r["file"] for r in rows], "pretrained": [r["pretrained"] for r in rows],
    }
    for name in SCORE_COLUMNS:
        columns[name] = [r["scores"].get(name) for r in rows]
    if any(r["measured"] for r in rows):
        for key in CSV_MEASURED:
            columns[key] = [(r["measured"] or {}).get(key) for r in rows]
    return columns


def write_csv(path: Path, document: dict[str, Any]) -> Path:
    """Write :func:`csv_columns` atomically."""
    from featlt.heads.workflow import write_predictions_csv

    return write_predictions_csv(path, csv_columns(document))
