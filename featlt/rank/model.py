"""The data model of ``featlt rank``: its settings, inputs, results and sort order.

A leaf: it imports no other ``featlt.rank`` module, and every other one imports it (so
:mod:`featlt.rank.ranking`, :mod:`featlt.rank.recommend` and :mod:`featlt.rank.validate_rows`
need not import each other; ``tests/test_rank_imports.py`` holds that).

- :data:`SCORE_COLUMNS`: the ranked scores, in table order;
- :class:`RankInput`: one feature file to rank; :class:`HeadSettings`: what full mode fits;
  :class:`Measured`: one backbone's best validation-selected head; :class:`PairSettings`: which
  combinations ``--pairs`` scores; :class:`RankConfig`: every setting; :class:`Combination`:
  what a combination row adds; :class:`RankedFile`: one row of the ranking;
- :func:`sort_key`: the order of the table (descending, missing values last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.store.members import DEFAULT_MAX_WIDTH, describe_backbone, is_pretrained

KIND = "featlt.rank"
#: 2: every score is null (never 0) where undefined, and ``missing`` / ``saturated`` say which.
#: 3: ``validation`` holds the resolvable pairs and every score's resolvable-pair accuracy.
#: 4: ``columns`` (the ranked score columns, in table order), ``run`` (featlt's version, git
#: commit, command, machine, date), the ``featlt_v1`` column, and ``featlt`` naming the default
#: score chosen by the rule of docs/methods.md ("Choosing the default score").
#: 5: ``rank --pairs``: every row has ``combination`` (null for a single file; for a
#: combination of files scored in memory: its members, their files, width, parameter count, CPU
#: time per image relative to the cheapest member, the combined store full mode wrote) and
#: ``cpu_seconds_per_image``; ``file`` is null for a combination no file holds; ``pairs`` holds
#: the settings and the combinations skipped; ``recommendation.combination`` the cross-validated
#: gain of the best combination over the best single backbone (docs/methods.md, "Ranking
#: combinations").
VERSION = 5
#: The scores every ranking computes, in table order: featlt's, then the comparators.
BASE_SCORES: tuple[str, ...] = ("featlt", "logme", "gbc", "sfda", "knn", "ncm", "params",
                                "imagenet_top1")
#: Issue 17's candidate scores (docs/methods.md, "Candidate probe scores"): ``featlt_v1`` (the
#: formula of featlt.rank.formula) and ``logme_ncm`` (from the other scores of every ranked file),
#: always computed, then the opt-in ones.
CANDIDATE_SCORES: tuple[str, ...] = ("featlt_v1", "logme_ncm", "ridge", "ridge_tail", "cv_la")
#: Opt-in scores (``featlt rank --with NAME``): NAME -> the columns it adds. A column not asked
#: for is absent from the rows (not null), and sorting by it is refused.
OPTIONAL_SCORES: dict[str, tuple[str, ...]] = {"ridge": ("ridge", "ridge_tail"),
                                               "cv_la": ("cv_la",)}
#: The candidate that the ``featlt`` column holds: chosen by the rule of docs/methods.md
#: ("Choosing the default score", fixed 2026-12-06 before the runs it reads) on CIFAR-10-LT IF100
#: and IF10 (results/ranking_validation.json, ``default_score_rule``).
DEFAULT_SCORE = "logme_ncm"
#: Every score a ranking may hold, in table order (every one: higher is better); a ranking shows
#: the ones it computed.
SCORE_COLUMNS: tuple[str, ...] = BASE_SCORES + CANDIDATE_SCORES
STATIC = ("params", "imagenet_top1")


def needed_optional(optional: tuple[str, ...]) -> tuple[str, ...]:
    """``optional`` plus the opt-in score :data:`DEFAULT_SCORE` comes from, if it is one."""
    needed = [name for name, columns in OPTIONAL_SCORES.items() if DEFAULT_SCORE in columns]
    return tuple(dict.fromkeys((*optional, *needed)))


@dataclass(frozen=True)
class RankInput:
    """One feature file to rank."""

    path: Path
    label: str  # short unique name (the file stem)
    provenance: dict[str, Any] = field(repr=False)
    identity: str  # JSON of what makes two files' features the same (backbone + store settings)
    backbone: dict[str, Any] = field(repr=False)  # the provenance's backbone record
    has_test: bool = False  # the file holds the test split

    @property
    def pretrained(self) -> bool:
        """Whether the features come from trained weights (not random init, not raw pixels);
        a combined feature set: whether any member's do."""
        return is_pretrained(self.backbone)

    def describe(self) -> str:
        """The backbone in words: zoo name or timm model, resolution, inner layer; a combined
        feature set's members joined by ``" + "`` (a member without a backbone record by its
        part of a ``A+B`` label)."""
        members, parts = self.backbone.get("members"), self.label.split("+")
        if isinstance(members, list) and len(members) == len(parts):
            return " + ".join(describe_backbone(m.get("backbone") or {}, part)
                              for m, part in zip(members, parts, strict=True))
        return describe_backbone(self.backbone, self.label)


