"""Cheap mode: every score of one feature file, from its training (and validation) rows only.

The separability report (:func:`featlt.separability.evaluate.evaluate_separability`) supplies
kNN and NCM balanced accuracy, LogME, class-balanced LogME and GBC with their per-class values;
SFDA (:mod:`featlt.separability.scores.sfda`) is added on the same rows; featlt's long-tail-aware
score is computed from the report (:mod:`featlt.rank.formula`). The test split is never read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featlt.rank.formula import featlt_score
from featlt.runtime import to_jsonable


@dataclass(frozen=True)
class FileScores:
    """The scores of one feature file."""

    scores: dict[str, float | None]  # featlt, logme, gbc, sfda, knn, ncm, and the report's
    report: dict[str, Any] = field(repr=False)  # the separability report (JSON form)
    seconds: float = 0.0


def score_file(
    path: Any, protocol: Any, separability_config: Any, device: str, threads: int | None
) -> FileScores:
    """Scores of ``path`` under the index view ``protocol`` (training and validation rows)."""
    from featlt.separability.evaluate import evaluate_store
    from featlt.separability.scores.sfda import sfda

    start = time.perf_counter()
    report = to_jsonable(evaluate_store(path, protocol, separability_config, device,
                                        threads).record())
    X, y = _training_rows(path, protocol)
    import threadpoolctl

    with threadpoolctl.threadpool_limits(limits=threads):
        sfda_score = sfda(X, y, len(report["data"]["class_names"])).score
    raw = report["scores"]
    scores = {
        "featlt": featlt_score(report),
        "logme": raw["logme"],
        "gbc": raw["gbc"],
        "sfda": sfda_score,
        "knn": raw["knn_balanced_accuracy"],
        "ncm": raw["ncm_balanced_accuracy"],
        "logme_balanced": raw["logme_balanced"],
        "knn_tail": raw["knn_tail_recall"],
        "ncm_tail": raw["ncm_tail_recall"],
        "knn_val": raw["knn_balanced_accuracy_val"],
        "ncm_val": raw["ncm_balanced_accuracy_val"],
    }
    return FileScores(scores=scores, report=report,
                      seconds=round(time.perf_counter() - start, 2))


def _training_rows(path: Any, protocol: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, D) float32 features and (n_train,) labels of the view's training rows."""
    from featlt.data.protocol import resolve_view
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(path) as store:
        view = resolve_view(store, protocol)
        return (store.read(view.train_split, view.train_rows),
                store.labels(view.train_split)[view.train_rows])
