"""Full mode: the accuracy each backbone actually reaches with its best validation-selected head.

For every feature file the established heads are fitted by
:func:`featlt.heads.workflow.fit_classifiers` (selection on validation only, test scored once)
into ``HEADS_DIR/<label>-<key>/``, where the key hashes everything that shapes the result: the
features' identity, the index view, the head list, the seed, the bootstrap size and the
overrides. A ``summary.json`` made on the same features with the same view and settings (in that
folder, or one of ``known`` given by the caller), whose heads all have per-image test
predictions, is reused instead of fitted again, after checking that neither the summary (its
``summary_sha256`` seal) nor any ``test_predictions.csv`` (the sha256 its row records) changed
since they were written; otherwise the heads are fitted again and a line says why.

The head that represents a backbone is the one with the best *validation* balanced accuracy
(first in head order on ties); its per-image test predictions, keyed by each image's position in
the source dataset (so files holding different row subsets pair up), feed the paired bootstrap.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.rank.inputs import feature_identity
from featlt.rank.model import HeadSettings, Measured, RankInput


def heads_key(entry: RankInput, view_record: dict[str, Any], settings: HeadSettings) -> str:
    """A short hash of everything that shapes the heads' results for this file."""
    from featlt import __version__

    record = {"identity": entry.identity, "data": (entry.provenance.get("data") or {}).get(
        "sha256"), "view": view_record, "heads": list(settings.heads), "seed": settings.seed,
        "n_bootstrap": settings.n_bootstrap, "overrides": settings.overrides(),
        "featlt": __version__}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def reuse_problem(summary_path: Path, entry: RankInput, view_record: dict[str, Any],
                  settings: HeadSettings) -> str | None:
    """Why ``summary_path`` cannot stand in for fitting this file's heads (None: it can).

    It can when it was made on this file's features with the same view and settings, its seal
    (``summary_sha256``) holds, and every head's ``test_predictions.csv`` is there with the
    sha256 its row records. Reasons start with the file they are about.
    """
    from featlt.file_hash import file_sha256
    from featlt.heads.io import canonical_sha256
    from featlt.heads.workflow import SUMMARY_SEAL_KEY, expand_head_names

    if not summary_path.is_file():
        return f"{summary_path} does not exist"
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        return f"{summary_path} is unreadable ({err})"
    if not isinstance(summary, dict):
        return f"{summary_path} is not a fit-classifier summary"
    config, provenance = summary.get("config") or {}, summary.get("provenance") or {}
    same = (feature_identity(provenance.get("features") or {}) == entry.identity
            and provenance.get("view") == view_record
            and config.get("heads") == expand_head_names(settings.heads)
            and config.get("seed") == settings.seed
            and config.get("n_bootstrap") == settings.n_bootstrap
            and (config.get("overrides") or None) == settings.overrides())
    if not same:
        return f"{summary_path} was made on other features, another view or other settings"
    if SUMMARY_SEAL_KEY not in summary:
        return (f"{summary_path} records no {SUMMARY_SEAL_KEY} (edited, or written by an older "
                "featlt)")
    if summary[SUMMARY_SEAL_KEY] != canonical_sha256(summary, SUMMARY_SEAL_KEY):
        return (f"{summary_path} was changed after it was written (its content no longer "
                f"matches its {SUMMARY_SEAL_KEY})")
    rows = summary.get("heads") or {}
    if not rows:
        return f"{summary_path} lists no heads"
    for name, row in rows.items():
        path = Path(row.get("test_predictions", ""))
        if not path.is_file():
            return f"the test predictions of head {name} ({path}) are missing"
        if file_sha256(path, cached=False) != row.get("test_predictions_sha256"):
            return (f"{path} was changed after it was written (head {name}: its sha256 "
                    "differs from the one summary.json records)")
    return None


def measure(
    entry: RankInput, protocol: Any, view_record: dict[str, Any], heads_dir: Path,
    settings: HeadSettings, device: str, known: tuple[Path, ...] = (),
    log: Callable[[str], None] | None = None,
) -> Measured:
    """Fit (or reuse) the heads of one file and return its best validation-selected head.

    Args:
        known: other ``summary.json`` files (e.g. from ``featlt fit-classifier``) to reuse when
            they were made on the same features with the same view and settings.
        log: called with one line when an earlier result of these settings exists but is not
            reused (edited or incomplete), saying why the heads are fitted again.
    """
    from featlt.heads.workflow import SUMMARY_FILE, fit_classifiers

    out_dir = heads_dir / f"{entry.path.stem}-{heads_key(entry, view_record, settings)}"
    own = out_dir / SUMMARY_FILE
    summary_path: Path | None = None
    for candidate in [own, *known]:
        problem = reuse_problem(candidate, entry, view_record, settings)
        if problem is None:
            summary_path = candidate
            break
        if candidate == own and own.exists() and log is not None:
            log(f"{entry.label}: re-fitting its heads instead of reusing {out_dir}: {problem}")
    reused = summary_path is not None
    if summary_path is not None:
        summary = json.loads(summary_path.read_text())
    else:
        summary_path = own
        summary = fit_classifiers(entry.path, list(settings.heads), out_dir, protocol,
                                  device=device, seed=settings.seed,
                                  n_bootstrap=settings.n_bootstrap,
                                  overrides=settings.overrides())
    rows = summary["heads"]
    best = max(rows, key=lambda name: rows[name]["val_balanced_accuracy"])
    return measured_head(entry, summary, summary_path, best, protocol.test_split, reused)


def measured_head(entry: RankInput, summary: dict[str, Any], summary_path: Path, head: str,
                  test_split: str, reused: bool) -> Measured:
    """One head of a fit-classifier summary as :class:`Measured`, with its per-image test
    predictions (each (n_test,), sorted by source position).

    Args:
        summary: the summary document read from ``summary_path``; head: one of its heads.
    Raises:
        FeatltError: ``head`` is not in the summary (naming the heads it holds and the fix).
    """
    rows = summary["heads"]
    if head not in rows:
        raise FeatltError(f"{summary_path}: holds no head {head} (it holds {', '.join(rows)}); "
                          "rank again with --full and a --heads-dir of its own to refit")
    row = rows[head]
    positions, labels, predictions = read_test_predictions(
        Path(row["test_predictions"]), entry.path, test_split)
    return Measured(
        head=head, head_dir=row["dir"], val_balanced_accuracy=row["val_balanced_accuracy"],
        balanced_accuracy=row["balanced_accuracy"],
        balanced_accuracy_ci=row.get("balanced_accuracy_ci"), tail_third=row.get("tail_third"),
        reused=reused, summary=str(summary_path), positions=positions, labels=labels,
        predictions=predictions,
    )


def read_test_predictions(path: Path, feature_file: Path, test_split: str) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:
    """(source positions, labels, predictions), each (n_test,) int64 sorted by source position,
    from a CSV written by ``featlt fit-classifier`` on ``feature_file``."""
    from featlt.store.feature_store import FeatureStore

    try:
        with path.open(newline="") as handle:
            rows = [(int(r["row"]), int(r["label"]), int(r["prediction"]))
                    for r in csv.DictReader(handle)]
    except (OSError, KeyError, ValueError) as err:
        raise FeatltError(
            f"test predictions {path}: unreadable ({err}); delete the head folder and rank "
            "again with --full to refit"
        ) from err
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    with FeatureStore(feature_file) as store:
        positions = store.source_index(test_split)[table[:, 0]]
    order = np.argsort(positions, kind="stable")
    return positions[order], table[order, 1], table[order, 2]
