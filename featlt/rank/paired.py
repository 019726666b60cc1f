"""The measured heads' per-class recall on the shared test images, and its paired bootstrap.

Full mode scores every backbone's best validation-selected head on the same test images
(matched by their position in the source dataset); one set of resamples of those images
(:func:`featlt.evaluation.bootstrap.paired_bootstrap`) serves every backbone, so the
recommendation's probability and ``--validate``'s ties and intervals come from the same draws.
"""

from __future__ import annotations

import numpy as np

from featlt.errors import FeatltError
from featlt.evaluation.bootstrap import paired_bootstrap
from featlt.evaluation.metrics import per_class_recall
from featlt.evaluation.shots import shot_groups
from featlt.rank.model import RankedFile


def measured_recall(rows: list[RankedFile], n_bootstrap: int, seed: int) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:
    """The measured heads' recall: point (M, C), resampled (B, M, C), tail-third class ids.

    Args:
        rows: M ranked files, every one measured (full mode).
        n_bootstrap: B paired resamples of the test images; seed: seeds them.
    Raises:
        FeatltError: a file was not measured, or the heads were scored on different test
            images (naming both files and the fix).
    """
    measured = [row.measured for row in rows]
    if any(m is None for m in measured):
        raise FeatltError("--validate: every backbone needs measured heads; rank with --full")
    labels = measured[0].labels  # type: ignore[union-attr]
    positions = measured[0].positions  # type: ignore[union-attr]
    for row, m in zip(rows, measured, strict=True):
        if not (np.array_equal(m.positions, positions)  # type: ignore[union-attr]
                and np.array_equal(m.labels, labels)):  # type: ignore[union-attr]
            raise FeatltError(
                f"feature files {rows[0].entry.path} and {row.entry.path}: the heads were scored "
                "on different test images, so the backbones cannot be compared image by image; "
                "rank them with the same view (--test-per-class) on files of the same test rows"
            )
    n_classes = len(rows[0].report["data"]["class_names"])
    correct = np.stack([m.predictions == labels for m in measured])  # type: ignore[union-attr]
    point = np.stack([per_class_recall(labels, m.predictions, n_classes)  # type: ignore[union-attr]
                      for m in measured])
    resampled = paired_bootstrap(labels, correct, n_classes, n_bootstrap, seed).recall
    counts = np.asarray(rows[0].report["data"]["train_counts"], dtype=np.int64)
    return point, resampled, shot_groups(counts)["tail_third"]
