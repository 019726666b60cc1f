"""``featlt report``'s one entry point: read the results, build the page, write it atomically."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from featlt import __version__
from featlt.report.model import DatasetResults, NotShown, Results
from featlt.report.page import Section, document
from featlt.report.sections import (
    Context,
    heads_section,
    provenance_section,
    ranking_section,
    separability_section,
)
from featlt.report.sources import find_results
from featlt.report.svg import esc
from featlt.runtime import atomic_output


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote."""

    path: Path
    bytes: int
    datasets: list[str]  # each dataset in words, in page order
    backbones: int
    not_shown: list[NotShown]  # files or parts left out, and why


def write_report(paths: list[Path], output: Path) -> ReportSummary:
    """Read every result under ``paths`` and write the page to ``output`` (temporary file, then
    rename: a failed run leaves no half-written page and keeps an earlier one).

    Raises:
        FeatltError: nothing usable was found (naming every input and what was looked for).
    """
    results = find_results(paths)
    html = build_page(results)
    data = html.encode("utf-8")
    with atomic_output(output, "report") as tmp:
        tmp.write_bytes(data)
    return ReportSummary(output, len(data),
                         [f"{d.dataset.name} ({d.dataset.view})" for d in results.datasets],
                         sum(len(d.backbones()) for d in results.datasets),
                         list(results.not_shown))


def build_page(results: Results) -> str:
    """The page's HTML for ``results`` (parts that cannot be read join ``not_shown``)."""
    ctx = Context(results.not_shown)
    sections = [_dataset_section(group, index, ctx, len(results.datasets))
                for index, group in enumerate(results.datasets, 1)]
    return document("featlt report", _intro(results), sections)


def _dataset_section(group: DatasetResults, index: int, ctx: Context, n_datasets: int) -> Section:
    anchor = ctx.anchor(f"dataset-{index}" if n_datasets > 1 else "dataset")
    children = [ranking_section(rank, ctx, anchor) for rank in group.ranks]
    class_names: list[str] = []
    for heads in group.heads.values():
        class_names = class_names or heads.class_names
    for backbone in group.backbones():
        parts = []
        if backbone in group.separability:
            result = group.separability[backbone]
            names = class_names or [str(n) for n in
                                    (result.report.get("data") or {}).get("class_names") or []]
            parts.append(separability_section(result, names, ctx, f"{anchor}-{backbone}"))
        if backbone in group.heads:
            parts.append(heads_section(group.heads[backbone], ctx, f"{anchor}-{backbone}"))
        if parts:
            children.append(Section(ctx.anchor(anchor, "backbone", backbone),
                                    f"Backbone {backbone}",
                                    "Its feature space and the heads fitted on it.", "",
                                    level=3, children=parts))
    children.append(provenance_section(group, ctx, anchor))
    return Section(anchor, f"Dataset {group.dataset.name} ({group.dataset.view})",
                   f"Every result computed on {group.dataset.name}, view {group.dataset.view}.",
                   "", children=children)


def _intro(results: Results) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<p>Made by featlt {esc(__version__)} (<code>featlt report</code>) on {esc(when)} "
             f"on {esc(platform.node())}. Every number is read from the result files named in "
             "each section; every score is marked with its direction.</p>"]
    for group in results.datasets:
        for rank in group.ranks:
            sentence = (rank.document.get("recommendation") or {}).get("sentence")
            if sentence:
                where = f"{group.dataset.name} ({group.dataset.view}): " if len(
                    results.datasets) > 1 else ""
                parts.append(f'<p class="recommendation">{esc(where + sentence)}</p>')
    if len(results.datasets) > 1:
        names = "; ".join(f"{d.dataset.name} ({d.dataset.view})" for d in results.datasets)
        parts.append(f'<p class="note">These results come from {len(results.datasets)} '
                     f"different datasets or views ({esc(names)}): each has its own section, and "
                     "no table or chart mixes them.</p>")
    if results.not_shown:
        items = "".join(f"<li><code>{esc(item.path)}</code>: {esc(item.reason)}</li>"
                        for item in results.not_shown)
        parts.append(f'<div class="box" id="not-shown"><strong>Not shown</strong><ul>{items}'
                     "</ul></div>")
    return "".join(parts)