@dataclass(frozen=True)
class HeadSettings:
    """What full mode fits; part of the reuse key."""

    heads: tuple[str, ...] = ("all",)
    seed: int = 0
    n_bootstrap: int = 1000
    max_epochs: int | None = None  # cap on every trainable head's epochs (None: each head's own)

    def overrides(self) -> dict[str, Any] | None:
        return None if self.max_epochs is None else {"max_epochs": self.max_epochs}


@dataclass(frozen=True)
class Measured:
    """One backbone's best validation-selected head and its test results."""

    head: str
    head_dir: str
    val_balanced_accuracy: float
    balanced_accuracy: float
    balanced_accuracy_ci: list[float] | None
    tail_third: float | None
    reused: bool
    summary: str  # path of the summary.json
    positions: np.ndarray = field(repr=False)  # (n_test,) source positions, ascending
    labels: np.ndarray = field(repr=False)  # (n_test,) true class of each test image
    predictions: np.ndarray = field(repr=False)  # (n_test,) predicted class of each test image

    def record(self) -> dict[str, Any]:
        return {"head": self.head, "head_dir": self.head_dir,
                "val_balanced_accuracy": self.val_balanced_accuracy,
                "balanced_accuracy": self.balanced_accuracy,
                "balanced_accuracy_ci": self.balanced_accuracy_ci,
                "tail_third": self.tail_third, "reused": self.reused, "summary": self.summary}


@dataclass(frozen=True)
class PairSettings:
    """``rank --pairs``: which combinations of the ranked files are scored, and fitted."""

    max_k: int = 2  # members of the largest combination (2: pairs; more: grown greedily)
    top: int = 3  # combinations kept by featlt's score: fitted by --full, grown by --pairs-max-k
    max_width: int = DEFAULT_MAX_WIDTH  # the widest combined feature scored

    def check(self) -> None:
        if self.max_k < 2:
            raise FeatltError(f"--pairs-max-k {self.max_k}: a combination has at least 2 "
                              "members; use 2 (pairs) or more")
        if self.top < 1:
            raise FeatltError(f"--pairs-top {self.top}: must be at least 1, e.g. 3")
        if self.max_width < 1:
            raise FeatltError(f"--max-width {self.max_width}: must be at least 1, e.g. "
                              f"{DEFAULT_MAX_WIDTH}")


