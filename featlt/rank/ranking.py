"""``featlt rank``: rank backbones (feature files) for long-tailed data, and check the ranking.

:func:`rank_files` scores every file (cheap mode, :mod:`featlt.rank.scoring`), adds the static
baselines (:mod:`featlt.extractors.static_baselines`), in full mode fits the heads
(:mod:`featlt.rank.measured`), sorts, validates each score against the measured ranking
(:mod:`featlt.rank.validation`) when asked, and recommends one backbone and head with how sure
the evidence is (:mod:`featlt.rank.recommend`). The document it returns is what ``--json`` prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.rank.inputs import RankInput, open_inputs, require_same_images
from featlt.rank.measured import HeadSettings, Measured, measure

KIND = "featlt.rank"
VERSION = 1
#: The ranked scores, in table order: featlt's, then the comparators (every one: higher is better).
SCORE_COLUMNS: tuple[str, ...] = ("featlt", "logme", "gbc", "sfda", "knn", "ncm", "params",
                                  "imagenet_top1")
STATIC = ("params", "imagenet_top1")


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

    def check(self) -> None:
        if self.by not in (*SCORE_COLUMNS, "measured"):
            raise FeatltError(f"--by {self.by}: unknown score; use one of "
                              f"{', '.join(SCORE_COLUMNS)} or measured (with --full)")
        if self.by == "measured" and not self.full:
            raise FeatltError("--by measured: needs --full (the heads are fitted there)")
        if self.validate and not self.full:
            raise FeatltError("--validate: needs --full, which measures the accuracy the "
                              "scores are validated against")
        if self.n_bootstrap < 1:
            raise FeatltError(f"--bootstrap {self.n_bootstrap}: must be at least 1")


@dataclass
class RankedFile:
    """One row of the ranking."""

    entry: RankInput
    scores: dict[str, float | None]
    static_source: str
    report: dict[str, Any] = field(repr=False)
    seconds: float = 0.0
    measured: Measured | None = None

    def record(self) -> dict[str, Any]:
        return {
            "label": self.entry.label, "file": str(self.entry.path),
            "backbone": self.entry.describe(), "pretrained": self.entry.pretrained,
            "scores": self.scores, "imagenet_top1_source": self.static_source,
            "measured": None if self.measured is None else self.measured.record(),
            "score_seconds": self.seconds,
        }


def _score_entry(entry: RankInput, protocol: Any, separability_config: Any, device: str,
                 threads: int | None) -> RankedFile:
    from featlt.extractors.static_baselines import static_baselines
    from featlt.rank.scoring import score_file

    scored = score_file(entry.path, protocol, separability_config, device, threads)
    try:
        static = static_baselines(entry.provenance)
        params, top1, source = float(static.params), static.imagenet_top1, static.source
    except FeatltError as err:  # no backbone record (e.g. synthetic features): both absent
        params, top1, source = None, None, str(err)
    scores = {**scored.scores, "params": params, "imagenet_top1": top1}
    return RankedFile(entry=entry, scores=scores, static_source=source,
                      report=scored.report, seconds=scored.seconds)


def sort_key(row: RankedFile, by: str) -> float:
    """Ascending sort key for a descending ``by`` value; missing values last, stable."""
    value = (row.measured.balanced_accuracy if row.measured else None) if by == "measured" \
        else row.scores.get(by)
    return np.inf if value is None else -float(value)


def rank_files(
    paths: list[Path], protocol: Any = None, config: RankConfig | None = None,
    separability_config: Any = None, device: str = "auto", threads: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Rank the feature files; returns the JSON-able ranking document.

    Args:
        protocol: the index view (:class:`featlt.data.protocol.Protocol`) applied to every file.
        log: called with a line of progress per file (None: silent).
    """
    from featlt.data.protocol import Protocol, resolve_view
    from featlt.rank.recommend import recommend
    from featlt.runtime import to_jsonable
    from featlt.separability.evaluate import SeparabilityConfig
    from featlt.store.feature_store import FeatureStore

    config = config or RankConfig()
    config.check()
    protocol = protocol or Protocol(seed=config.seed)
    separability_config = separability_config or SeparabilityConfig(seed=config.seed)
    inputs, notes = open_inputs(list(paths), protocol.test_split, need_test=config.full)
    require_same_images(inputs, protocol, with_test=config.full)
    rows: list[RankedFile] = []
    for entry in inputs:
        row = _score_entry(entry, protocol, separability_config, device, threads)
        if config.full:
            with FeatureStore(entry.path) as store:
                view_record = resolve_view(store, protocol).record()
            row.measured = measure(entry, protocol, view_record, config.heads_dir,
                                   config.heads, device, config.reuse_summaries, log=log)
        rows.append(row)
        if log is not None:
            log(_progress(row))
    rows.sort(key=lambda r: sort_key(r, config.by))
    document: dict[str, Any] = {
        "kind": KIND, "version": VERSION, "config": _config_record(config),
        "view": rows[0].report["input"]["view"], "rows": [r.record() for r in rows],
        "separability": {r.entry.label: r.report for r in rows}, "notes": notes,
    }
    if config.validate and len(rows) > 1:
        from featlt.rank.validate_rows import validate_rows

        document["validation"] = validate_rows(rows, config.n_bootstrap, config.seed)
    elif config.validate:
        notes.append("--validate: a single backbone has no ranking to validate")
    document["recommendation"] = recommend(rows, config)
    return to_jsonable(document)


def _progress(row: RankedFile) -> str:
    value = row.scores["featlt"]
    text = (f"{row.entry.label}: featlt {'n/a' if value is None else f'{value:.4f}'} "
            f"({row.seconds:.1f} s)")
    if row.measured is not None:
        text += (f", best head {row.measured.head} balanced accuracy "
                 f"{row.measured.balanced_accuracy:.4f}"
                 + (" (reused)" if row.measured.reused else ""))
    return text


def _config_record(config: RankConfig) -> dict[str, Any]:
    record = asdict(config)
    record["heads_dir"] = str(config.heads_dir)
    record["reuse_summaries"] = [str(p) for p in config.reuse_summaries]
    return record
