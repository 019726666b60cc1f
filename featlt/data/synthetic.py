"""Synthetic long-tailed Gaussian features with known structure, written as a feature store.

Tests, benchmarks and the docs use these where real features are not needed: class ``c`` is an
isotropic Gaussian around a random centre, with ``counts[c]`` training rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featlt.data.profiles import long_tail_counts
from featlt.store.writer import StoreWriter


@dataclass(frozen=True)
class GaussianClasses:
    """Arrays of a synthetic problem."""

    X: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) int64
    centres: np.ndarray  # (C, D) float32


def gaussian_classes(
    counts: np.ndarray,
    dim: int = 32,
    separation: float = 4.0,
    noise: float = 1.0,
    seed: int = 0,
    centres: np.ndarray | None = None,
) -> GaussianClasses:
    """Draw ``counts[c]`` points of class c from N(centre_c, noise^2 I).

    Centres are drawn with norm ``separation`` (pairwise distance about separation * sqrt(2)).
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, dtype=np.int64)
    if centres is None:
        centres = rng.standard_normal((len(counts), dim))
        centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(len(counts)), counts)
    X = centres[y] + noise * rng.standard_normal((y.size, dim))
    return GaussianClasses(X=X.astype(np.float32), y=y.astype(np.int64),
                           centres=centres.astype(np.float32))


def write_synthetic_store(
    path: str | Path,
    n_classes: int = 10,
    n_max: int = 200,
    imbalance_factor: float = 20.0,
    dim: int = 32,
    separation: float = 4.0,
    n_test_per_class: int = 50,
    n_val_per_class: int = 0,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a complete store with a long-tailed ``train``, a balanced ``test`` (and ``val``).

    Train counts follow the exponential profile ``long_tail_counts(n_max, C, IF)``.
    """
    counts = long_tail_counts(n_max, n_classes, imbalance_factor)
    train = gaussian_classes(counts, dim, separation, seed=seed)
    splits = {"train": (train.X, train.y)}
    balanced = np.full(n_classes, n_test_per_class)
    test = gaussian_classes(balanced, dim, centres=train.centres, seed=seed + 1)
    splits["test"] = (test.X, test.y)
    if n_val_per_class:
        val = gaussian_classes(np.full(n_classes, n_val_per_class), dim,
                               centres=train.centres, seed=seed + 2)
        splits["val"] = (val.X, val.y)
    provenance = {
        "backbone": {"arch": "synthetic-gaussian", "dim": dim, "separation": separation},
        "dataset": {"name": "synthetic", "counts": counts.tolist(), "seed": seed},
    }
    names = [f"class_{c}" for c in range(n_classes)]
    with StoreWriter(path, provenance, mode="overwrite") as writer:
        for split, (X, y) in splits.items():
            writer.begin_split(split, y, np.arange(y.size), names, dim, dtype=dtype)
            writer.write_rows(split, 0, X)
        writer.mark_complete()
    return Path(path)
