"""Full mode's pick by k-fold cross-validation over the training view (``rank --cv-folds K``).

[featlt's protocol] For one feature file and every head of full mode:

- the training rows of the index view are split into K stratified folds
  (:class:`sklearn.model_selection.StratifiedKFold`, shuffled with the heads' seed, so the folds
  are the same on every run with the same ``--seed``); every class needs at least K training
  rows, so that it is in every fold's training part (:func:`featlt.rank.cv_head_score.check_folds`,
  the one owner of that rule, refuses otherwise, naming the class and the fix: fewer folds);
- in each fold every head is selected exactly as :func:`featlt.heads.workflow.fit_classifiers`
  selects it (:func:`featlt.heads.selection.select_heads`: every grid point fitted on the fold's
  training part, chosen and stopped early on the view's *validation* rows, so hyperparameters are
  chosen per fold on validation), with the prior fixed to the counts of the *whole* training view
  (``class_counts``, the prior of the head fitted on the whole view), and predicts the held-out
  fold;
- the out-of-fold predictions of the K folds are pooled: one prediction per training row and
  head; the cross-validated balanced accuracy is their mean per-class recall, its interval the
  2.5-97.5 percentiles over paired bootstrap resamples of the training rows
  (:func:`featlt.evaluation.bootstrap.paired_bootstrap`, the one bootstrap).

The result is kept in the file's heads folder as ``crossval-<K>folds.json`` (sealed like
``summary.json``) under a key that hashes the heads' key (features, view, heads, seed, bootstrap
size, epoch cap) and K, and is reused only when both match and the seal holds.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.rank.cv_head_score import check_folds
from featlt.rank.measured import heads_key
from featlt.rank.model import HeadSettings, Measured, RankInput

KIND = "featlt.rank.crossval"
SEAL_KEY = "crossval_sha256"
CV_FILE_PATTERN = "crossval-*folds.json"  # every record's name (glob)


def cv_file_name(n_folds: int) -> str:
    """The name of the cross-validation record of ``n_folds`` folds in a heads folder."""
    return f"crossval-{int(n_folds)}folds.json"


def fold_splits(y: np.ndarray, n_folds: int, seed: int, what: str = "rank --cv-folds",
                class_names: list[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stratified folds of the training rows: ``[(train, held_out), ...]``, K pairs.

    Args:
        y: (n,) int64 class ids of the training rows; n_folds: K >= 2; seed: shuffles the rows.
        what: the input in words, for the refusal; class_names: (C,) names for the refusal.
    Returns:
        K pairs of int64 row indices; the held-out parts partition 0..n-1.
    Raises:
        FeatltError: K < 2, a single class, or a class with fewer than K rows (naming it and
            the fix: fewer folds).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    try:
        check_folds(y, n_folds, what)
    except FeatltError as err:
        counts = np.bincount(y)
        short = np.flatnonzero((counts > 0) & (counts < n_folds)) if isinstance(
            n_folds, (int, np.integer)) else np.array([], dtype=np.int64)
        if class_names and short.size:
            c = int(short[np.argmin(counts[short])])
            raise FeatltError(f"{err} (class {c} is '{class_names[c]}')") from None
        raise
    folds = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=int(seed))
    return [(train.astype(np.int64), held.astype(np.int64))
            for train, held in folds.split(np.zeros(y.size), y)]


@dataclass(frozen=True)
class CrossValidated:
    """Pooled out-of-fold predictions of every head of one file, and their balanced accuracy."""

    label: str  # the file's label
    heads: tuple[str, ...]  # H head names, in full mode's order
    n_folds: int
    seed: int
    labels: np.ndarray = field(repr=False)  # (n_train,) int64 class of every training row
    folds: np.ndarray = field(repr=False)  # (n_train,) int64 held-out fold of every row
    predictions: np.ndarray = field(repr=False)  # (H, n_train) int64 out-of-fold predictions
    balanced_accuracy: dict[str, float] = field(default_factory=dict)  # per head
    interval: dict[str, list[float]] = field(default_factory=dict)  # per head, 95% bootstrap
    seconds: float = 0.0  # wall time of the fold fits (0 when reused)
    reused: bool = False
    path: str = ""  # the crossval JSON

    @property
    def best(self) -> str:
        """The head with the best cross-validated balanced accuracy (first in order on ties)."""
        return max(self.heads, key=lambda name: self.balanced_accuracy[name])

    def record(self) -> dict[str, Any]:
        return {"n_folds": self.n_folds, "seed": self.seed, "best_head": self.best,
                "heads": {name: {"balanced_accuracy": self.balanced_accuracy[name],
                                 "balanced_accuracy_ci": self.interval[name]}
                          for name in self.heads},
                "seconds": self.seconds, "reused": self.reused, "file": self.path}


@dataclass(frozen=True)
class CrossValidatedPick:
    """A file's cross-validation and the test results of its best cross-validated head (that
    head fitted on the whole training view, test scored once, as full mode does)."""

    crossval: CrossValidated
    measured: Measured


def pooled_scores(labels: np.ndarray, predictions: np.ndarray, n_classes: int,
                  n_bootstrap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced accuracy (H,) of pooled out-of-fold predictions and its interval (H, 2).

    Args:
        labels: (n,) int64 true classes; predictions: (H, n) int64 out-of-fold predictions.
        n_classes: C; n_bootstrap: resamples of the rows (paired over heads); seed: seeds them.
    """
    from featlt.evaluation.bootstrap import class_mean, paired_bootstrap, percentile_interval
    from featlt.evaluation.metrics import per_class_recall

    point = np.array([class_mean(per_class_recall(labels, p, n_classes)) for p in predictions])
    resampled = class_mean(paired_bootstrap(labels, predictions == labels[None, :], n_classes,
                                            n_bootstrap, seed).recall)  # (B, H)
    return point, np.array([percentile_interval(resampled[:, h])
                            for h in range(predictions.shape[0])])


