"""PNG plots of a separability report (matplotlib, Agg backend; :func:`write_plots` renames
them into place only once all are written).

- ``<stem>_per_class.png``: per-class leave-one-out kNN and NCM recall, and per-class LogME
  (plain and class-balanced), against the class's training count (log axis);
- ``<stem>_bins.png``: the bin-by-bin matrices (kNN confusion, Bhattacharyya overlap) as heat maps,
  relative thirds and, where non-empty, absolute groups; null cells are hatched grey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featlt.runtime import OutputBatch, atomic_outputs


def _figure_module() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110, format="png")
    return path


def _values(record: dict[str, Any], key: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in record[key]], dtype=np.float64)


def plot_per_class(record: dict[str, Any], path: Path, title: str) -> Path:
    """Per-class scores against training count, from a report ``record()``."""
    plt = _figure_module()
    per_class = record["per_class"]
    counts = np.asarray(per_class["count"], dtype=np.float64)
    shown = counts > 0
    fig, (ax_acc, ax_logme) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for key, marker, label in (("knn_recall", "o", "kNN recall (LOO)"),
                               ("ncm_recall", "s", "NCM recall (LOO)")):
        ax_acc.scatter(counts[shown], _values(per_class, key)[shown], marker=marker, label=label,
                       alpha=0.7)
    ax_acc.set(xscale="log", xlabel="training samples of the class", ylabel="recall",
               ylim=(-0.05, 1.05), title="per-class recall (higher is better)")
    ax_acc.legend(loc="lower right")
    for key, marker, label in (("logme", "o", "LogME"),
                               ("logme_balanced", "^", "class-balanced LogME")):
        ax_logme.scatter(counts[shown], _values(per_class, key)[shown], marker=marker,
                         label=label, alpha=0.7)
    ax_logme.set(xscale="log", xlabel="training samples of the class",
                 ylabel="log evidence / N", title="per-class LogME (higher is better)")
    ax_logme.legend(loc="lower right")
    fig.suptitle(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_bin_matrices(record: dict[str, Any], path: Path, title: str) -> Path:
    """Heat maps of the bin-by-bin matrices of a report ``record()``."""
    plt = _figure_module()
    panels = []
    for grouping, block in record["bin_matrices"].items():
        for kind, label in (("knn_confusion", "kNN confusion"),
                            ("bhattacharyya", "Bhattacharyya overlap")):
            panels.append((f"{label} ({grouping})", block["groups"], block[kind]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4),
                             layout="constrained")
    for ax, (name, groups, matrix) in zip(np.atleast_1d(axes), panels, strict=True):
        values = np.array([[np.nan if v is None else v for v in row] for row in matrix])
        image = ax.imshow(np.ma.masked_invalid(values), cmap="magma_r", vmin=0)
        ax.set_facecolor("#cccccc")
        ax.set_xticks(range(len(groups)), groups, rotation=30)
        ax.set_yticks(range(len(groups)), groups)
        ax.set(xlabel="other class's group", ylabel="class's group", title=name)
        top = np.nanmax(values) if np.isfinite(values).any() else 0.0
        for (i, j), v in np.ndenumerate(values):
            dark = np.isfinite(v) and top > 0 and v > 0.6 * top
            ax.text(j, i, "null" if np.isnan(v) else f"{v:.3g}", ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"{title} (lower is better)")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_plots(
    record: dict[str, Any], directory: str | Path, stem: str, batch: OutputBatch | None = None
) -> list[Path]:
    """Write both plots of one report into ``directory``; returns their paths.

    They are written under temporary names and renamed into place with the rest of ``batch``
    (by themselves when None), so a failure leaves no plot of this run and every older one as
    it was.
    """
    if batch is None:
        with atomic_outputs("plot") as own:
            return write_plots(record, directory, stem, own)
    directory = Path(directory)
    per_class, bins = directory / f"{stem}_per_class.png", directory / f"{stem}_bins.png"
    plot_per_class(record, batch.add(per_class), stem)
    plot_bin_matrices(record, batch.add(bins), stem)
    return [per_class, bins]
