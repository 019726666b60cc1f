"""The ranking as text (what ``featlt rank`` prints) and as CSV (``-o ranking.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featlt.rank.model import SCORE_COLUMNS

SHORT = {"featlt": "featlt", "logme": "LogME", "gbc": "GBC", "sfda": "SFDA", "knn": "kNN-bacc",
         "ncm": "NCM-bacc", "params": "params(M)", "imagenet_top1": "IN-top1",
         "featlt_v1": "featlt-v1", "logme_ncm": "LogME+NCM", "ridge": "ridge",
         "ridge_tail": "ridge-tail", "cv_la": "cv-LA"}
CSV_MEASURED = ("head", "val_balanced_accuracy", "balanced_accuracy", "tail_third")
CSV_COMBINATION = ("members", "width", "cpu_time_relative")


#: Width of every score column; each column is preceded by one space, so cells never touch.
SCORE_WIDTH = 9
HEAD_WIDTH = 17


def fit_number(value: float, width: int, digits: int = 4) -> str:
    """``value`` in at most ``width`` characters: ``{value:.{digits}g}`` when it fits, else
    fewer digits, then scientific notation with a compact exponent (``-1.6e-149``)."""
    for precision in range(digits, 0, -1):
        text = f"{value:.{precision}g}"
        if len(text) <= width:
            return text
    for precision in range(max(digits - 1, 0), -1, -1):
        mantissa, _, exponent = f"{value:.{precision}e}".partition("e")
        text = f"{mantissa}e{int(exponent)}"
        if len(text) <= width:
            return text
    return text  # wider than asked only when width < 6 ("-1e-99" needs 6)


def _fmt(name: str, value: Any, width: int = SCORE_WIDTH) -> str:
    if value is None:
        return "-"
    if name == "params":
        millions = value / 1e6
        text = f"{millions:.2f}"
        return text if len(text) <= width else fit_number(millions, width)
    return fit_number(float(value), width)


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}p"


def _tau(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def score_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The :data:`~featlt.rank.model.SCORE_COLUMNS` this ranking computed, in table order: those
    held by at least one row's ``scores`` (an opt-in score not asked for is absent, not null)."""
    return [name for name in SCORE_COLUMNS if any(name in row["scores"] for row in rows)]


def _cells(values: list[str], widths: list[int] | None = None) -> str:
    """Fixed-width right-aligned cells (``widths``, default :data:`SCORE_WIDTH` each), each
    preceded by a space."""
    widths = widths or [SCORE_WIDTH] * len(values)
    return "".join(f" {value:>{w}}" for value, w in zip(values, widths, strict=True))


def ranking_text(document: dict[str, Any]) -> str:
    """One line per backbone (rank order), the validation table when present, notes, sentence.

    A score undefined on a file shows as ``-``; a score equal on every file has ``*`` after its
    column name and a note saying it cannot separate the files (:mod:`featlt.rank.quality`).
    With combination rows (``--pairs``; labelled ``A+B``) two more columns: the combination's
    width and its CPU time per image relative to its cheapest member (``cpu x``).

    Columns have fixed widths and are separated by at least one space; numbers are formatted
    to fit their column (:func:`fit_number`), so no two values ever run together.
    """
    rows = document["rows"]
    width = max(len("backbone"), *(len(r["label"]) for r in rows))
    full = any(r["measured"] for r in rows)
    saturated = set(document.get("saturated", ()))  # same on every file: flagged with *
    columns = score_columns(rows)
    names = [SHORT[c] + ("*" if c in saturated else "") for c in columns]
    widths = [max(SCORE_WIDTH, len(name)) for name in names]  # "params(M)*" is one wider
    header = f"{'#':>2} {'backbone':<{width}}" + _cells(names, widths)
    if full:
        header += f"  {'best head':<{HEAD_WIDTH}} {'bal.acc':>7} {'tail':>7}"
    crossval = any(r.get("cv") for r in rows)  # rank --full --cv-folds K: the K-fold pick
    if crossval:
        header += f"  {'cv head':<{HEAD_WIDTH}} {'cv bacc':>7}"
    pairs = any(r.get("combination") for r in rows)  # rank --pairs: width and relative cost
    if pairs:
        header += f" {'width':>6} {'cpu x':>6}"
    lines = [f"ranking by {document['config']['by']} (every score: higher is better)", header]
    for rank, row in enumerate(rows, 1):
        line = f"{rank:>2} {row['label']:<{width}}" + _cells(
            [_fmt(c, row["scores"].get(c)) for c in columns], widths)
        measured = row["measured"]
        if measured:
            line += (f"  {measured['head']:<{HEAD_WIDTH}} "
                     f"{measured['balanced_accuracy']:>7.3f} "
                     f"{_fmt('tail', measured['tail_third'], 7):>7}")
        if crossval:
            cv = row.get("cv") or {"best_head": "-", "heads": {"-": {"balanced_accuracy": None}}}
            line += (f"  {cv['best_head']:<{HEAD_WIDTH}} "
                     f"{_fmt('cv', cv['heads'][cv['best_head']]['balanced_accuracy'], 7):>7}")
        if pairs:
            combination = row.get("combination") or {}
            relative = combination.get("cpu_time_relative")
            line += (f" {combination.get('width', '-'):>6} "
                     f"{'-' if relative is None else f'{relative:.2f}':>6}")
        lines.append(line)
    if "validation" in document:
        lines += ["", validation_text(document["validation"])]
    lines += [f"note: {note}" for note in document["notes"]]
    lines += ["", document["recommendation"]["sentence"]]
    return "\n".join(lines)