def fold_predictions(data: Any, names: list[str], splits: list[tuple[np.ndarray, np.ndarray]],
                     settings: HeadSettings, device: str) -> np.ndarray:
    """Out-of-fold predictions (H, n_train) int64 of every head, each selected per fold.

    Args:
        data: the view's :class:`featlt.heads.selection.SelectionData` (whole training view,
            validation rows, the training view's counts as ``train_counts``).
        names: H registry names; splits: the folds (:func:`fold_splits`).
    """
    from featlt.heads.selection import SelectionData, select_heads

    counts = np.asarray(data.train_counts, dtype=np.float64)
    # the prior of every fold's heads: the whole training view's counts, as in the final fit
    overrides = {**(settings.overrides() or {}), "class_counts": counts.tolist()}
    predictions = np.full((len(names), data.y_train.shape[0]), -1, dtype=np.int64)
    for train, held in splits:
        fold = SelectionData(
            data.X_train[train], data.y_train[train], data.X_val, data.y_val, counts,
            None if data.views_train is None else data.views_train[train])
        selected = select_heads(names, fold, device=device, seed=settings.seed,
                                overrides=overrides)
        for h, name in enumerate(names):
            head = selected[name].head
            proba = head.predict_proba(data.X_train[held])
            predictions[h, held] = np.asarray(head.classes_, dtype=np.int64)[proba.argmax(axis=1)]
    return predictions


