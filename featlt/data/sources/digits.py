"""``digits``: scikit-learn's ``load_digits`` (1,797 grayscale 8x8 digits, 10 classes).

It ships with scikit-learn, so it works offline everywhere featlt is installed. Pixels 0..16 are
scaled to 0..255 (``round(v * 255 / 16)``) and replicated to RGB. The dataset has no test split:
one is held out per class (:func:`~featlt.data.sources.stratified_holdout`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from featlt.data.sources import array_to_rgb, register_source
from featlt.data.sources.indexed import IndexedSource
from featlt.errors import FeatltError


@register_source("digits")
class DigitsSource(IndexedSource):
    """scikit-learn's digits; takes no path."""

    def __init__(self, path: str = ""):
        self.uri = "digits"
        if path:
            raise FeatltError(f"dataset 'digits:{path}': digits takes no path; pass --data digits")
        pixels = self._pixels()
        self._fingerprint = hashlib.sha256(pixels.tobytes()).hexdigest()
        self._set_parts({"train": _digits().target.astype(np.int64)}, [str(d) for d in range(10)])
        self._cache: np.ndarray | None = pixels

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def _pixels(self) -> np.ndarray:
        """(1797, 8, 8) uint8 images scaled to 0..255."""
        return np.round(_digits().images * (255.0 / 16.0)).astype(np.uint8)

    def _load_part_image(self, part: str, position: int) -> Any:
        if self._cache is None:
            self._cache = self._pixels()
        return array_to_rgb(self._cache[position], f"dataset digits: image {position}")

    def describe(self) -> dict[str, Any]:
        import sklearn

        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "origin": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
            "sha256": self._fingerprint,
            "pixel_scaling": "round(v * 255 / 16)",
            **self._describe_splits(),
        }


def _digits() -> Any:
    from sklearn.datasets import load_digits

    return load_digits()
