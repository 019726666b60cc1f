"""The HTML document: style, table of contents, tables, the table-sorting script.

Everything is inline (no network, no CDN, no font files): the page opens from a file on an
offline machine. All text from result files passes through :func:`featlt.report.svg.esc`. The
layout has no horizontal scroll at 400 px: charts scale down with their box, long words and
paths wrap, and wide tables scroll inside their own box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from featlt.report.svg import esc

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;
margin:0 auto;max-width:1100px;padding:0 12px 48px;overflow-wrap:anywhere}
h1{font-size:1.6em;margin:.8em 0 .2em}h2{margin-top:1.8em;border-bottom:2px solid #0072B2}
h3{margin-top:1.4em}h4{margin:1em 0 .3em}
.caption{color:#333;margin:.2em 0 .4em}
.command{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;background:#f4f4f4;
padding:6px 8px;border-radius:4px;white-space:pre-wrap;word-break:break-all;color:#333}
.table-wrap{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse;font-size:13px;overflow-wrap:normal}
th{min-width:4.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.ranking td,table.heads td,table.validation td{white-space:nowrap}
th{background:#eef3f8;cursor:pointer}th .dir{font-weight:normal;color:#555;font-size:11px}
.chart{max-width:100%;height:auto;display:block;margin:.4em 0}
.charts{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:flex-start}
.charts figure{margin:0;max-width:100%}figcaption{font-size:13px;color:#333}
.box{border:2px solid #D55E00;background:#fff6f0;padding:6px 12px;margin:1em 0}
.note{border-left:4px solid #E69F00;background:#fffaf0;padding:4px 10px;margin:.6em 0}
.recommendation{font-size:1.1em;border-left:5px solid #009E73;background:#f0faf6;
padding:8px 12px}
nav ol{padding-left:1.4em}nav li{margin:.1em 0}
nav>ol>li>ol{column-width:17em;column-gap:2em}nav li li{break-inside:avoid}
"""

# Click a column header to sort that table by it (numbers by their exact value).
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, index) {
  th.addEventListener('click', function() {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var up = th.getAttribute('data-order') !== 'up';
    th.setAttribute('data-order', up ? 'up' : 'down');
    function key(row) {
      var cell = row.cells[index], v = cell && cell.getAttribute('data-value');
      return v === null || v === '' ? (cell ? cell.textContent : '') : parseFloat(v);
    }
    rows.sort(function(a, b) {
      var x = key(a), y = key(b);
      if (typeof x === 'number' && typeof y === 'number') { return up ? x - y : y - x; }
      return up ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
    });
    rows.forEach(function(row) { body.appendChild(row); });
  });
});
"""


def number(value: Any, digits: int = 4) -> str:
    """A number as the tables show it: ``digits`` decimals for fractions and scores, integers
    as integers, large values with 4 significant digits; "-" when undefined."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.4g}"


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and, for a number, the exact value (for sorting and tests)."""

    text: str
    value: float | None = None
    hover: str | None = None


def cell(value: Any, digits: int = 4, hover: str | None = None) -> Cell:
    """A cell for a value from a result file: numbers keep their exact value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Cell(number(value, digits), float(value), hover)
    if value is None:
        return Cell("-", None, hover or "undefined (null in the result file, never 0)")
    return Cell(str(value), None, hover)


def table(headers: Sequence[str | tuple[str, str]], rows: Sequence[Sequence[Cell | str]],
          css_class: str = "", caption: str | None = None) -> str:
    """A sortable table in its own scroll box. A header may be (name, direction), e.g.
    ("tau-b", "higher is better")."""
    head = []
    for header in headers:
        name, direction = header if isinstance(header, tuple) else (header, "")
        extra = f'<br><span class="dir">{esc(direction)}</span>' if direction else ""
        head.append(f"<th>{esc(name)}{extra}</th>")
    body = []
    for row in rows:
        cells = []
        for item in row:
            item = item if isinstance(item, Cell) else Cell(str(item))
            attrs = ""
            if item.value is not None:
                attrs += f' class="num" data-value="{item.value!r}"'
            if item.hover:
                attrs += f' title="{esc(item.hover)}"'
            cells.append(f"<td{attrs}>{esc(item.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="sortable {esc(css_class)}">{title}'
            f'<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            "</div>")


@dataclass
class Section:
    """One section of the page: a heading with an anchor, what to look for, the command that
    produced its data, and its body (HTML)."""

    anchor: str
    title: str
    caption: str
    body: str
    command: str | None = None
    level: int = 2
    children: list[Section] = field(default_factory=list)

    def html(self, inherited: str | None = None) -> str:
        """The section and its children; a section without its own command shows the command
        of the section it lies in (its data came from the same run)."""
        tag = f"h{min(self.level, 4)}"
        command = self.command or (inherited if self.body else None)
        shown = f'<div class="command">$ {esc(command)}</div>' if command else ""
        own = (f'<section id="{esc(self.anchor)}" class="section"><{tag}>{esc(self.title)}</{tag}>'
               f'<p class="caption">{esc(self.caption)}</p>{shown}{self.body}')
        return own + "".join(child.html(command) for child in self.children) + "</section>"

    def toc(self, depth: int = 3) -> str:
        """This section's entry of the table of contents, ``depth`` levels deep."""
        children = "".join(child.toc(depth - 1) for child in self.children) if depth > 1 else ""
        nested = f"<ol>{children}</ol>" if children else ""
        return f'<li><a href="#{esc(self.anchor)}">{esc(self.title)}</a>{nested}</li>'


def document(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole page: head with style, title, introduction, table of contents, sections."""
    toc = "".join(section.toc() for section in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1>{intro}"
            f'<nav id="contents"><h2>Contents</h2><ol>{toc}</ol></nav>'
            + "".join(section.html() for section in sections)
            + f"<script>{SCRIPT}</script></body></html>\n")