@dataclass(frozen=True)
class RankConfig:
    """Every setting of a ranking; echoed into its document."""

    by: str = "featlt"  # the score that sorts the table
    full: bool = False  # also fit the heads and measure each backbone
    validate: bool = False  # rank correlation of every score with the measured ranking
    heads: HeadSettings = field(default_factory=HeadSettings)
    heads_dir: Path = Path("featlt-rank-heads")  # full mode's head folders (reused when equal)
    # other fit-classifier summary.json files full mode may reuse (same features, view, settings)
    reuse_summaries: tuple[Path, ...] = ()
    n_bootstrap: int = 1000  # resamples of every interval and probability
    seed: int = 0
    # full mode's pick: K-fold cross-validated balanced accuracy over the training view (0: the
    # best validation balanced accuracy, the rule before issue 17; featlt.rank.crossval)
    cv_folds: int = 5
    optional: tuple[str, ...] = ()  # opt-in candidate scores (OPTIONAL_SCORES keys)
    pairs: PairSettings | None = None  # rank --pairs: also the combinations of the files

    def check(self) -> None:
        if self.pairs is not None:
            self.pairs.check()
        if self.by not in (*SCORE_COLUMNS, "measured"):
            raise FeatltError(f"--by {self.by}: unknown score; use one of "
                              f"{', '.join(SCORE_COLUMNS)} or measured (with --full)")
        for name in self.optional:
            if name not in OPTIONAL_SCORES:
                raise FeatltError(f"--with {name}: unknown score; use one of "
                                  f"{', '.join(OPTIONAL_SCORES)}")
        for name, columns in OPTIONAL_SCORES.items():
            if self.by in columns and name not in self.optional:
                raise FeatltError(f"--by {self.by}: not computed in this ranking; add "
                                  f"--with {name}")
        if self.by == "measured" and not self.full:
            raise FeatltError("--by measured: needs --full (the heads are fitted there)")
        if self.validate and not self.full:
            raise FeatltError("--validate: needs --full, which measures the accuracy the "
                              "scores are validated against")
        if self.n_bootstrap < 1:
            raise FeatltError(f"--bootstrap {self.n_bootstrap}: must be at least 1")
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int) \
                or self.cv_folds < 0 or self.cv_folds == 1:
            raise FeatltError(f"--cv-folds {self.cv_folds!r}: use 0 (pick on validation only) "
                              "or K >= 2 (pick by K-fold cross-validation), e.g. 5")


@dataclass(frozen=True)
class Combination:
    """What a combination row (``rank --pairs``) adds to a row: its members and its cost."""

    members: tuple[str, ...]  # the member files' labels, in combination order
    files: tuple[Path, ...]  # the member files
    width: int  # sum of the members' widths
    cpu_relative: float | None  # CPU time per image over the cheapest member's (None: untimed)
    written: Path | None = None  # the combined store full mode wrote (None: scored in memory)

    def record(self) -> dict[str, Any]:
        return {"members": list(self.members), "files": [str(p) for p in self.files],
                "width": self.width, "cpu_time_relative": self.cpu_relative,
                "combined_file": None if self.written is None else str(self.written)}


@dataclass
class RankedFile:
    """One row of the ranking: a feature file, or a combination of files (``rank --pairs``)."""

    entry: RankInput
    scores: dict[str, float | None]  # None where a score is undefined on this file
    static_source: str
    report: dict[str, Any] = field(repr=False)
    seconds: float = 0.0
    measured: Measured | None = None
    combination: Combination | None = None  # None: a single file
    cpu_seconds: float | None = None  # CPU seconds per image of the backbone(s) (--pairs)

    def record(self) -> dict[str, Any]:
        unwritten = self.combination is not None and self.combination.written is None
        return {
            "label": self.entry.label, "file": None if unwritten else str(self.entry.path),
            "backbone": self.entry.describe(), "pretrained": self.entry.pretrained,
            "scores": self.scores, "imagenet_top1_source": self.static_source,
            "measured": None if self.measured is None else self.measured.record(),
            "score_seconds": self.seconds,
            "combination": None if self.combination is None else self.combination.record(),
            "cpu_seconds_per_image": self.cpu_seconds,
        }


def defined(value: Any) -> float | None:
    """``value`` as a float, or None when it is absent or not finite (NaN, inf): undefined."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def sort_key(row: RankedFile, by: str) -> float:
    """Ascending sort key for a descending ``by`` value; missing values last, stable."""
    value = defined((row.measured.balanced_accuracy if row.measured else None)
                    if by == "measured" else row.scores.get(by))
    return np.inf if value is None else -value
