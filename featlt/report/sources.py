"""Finding and recognising result files, grouped by dataset.

A RESULT argument is a file or a folder. A folder is searched recursively for ``*.json``; each
JSON document is recognised by its content, never by its name:

- ``kind == "featlt.rank"`` (``featlt rank --json-output``): versions :data:`RANK_VERSIONS`;
  the per-backbone separability reports it embeds are used too;
- ``kind == "featlt.separability.evaluate"`` (``featlt evaluate-separability -o``): one report,
  or several under ``reports``;
- a ``fit-classifier`` ``summary.json``: ``config.feature_file``, ``provenance`` and ``heads``.

A file named on the command line that is none of these, is missing or is not valid JSON goes into
the page's "not shown" box, as does a result of an unknown version; inside a folder, JSON files
featlt writes beside its results (``head.json``, ``demo_summary.json``, cross-validation
records) are skipped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError
from featlt.rank.model import KIND as RANK_KIND
from featlt.rank.model import VERSION as RANK_VERSION
from featlt.report.model import (
    DatasetResults,
    HeadsResult,
    NotShown,
    RankResult,
    Results,
    SeparabilityResult,
    dataset_of,
)
from featlt.separability.evaluate import REPORT_KIND, REPORT_VERSION

#: Rank documents this featlt reads: 2 (undefined scores are null, with ``missing`` and
#: ``saturated``) up to the version featlt.rank writes now.
RANK_VERSIONS = range(2, RANK_VERSION + 1)
LOOKED_FOR = (f"a featlt rank JSON (kind {RANK_KIND}, from `featlt rank --json-output FILE`), a "
              "fit-classifier folder (summary.json and its head folders), an "
              f"evaluate-separability report (kind {REPORT_KIND}, from `featlt "
              "evaluate-separability -o FILE`)")


class NotAResultError(Exception):
    """A JSON document that is not a result featlt report reads (the message says what it is)."""


def find_results(paths: list[Path]) -> Results:
    """Read every result under ``paths`` (files or folders), grouped by dataset.

    Raises:
        FeatltError: nothing usable was found; the message names every input and what was
            looked for.
    """
    results = Results()
    by_key: dict[str, DatasetResults] = {}
    for path in paths:
        found_before = len(results.not_shown) + _count(by_key)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            for file in files:
                _read_into(file, by_key, results.not_shown, explicit=False)
            if len(results.not_shown) + _count(by_key) == found_before:
                results.not_shown.append(NotShown(path, "a folder holding no result that "
                                                        "featlt report reads"))
        elif path.is_file():
            _read_into(path, by_key, results.not_shown, explicit=True)
        else:
            results.not_shown.append(NotShown(path, "does not exist"))
    results.datasets = list(by_key.values())
    if not results.usable():
        raise FeatltError(
            "nothing to report: "
            + "; ".join(f"{item.path}: {item.reason}" for item in results.not_shown)
            + f". Pass {LOOKED_FOR}, or a folder holding them (e.g. the output folder of "
            "`featlt demo`)"
        )
    return results


def _count(by_key: dict[str, DatasetResults]) -> int:
    return sum(len(d.ranks) + len(d.heads) + len(d.separability) for d in by_key.values())


def _read_into(path: Path, by_key: dict[str, DatasetResults], not_shown: list[NotShown],
               explicit: bool) -> None:
    """Recognise one JSON file and file its results under their dataset."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        not_shown.append(NotShown(path, f"unreadable or not valid JSON ({err}); run the "
                                        "command that wrote it again"))
        return
    try:
        found = recognise(path, document)
    except NotAResultError as err:
        if explicit:
            not_shown.append(NotShown(path, f"{err}; featlt report reads {LOOKED_FOR}"))
        return
    except FeatltError as err:
        not_shown.append(NotShown(path, str(err)))
        return
    for result in found:
        group = by_key.setdefault(result.dataset.key, DatasetResults(result.dataset))
        if isinstance(result, RankResult):
            group.ranks.append(result)
            continue
        shelf: dict[str, Any] = (group.heads if isinstance(result, HeadsResult)
                                 else group.separability)
        if result.backbone in shelf:
            if not isinstance(result, SeparabilityResult):  # a rank's embedded copy: no news
                not_shown.append(NotShown(result.path, (
                    f"fit-classifier results of backbone {result.backbone} on this dataset are "
                    f"already shown from {shelf[result.backbone].path}")))
            continue
        shelf[result.backbone] = result


def recognise(path: Path, document: Any) -> list[RankResult | HeadsResult | SeparabilityResult]:
    """The results one JSON document holds.

    Raises:
        NotAResultError: the document is none of the results featlt report reads.
        FeatltError: it is one, but of a version or shape this featlt cannot show.
    """
    if not isinstance(document, dict):
        raise NotAResultError("not a JSON object")
    kind = document.get("kind")
    if kind == RANK_KIND:
        return _rank(path, document)
    if kind == REPORT_KIND:
        if document.get("report_version") != REPORT_VERSION:
            raise FeatltError(f"separability report version {document.get('report_version')!r};"
                              f" this featlt reads version {REPORT_VERSION}; run `featlt "
                              "evaluate-separability` again")
        reports = document.get("reports", [document])
        return [_separability(path, report) for report in reports]
    if isinstance(document.get("heads"), dict) and "feature_file" in (
            document.get("config") or {}) and "provenance" in document:
        provenance = document["provenance"]
        return [HeadsResult(path, dataset_of(provenance.get("features") or {},
                                             provenance.get("view")),
                            Path(str(document["config"]["feature_file"])).stem, document)]
    if kind is not None:
        raise NotAResultError(f"kind {kind!r} is not a result featlt report shows")
    raise NotAResultError("not a result featlt writes")


def _rank(path: Path, document: dict[str, Any]) -> list[Any]:
    version = document.get("version")
    if version not in RANK_VERSIONS:
        newer = isinstance(version, int) and version > RANK_VERSION
        raise FeatltError(
            f"rank document version {version!r}, written by "
            + ("a newer featlt; update featlt to show it" if newer else
               "an older featlt; run `featlt rank --json-output` again")
            + f" (this featlt reads versions {RANK_VERSIONS.start}-{RANK_VERSIONS.stop - 1})")
    rows = document.get("rows")
    embedded = document.get("separability") or {}
    if not isinstance(rows, list) or not rows or not isinstance(embedded, dict):
        raise FeatltError("rank document without rows; run `featlt rank --json-output` again")
    # the first row holding a separability report (a combination row of `rank --pairs` has none)
    first = next((embedded[label] for label in (str(r.get("label")) for r in rows)
                  if isinstance(embedded.get(label), dict)), {})
    dataset = dataset_of((first.get("input") or {}).get("features") or {}, document.get("view"))
    found: list[Any] = [RankResult(path, dataset, document)]
    for label, report in embedded.items():
        found.append(SeparabilityResult(path, dataset, str(label), report))
    return found


def _separability(path: Path, report: Any) -> SeparabilityResult:
    if not isinstance(report, dict) or not isinstance(report.get("input"), dict):
        raise FeatltError("separability report without its input record; run `featlt "
                          "evaluate-separability` again")
    source = report["input"]
    return SeparabilityResult(path, dataset_of(source.get("features") or {}, source.get("view")),
                              Path(str(source.get("file") or source.get("store"))).stem, report)