def validation_text(validation: dict[str, Any]) -> str:
    """Kendall tau-b [interval], weighted tau, top-1 regret and resolvable-pair accuracy (with the
    number of resolvable pairs it counts) of every score."""
    n_resolvable = validation.get("n_resolvable")
    lines = [f"validation against the measured balanced accuracy of {len(validation['backbones'])}"
             f" backbones ({len(validation['pretrained'])} pretrained); ties: pairs whose "
             "difference lies inside its paired bootstrap interval; resolvable pairs (interval "
             f"excludes 0): {'-' if n_resolvable is None else n_resolvable}",
             f"{'score':<10}{'tau-b':>7}{'95% interval':>16}{'w-tau':>7}{'regret':>8}"
             f"{'tau-b pre':>10}{'tau-b tail':>11}{'res.pairs acc (n)':>19}"]
    for name, r in validation["scores"].items():
        ci = r.get("ci")
        accuracy = r.get("resolvable_pair_accuracy")
        resolved = "-" if accuracy is None else f"{accuracy:.2f} ({r.get('n_resolvable')})"
        lines.append(
            f"{SHORT[name]:<10}{_tau(r['kendall_tau']):>7}"
            f"{(f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '-'):>16}"
            f"{_tau(r['weighted_tau']):>7}{_points(r['top1_regret']):>8}"
            f"{_tau(r.get('kendall_tau_pretrained')):>10}"
            f"{_tau(r.get('kendall_tau_tail_third')):>11}{resolved:>19}")
    return "\n".join(lines)


def csv_columns(document: dict[str, Any]) -> dict[str, list[Any]]:
    """Equal-length columns, one row per backbone in rank order."""
    rows = document["rows"]
    columns: dict[str, list[Any]] = {
        "rank": list(range(1, len(rows) + 1)),
        "label": [r["label"] for r in rows], "backbone": [r["backbone"] for r in rows],
        "file": [r["file"] for r in rows], "pretrained": [r["pretrained"] for r in rows],
    }
    for name in score_columns(rows):
        columns[name] = [r["scores"].get(name) for r in rows]
    if any(r.get("combination") for r in rows):  # rank --pairs: combination rows
        for key in CSV_COMBINATION:
            columns[key] = [_combination_cell(r.get("combination"), key) for r in rows]
    if any(r["measured"] for r in rows):
        for key in CSV_MEASURED:
            columns[key] = [(r["measured"] or {}).get(key) for r in rows]
    return columns


def _combination_cell(combination: dict[str, Any] | None, key: str) -> Any:
    """A combination's CSV cell (members joined by ``+``); empty for a single file."""
    if combination is None:
        return None
    value = combination.get(key)
    return "+".join(value) if key == "members" else value


def write_csv(path: Path, document: dict[str, Any]) -> Path:
    """Write :func:`csv_columns` atomically."""
    from featlt.heads.workflow import write_predictions_csv

    return write_predictions_csv(path, csv_columns(document), what="ranking CSV")
