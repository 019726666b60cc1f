"""PNG plot of a ranking (``featlt rank --plot FILE``), written atomically.

Full mode: one panel per score, the score (x) against the measured balanced accuracy of each
backbone's best validation-selected head (y, with its 95% interval), one labelled point per
backbone, Kendall tau-b in the title when validated; every score the ranking computed (an opt-in
score not asked for has no panel). Cheap mode: featlt's score (or the sorting
score) per backbone as horizontal bars.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from featlt.rank.table import SHORT, score_columns


def write_ranking_plot(document: dict[str, Any], path: Path) -> Path:
    """Draw the ranking into ``path`` (PNG) and return it."""
    from featlt.separability.plots import _figure_module, _save

    plt = _figure_module()
    rows = document["rows"]
    if all(r["measured"] for r in rows):
        fig = _scatter(plt, document)
    else:
        by = document["config"]["by"]
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.5))
        # a missing score draws no bar (never a bar of 0) and says so in its label
        values = [math.nan if r["scores"].get(by) is None else r["scores"][by] for r in rows]
        labels = [r["label"] + (" (missing)" if r["scores"].get(by) is None else "")
                  for r in rows]
        ax.barh(labels[::-1], values[::-1], color="tab:blue")
        ax.set_xlabel(f"{SHORT.get(by, by)} (higher is better)")
        ax.set_title("featlt rank (cheap mode: scores only)")
        fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def _scatter(plt: Any, document: dict[str, Any]) -> Any:
    rows = document["rows"]
    validation = document.get("validation", {}).get("scores", {})
    columns = score_columns(rows)
    n_cols = 4
    n_rows = -(-len(columns) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 3.4 * n_rows), squeeze=False)
    measured = [r["measured"]["balanced_accuracy"] for r in rows]
    errors = [_error(r["measured"]) for r in rows]
    for ax, name in zip(axes.ravel(), columns, strict=False):
        scale = 1e-6 if name == "params" else 1.0  # the column is in millions
        points = [(None if r["scores"].get(name) is None else r["scores"][name] * scale, m, e, r)
                  for r, m, e in zip(rows, measured, errors, strict=True)]
        shown = [p for p in points if p[0] is not None]
        for x, y, err, row in shown:
            ax.errorbar(x, y, yerr=[[err[0]], [err[1]]], fmt="o",
                        color="tab:blue" if row["pretrained"] else "tab:red", capsize=2)
            ax.annotate(row["label"], (x, y), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
        tau = validation.get(name, {}).get("kendall_tau")
        title = SHORT[name] + ("" if tau is None else f"  (tau-b {tau:.2f})")
        missing = len(points) - len(shown)
        ax.set_title(title + (f", {missing} absent" if missing else ""), fontsize=9)
        ax.set_xlabel(SHORT[name], fontsize=8)
        ax.set_ylabel("measured balanced accuracy", fontsize=8)
    for ax in axes.ravel()[len(columns):]:
        ax.set_visible(False)
    fig.suptitle("each score vs measured balanced accuracy (blue: pretrained, red: not)")
    fig.tight_layout()
    return fig


def _error(measured: dict[str, Any]) -> tuple[float, float]:
    ci = measured.get("balanced_accuracy_ci")
    value = measured["balanced_accuracy"]
    return (0.0, 0.0) if not ci else (max(value - ci[0], 0.0), max(ci[1] - value, 0.0))
