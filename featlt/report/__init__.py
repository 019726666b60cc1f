"""``featlt report``: one self-contained, offline HTML page of featlt's results.

It reads what other commands wrote and recomputes nothing differently: a ``featlt rank``
JSON (``--json-output``), ``fit-classifier`` output folders (``summary.json`` and the head
folders), ``evaluate-separability`` reports, or folders holding any of them.

- :mod:`~featlt.report.model`: what was read (one dataclass per kind of result) and what was not;
- :mod:`~featlt.report.sources`: finding and recognising result files, grouping them by dataset;
- :mod:`~featlt.report.headfiles`: the parts of a head folder the page shows (``head.json``
  fields, per-image test predictions);
- :mod:`~featlt.report.svg` and :mod:`~featlt.report.charts`: inline SVG charts;
- :mod:`~featlt.report.sections`: the page's sections, one function each;
- :mod:`~featlt.report.page`: the HTML document (style, table of contents, escaping);
- :mod:`~featlt.report.build`: :func:`write_report`, the one entry point.

May import: the rank layer and below (``featlt.rank.model`` for the score columns); ``featlt.demo``
and ``featlt.cli`` import it.
"""

from __future__ import annotations
