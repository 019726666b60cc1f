"""The page's charts as inline SVG text: scatter plots, heat maps, reliability diagrams and
stacked share bars. Every mark carries a ``<title>`` with its exact values (hover text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featlt.report.svg import (
    FONT,
    GROUP_COLOURS,
    OKABE_ITO,
    Scale,
    axes,
    esc,
    fmt,
    padded,
    svg_open,
    text_colour,
    viridis,
)

MAX_TEXT_LABELS = 40  # more points than this: names as hover text only, not written beside them


@dataclass(frozen=True)
class Point:
    """One mark of a scatter plot."""

    x: float
    y: float
    label: str  # written beside the mark (a class or backbone name)
    hover: str  # the exact values, shown on hover
    colour: str = OKABE_ITO[0]
    hollow: bool = False  # an open ring instead of a filled disc (a second series)


def legend(entries: Sequence[tuple[str, str, bool]], x: float, y: float) -> str:
    """A legend row of (name, colour, hollow) marks starting at (x, y)."""
    parts, offset = [f'<g font-size="{FONT}">'], 0.0
    for name, colour, hollow in entries:
        fill = "none" if hollow else colour
        parts.append(f'<circle cx="{x + offset + 5:.1f}" cy="{y - 4:.1f}" r="4.5" fill="{fill}" '
                     f'stroke="{colour}" stroke-width="1.5"/>'
                     f'<text x="{x + offset + 13:.1f}" y="{y:.1f}">{esc(name)}</text>')
        offset += 24 + 6.5 * len(name)
    return "".join(parts) + "</g>"


def scatter(points: Sequence[Point], x_label: str, y_label: str, title: str, log_x: bool = False,
            y_limits: tuple[float, float] | None = None,
            legend_entries: Sequence[tuple[str, str, bool]] = (), width: int = 560,
            height: int = 360) -> str:
    """A scatter plot of ``points`` (log x axis when ``log_x``: x must be > 0)."""
    left, right, top, bottom = 58, width - 16, 30 if legend_entries else 14, height - 46
    xs = [p.x for p in points]
    x = Scale(*padded(xs, log=log_x), left, right, log=log_x)
    y = Scale(*(y_limits or padded([p.y for p in points])), bottom, top)
    parts = [svg_open(width, height, title), axes(x, y, x_label, y_label)]
    if legend_entries:
        parts.append(legend(legend_entries, left, 16))
    write_labels = len({p.label for p in points}) <= MAX_TEXT_LABELS
    labelled: set[str] = set()
    for p in points:
        px, py = x(p.x), y(p.y)
        fill = "none" if p.hollow else p.colour
        parts.append(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="{fill}" '
                     f'stroke="{p.colour}" stroke-width="1.5"><title>{esc(p.hover)}</title>'
                     '</circle>')
        if write_labels and p.label not in labelled:
            labelled.add(p.label)
            anchor, dx = ("end", -7) if px > (left + right) / 2 else ("start", 7)
            parts.append(f'<text x="{px + dx:.1f}" y="{py - 5:.1f}" font-size="{FONT - 1}" '
                         f'text-anchor="{anchor}">{esc(p.label)}</text>')
    return "".join(parts) + "</svg>"


def heatmap(matrix: Sequence[Sequence[float | None]], row_labels: Sequence[str],
            column_labels: Sequence[str], title: str, value_label: str) -> str:
    """A heat map (viridis over the finite values; an undefined cell grey, marked n/a)."""
    cell = 64
    n_rows, n_columns = len(row_labels), len(column_labels)
    left, top = 96, 34
    width, height = left + cell * n_columns + 10, top + cell * n_rows + 10
    values = [v for row in matrix for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    parts = [svg_open(width, height, title), f'<g font-size="{FONT}">']
    for j, name in enumerate(column_labels):
        parts.append(f'<text x="{left + cell * (j + 0.5):.1f}" y="{top - 8}" '
                     f'text-anchor="middle">{esc(name)}</text>')
    for i, name in enumerate(row_labels):
        parts.append(f'<text x="{left - 6}" y="{top + cell * (i + 0.5) + 4:.1f}" '
                     f'text-anchor="end">{esc(name)}</text>')
        for j, value in enumerate(matrix[i]):
            colour = "#cccccc" if value is None else viridis(
                0.5 if high == low else (value - low) / (high - low))
            shown = "n/a" if value is None else fmt(value, 2)
            hover = f"{name} vs {column_labels[j]}: {value_label} " + (
                "undefined (an empty group)" if value is None else repr(value))
            parts.append(f'<rect class="cell" x="{left + cell * j}" y="{top + cell * i}" '
                         f'width="{cell}" height="{cell}" fill="{colour}" stroke="#fff">'
                         f'<title>{esc(hover)}</title></rect>'
                         f'<text x="{left + cell * (j + 0.5):.1f}" '
                         f'y="{top + cell * (i + 0.5) + 4:.1f}" text-anchor="middle" '
                         f'fill="{text_colour(colour)}">{esc(shown)}</text>')
    return "".join(parts) + "</g></svg>"


def reliability(count: np.ndarray, hits: np.ndarray, confidence_sum: np.ndarray,
                title: str, colour: str) -> str:
    """A reliability diagram: per equal-width confidence bin (B,) the accuracy as a bar, the
    mean confidence as a tick, the diagonal of perfect calibration; empty bins are left out."""
    width, height = 300, 250
    left, right, top, bottom = 50, width - 10, 12, height - 46
    x, y = Scale(0, 1, left, right), Scale(0, 1, bottom, top)
    n_bins = len(count)
    parts = [svg_open(width, height, title), axes(x, y, "confidence", "accuracy"),
             f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" '
             'stroke="#999" stroke-dasharray="4 3"/>']
    for b in range(n_bins):
        if count[b] == 0:
            continue
        accuracy, mean_conf = hits[b] / count[b], confidence_sum[b] / count[b]
        x0, x1 = x(b / n_bins), x((b + 1) / n_bins)
        hover = (f"confidence ({b}/{n_bins}, {b + 1}/{n_bins}]: {int(count[b])} images, "
                 f"accuracy {accuracy:.3f}, mean confidence {mean_conf:.3f}")
        parts.append(f'<rect class="bin" x="{x0 + 1:.1f}" y="{y(accuracy):.1f}" '
                     f'width="{x1 - x0 - 2:.1f}" height="{y(0) - y(accuracy):.1f}" '
                     f'fill="{colour}" fill-opacity="0.8"><title>{esc(hover)}</title></rect>'
                     f'<line x1="{x0 + 1:.1f}" x2="{x1 - 1:.1f}" y1="{y(mean_conf):.1f}" '
                     f'y2="{y(mean_conf):.1f}" stroke="#000" stroke-width="2"/>')
    return "".join(parts) + "</svg>"


def share_bars(rows: Sequence[tuple[str, dict[str, float | None]]], groups: Sequence[str],
               title: str) -> str:
    """Horizontal bars of shares (0..1) per row, one segment per group in ``groups`` order."""
    bar, left, width = 26, 150, 560
    right = width - 12
    height = 40 + bar * len(rows) + 24
    x = Scale(0, 1, left, right)
    parts = [svg_open(width, height, title),
             legend([(g, GROUP_COLOURS.get(g, OKABE_ITO[i % len(OKABE_ITO)]), False)
                     for i, g in enumerate(groups)], left, 16),
             f'<g font-size="{FONT}">']
    for i, (name, shares) in enumerate(rows):
        top, start = 30 + bar * i, 0.0
        parts.append(f'<text x="{left - 6}" y="{top + bar / 2 + 4:.1f}" text-anchor="end">'
                     f'{esc(name)}</text>')
        for k, group in enumerate(groups):
            share = shares.get(group)
            if not share:
                continue
            colour = GROUP_COLOURS.get(group, OKABE_ITO[k % len(OKABE_ITO)])
            parts.append(f'<rect class="bar" x="{x(start):.1f}" y="{top + 2}" '
                         f'width="{x(start + share) - x(start):.1f}" height="{bar - 4}" '
                         f'fill="{colour}"><title>{esc(f"{name}: {group} {share:.3f}")}</title>'
                         '</rect>')
            start += share
    bottom = 30 + bar * len(rows)
    for value in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{x(value):.1f}" y="{bottom + 16}" text-anchor="middle">'
                     f'{value:g}</text>')
    return "".join(parts) + "</g></svg>"