def cv_key(heads_key: str, n_folds: int) -> str:
    """The reuse key of a cross-validation record: the heads' key and K."""
    text = json.dumps({"heads_key": heads_key, "n_folds": int(n_folds), "kind": KIND},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _reusable(path: Path, key: str, names: list[str], n_train: int) -> tuple[
    dict[str, Any] | None, str | None
]:
    """(the stored record, None) when ``path`` can be reused, else (None, why not)."""
    from featlt.heads.io import seal_problem

    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        return None, f"{path} is unreadable ({err})"
    if not isinstance(record, dict) or record.get("kind") != KIND:
        return None, f"{path} is not a cross-validation record"
    problem = seal_problem(record, SEAL_KEY)
    if problem is not None:
        return None, f"{path}: {problem}"
    if (record.get("key") != key or record.get("heads") != names
            or len(record.get("labels", ())) != n_train):
        return None, f"{path} was made with other settings (another K, heads or view)"
    return record, None


def cross_validate(
    entry: RankInput, protocol: Any, view_record: dict[str, Any], heads_dir: Path,
    settings: HeadSettings, n_folds: int, device: str, n_bootstrap: int, seed: int,
    log: Callable[[str], None] | None = None,
) -> CrossValidated:
    """Cross-validate every head of full mode on one file (or reuse the record of equal settings).

    Args:
        entry: the file; protocol: the index view; view_record: its record (part of the key).
        heads_dir: full mode's heads folder; the record goes to
            ``<stem>-<heads key>/crossval-<K>folds.json``.
        settings: full mode's heads, seed (folds and heads) and epoch cap.
        n_folds: K >= 2.
        n_bootstrap, seed: resamples of the interval and their seed.
        log: called with one line when a stored record is not reused, saying why.
    Returns:
        :class:`CrossValidated`.
    Raises:
        FeatltError: a class with fewer than K training rows (naming it; fix: fewer folds), or
            what :func:`featlt.heads.workflow.load_head_data` refuses.
    """
    from featlt.heads.io import seal
    from featlt.heads.workflow import expand_head_names, load_head_data
    from featlt.runtime import write_json_atomic

    names = expand_head_names(settings.heads)
    arrays, data = load_head_data(entry.path, protocol, with_views="cibl" in names)
    splits = fold_splits(data.y_train, n_folds, settings.seed,
                         f"feature file {entry.path}, --cv-folds {n_folds}", arrays.class_names)
    key = heads_key(entry, view_record, settings)
    path = heads_dir / f"{entry.path.stem}-{key}" / cv_file_name(n_folds)
    stored, problem = _reusable(path, cv_key(key, n_folds), names, data.y_train.shape[0])
    if problem is not None and log is not None:
        log(f"{entry.label}: cross-validating again instead of reusing {problem}")
    folds = np.empty(data.y_train.shape[0], dtype=np.int64)
    for k, (_, held) in enumerate(splits):
        folds[held] = k
    if stored is not None and stored["folds"] == folds.tolist() \
            and stored["labels"] == data.y_train.tolist():
        predictions = np.asarray([stored["predictions"][n] for n in names], dtype=np.int64)
        seconds, reused = 0.0, True
    else:
        start = time.perf_counter()
        predictions = fold_predictions(data, names, splits, settings, device)
        seconds, reused = time.perf_counter() - start, False
        write_json_atomic(path, seal({
            "kind": KIND, "key": cv_key(key, n_folds), "heads_key": key,
            "file": str(entry.path), "n_folds": int(n_folds), "seed": settings.seed,
            "heads": names, "labels": data.y_train, "folds": folds,
            "predictions": {n: predictions[h] for h, n in enumerate(names)},
            "seconds": seconds}, SEAL_KEY))
    point, interval = pooled_scores(data.y_train, predictions, len(arrays.class_names),
                                    n_bootstrap, seed)
    return CrossValidated(
        label=entry.label, heads=tuple(names), n_folds=int(n_folds), seed=settings.seed,
        labels=np.asarray(data.y_train, dtype=np.int64), folds=folds, predictions=predictions,
        balanced_accuracy={n: float(point[h]) for h, n in enumerate(names)},
        interval={n: [float(v) for v in interval[h]] for h, n in enumerate(names)},
        seconds=seconds, reused=reused, path=str(path))

