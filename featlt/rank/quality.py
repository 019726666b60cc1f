"""Scores that cannot rank: undefined on a file (missing) or the same on every file (saturated).

- **Missing**: a score that is NaN, infinite or absent on a file is recorded as None (``-`` in
  the table, null in JSON), never as 0; that file still ranks by every other score, and by this
  one it ranks below every file that has it (:func:`featlt.rank.model.sort_key`).
- **Saturated**: a score with the same value on every file that has it (at least two) cannot
  separate them on this data (e.g. SFDA is exactly 1 for both backbones of ``featlt demo
  --quick``: with fewer rows than dimensions its discriminant separates the training rows
  perfectly). The table flags its column; sorting by it (``--by``) keeps the order the files
  were given in, and a note says so.
"""

from __future__ import annotations

import math
from typing import Any

from featlt.rank.model import SCORE_COLUMNS, RankedFile

#: Column names in notes (the table's short names live in :mod:`featlt.rank.table`).
NAMES = {"featlt": "featlt", "logme": "LogME", "gbc": "GBC", "sfda": "SFDA", "knn": "kNN",
         "ncm": "NCM", "params": "parameter count", "imagenet_top1": "ImageNet top-1",
         "featlt_v1": "featlt v1 formula", "logme_ncm": "LogME+NCM rank average",
         "ridge": "ridge probe",
         "ridge_tail": "ridge probe tail third", "cv_la": "cv logit-adjusted head"}
#: Two values this close are "the same" (float noise of one computation, not a difference).
REL_TOL, ABS_TOL = 1e-9, 1e-12


def missing_scores(rows: list[RankedFile]) -> dict[str, list[str]]:
    """``{score: [labels of the files where it is undefined]}`` for the ranked scores (an opt-in
    score not asked for is absent from every row, not missing)."""
    out: dict[str, list[str]] = {}
    for score in SCORE_COLUMNS:
        labels = [row.entry.label for row in rows
                  if score in row.scores and row.scores[score] is None]
        if labels:
            out[score] = labels
    return out


def saturated_scores(rows: list[RankedFile]) -> dict[str, float]:
    """``{score: its one value}`` for the scores equal on every file that has them (>= 2)."""
    out: dict[str, float] = {}
    for score in SCORE_COLUMNS:
        values = [row.scores[score] for row in rows if row.scores.get(score) is not None]
        if len(values) >= 2 and all(math.isclose(v, values[0], rel_tol=REL_TOL, abs_tol=ABS_TOL)
                                    for v in values):
            out[score] = float(values[0])
    return out


def held_scores(rows: list[RankedFile]) -> dict[str, int]:
    """``{score: how many rows hold it}`` (a combination row of ``rank --pairs`` does not hold
    the scores not computed on combinations, e.g. GBC)."""
    return {score: sum(score in row.scores for row in rows) for score in SCORE_COLUMNS}


def quality_notes(missing: dict[str, list[str]], saturated: dict[str, float], by: str,
                  held: dict[str, int]) -> list[str]:
    """The notes a ranking prints about its missing and saturated scores (``held``:
    :func:`held_scores`)."""
    notes: list[str] = []
    for score, value in saturated.items():
        notes.append(
            f"{NAMES[score]}*: the same on every file ({value:.4g}; saturated on this data): "
            "uninformative here, it cannot separate these backbones"
            + (", so the table keeps the order the files were given in; rank by another "
               "score (e.g. --by featlt)" if score == by else ", not used to rank"))
    for score, labels in missing.items():
        if len(labels) == held.get(score, 0):
            continue  # absent everywhere (e.g. no ImageNet top-1 for any file): nothing to rank
        notes.append(
            f"{NAMES[score]}: undefined on {', '.join(labels)} (shown as -, null in JSON, "
            "never 0); "
            + ("by it, those files rank below every file that has it" if score == by else
               "ranked by the other scores as usual"))
    return notes


def quality_record(missing: dict[str, list[str]], saturated: dict[str, float]) -> dict[str, Any]:
    """The document's ``missing`` and ``saturated`` fields."""
    return {"missing": missing, "saturated": sorted(saturated)}
