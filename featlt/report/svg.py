"""Inline SVG building blocks: escaping, colour-blind-safe colours, axes with ticks.

Charts are written as SVG text by hand (no plotting library): every mark can carry a
``<title>`` (hover text), the text stays selectable, and a page of 10 backbones x 100 classes
stays small. Colours: the Okabe-Ito palette for categories, viridis for heat maps (both readable
with the common colour-vision deficiencies).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Okabe & Ito (2008), "Color Universal Design": categorical colours safe for colour-blind readers.
OKABE_ITO: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                              "#F0E442", "#000000")
#: Shot groups keep one colour everywhere on the page: head blue, mid orange, tail vermilion.
GROUP_COLOURS: dict[str, str] = {"head_third": "#0072B2", "mid_third": "#E69F00",
                                 "tail_third": "#D55E00", "many": "#0072B2",
                                 "medium": "#E69F00", "few": "#D55E00"}
#: matplotlib's viridis sampled at 0, 0.1, ..., 1 (linear interpolation in between).
_VIRIDIS: tuple[str, ...] = ("#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c",
                             "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725")
FONT = 12  # px at the chart's natural width


def esc(text: object) -> str:
    """``text`` escaped for HTML and SVG text and attribute values (quotes included)."""
    return html.escape(str(text), quote=True)


def viridis(t: float) -> str:
    """The viridis colour at ``t`` in [0, 1] (clipped) as ``#rrggbb``."""
    t = min(max(t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    low = min(int(t), len(_VIRIDIS) - 2)
    a, b = _VIRIDIS[low], _VIRIDIS[low + 1]
    mix = [round(int(a[i:i + 2], 16) * (1 - (t - low)) + int(b[i:i + 2], 16) * (t - low))
           for i in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``#rrggbb``)."""
    r, g, b = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


def fmt(value: float, digits: int = 3) -> str:
    """A number for a label: ``digits`` significant digits, no exponent for everyday sizes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.{digits}g}" if 1e-3 <= abs(value) < 1e6 else f"{value:.2e}"


@dataclass(frozen=True)
class Scale:
    """Maps data values in [low, high] (log10 when ``log``) to pixels in [start, end]."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        low, high, value = ((math.log10(self.low), math.log10(self.high), math.log10(value))
                            if self.log else (self.low, self.high, value))
        share = 0.5 if high == low else (value - low) / (high - low)
        return self.start + share * (self.end - self.start)

    def ticks(self) -> list[float]:
        """Tick values: powers of ten (and 2x, 5x when few) on a log scale, 5 steps on a
        linear one."""
        if self.log:
            values = [m * 10.0 ** e for e in range(math.floor(math.log10(self.low)),
                                                   math.ceil(math.log10(self.high)) + 1)
                      for m in (1, 2, 5)]
            inside = [v for v in values if self.low <= v <= self.high]
            powers = [v for v in inside if math.log10(v).is_integer()]
            return powers if len(powers) >= 3 else inside
        span = self.high - self.low
        if span <= 0:
            return [self.low]
        raw = span / 5
        power = 10.0 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
        first = math.ceil(self.low / step - 1e-9)
        return [round(k * step, 12) for k in range(first, math.floor(self.high / step + 1e-9)
                                                   + 1)]


def padded(values: Sequence[float], log: bool = False, floor: float | None = None,
           ceiling: float | None = None) -> tuple[float, float]:
    """A data range holding every value with a little room (log: a factor, else 5 %)."""
    low, high = min(values), max(values)
    if log:
        low, high = low / 1.3, high * 1.3
    else:
        room = (high - low) * 0.05 or abs(high) * 0.05 or 0.05
        low, high = low - room, high + room
    if floor is not None:
        low = max(low, floor)
    if ceiling is not None:
        high = min(high, ceiling)
    return low, high


def svg_open(width: int, height: int, label: str) -> str:
    """The opening tag of a chart that scales down with its box (never wider than it)."""
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{esc(label)}" '
            'xmlns="http://www.w3.org/2000/svg">'
            f'<title>{esc(label)}</title>')


def _grid_tick(line: tuple[float, float, float, float], stroke: str, at: tuple[float, float],
               anchor: str, value: float) -> str:
    """One grid line (x1, x2, y1, y2) and its tick label at ``at`` (x, y)."""
    x1, x2, y1, y2 = line
    return (f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'
            f'<text x="{at[0]:.1f}" y="{at[1]:.1f}" text-anchor="{anchor}">'
            f'{esc(fmt(value))}</text>')


def axes(x: Scale, y: Scale, x_label: str, y_label: str) -> str:
    """Axis lines, ticks with labels, grid lines and the two axis titles."""
    parts = [f'<g class="axes" font-size="{FONT}">']
    top, bottom, left, right = min(y.start, y.end), max(y.start, y.end), x.start, x.end
    for value in y.ticks():
        py = y(value)
        parts.append(_grid_tick((left, right, py, py), "#ddd", (left - 4, py + 4), "end", value))
    for value in x.ticks():
        px = x(value)
        parts.append(_grid_tick((px, px, top, bottom), "#eee", (px, bottom + FONT + 4), "middle",
                                value))
    parts.append(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{bottom:.1f}" y2="{bottom:.1f}" '
                 'stroke="#333"/>'
                 f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
                 'stroke="#333"/>'
                 f'<text x="{(left + right) / 2:.1f}" y="{bottom + 2 * FONT + 10:.1f}" '
                 f'text-anchor="middle">{esc(x_label)}</text>'
                 f'<text transform="translate({FONT + 2},{(top + bottom) / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{esc(y_label)}</text></g>')
    return "".join(parts)
