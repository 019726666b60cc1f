"""``medmnist:FILE.npz``: a MedMNIST dataset file as the ``medmnist`` package writes it.

Keys per part ``p`` in train/val/test: ``p_images`` uint8, (N, S, S) grayscale (e.g. OCTMNIST,
PneumoniaMNIST) or (N, S, S, 3) RGB (e.g. PathMNIST, DermaMNIST), S = 28 (or 64/128/224 for
MedMNIST+); ``p_labels`` (N, 1) integer class ids. Splits are the parts present (MedMNIST ships
all three, so no split is made). Grayscale is replicated to RGB; pixels stay 0..255.

The npz holds no class names, so classes are named "0".."C-1" with C = largest label + 1 (the
names are in ``medmnist.INFO[flag]["label"]``). Multi-label files (ChestMNIST's (N, 14) labels)
and 3-D volumes (``*mnist3d``) are refused: featlt's heads are single-label 2-D classifiers.
Only the labels and array headers are read on open; images load lazily, once per process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featlt.data.sources import SPLIT_ORDER, array_to_rgb, register_source
from featlt.data.sources.arrays import _npz_member_header
from featlt.data.sources.indexed import NpzSource, open_npz
from featlt.errors import FeatltError


def _check_images_header(shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    """Refuse anything but (N, H, W) / (N, H, W, 3) uint8 image stacks."""
    if dtype != np.uint8:
        raise FeatltError(f"{what}: dtype {dtype}, but MedMNIST images are uint8 0..255")
    if len(shape) == 4 and shape[3] not in (1, 3):
        raise FeatltError(
            f"{what}: shape {shape} looks like a 3-D volume (a *mnist3d file); featlt reads 2-D "
            "images only"
        )
    if len(shape) not in (3, 4):
        raise FeatltError(f"{what}: shape {shape} is not (N, H, W) or (N, H, W, 3)")


def _labels_1d(labels: np.ndarray, what: str) -> np.ndarray:
    """(N, 1) or (N,) integer labels -> (N,) int64; multi-label (N, K > 1) is refused."""
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise FeatltError(
            f"{what}: labels of shape {labels.shape} are multi-label (e.g. ChestMNIST); featlt "
            "needs one class per image"
        )
    if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
        raise FeatltError(
            f"{what}: labels must be (N, 1) integers, got shape {labels.shape} dtype {labels.dtype}"
        )
    return labels.reshape(-1).astype(np.int64)


@register_source("medmnist")
class MedMNISTSource(NpzSource):
    """MedMNIST npz; ``path`` is the .npz file (e.g. ``octmnist.npz``)."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.uri = f"medmnist:{path}"
        expected = "a MedMNIST .npz such as ~/.medmnist/octmnist.npz"
        with open_npz(self.path, self.uri, expected) as archive:
            files = set(archive.files)
            parts = [p for p in SPLIT_ORDER if f"{p}_images" in files]
            missing = [f"{p}_labels" for p in parts if f"{p}_labels" not in files]
            if "train" not in parts or missing:
                raise FeatltError(
                    f"dataset {self.uri}: not a MedMNIST file (needs train_images and "
                    f"<split>_labels beside each <split>_images; found keys "
                    f"{', '.join(sorted(files))}); use npz: for other array files"
                )
            labels = {
                p: _labels_1d(archive[f"{p}_labels"], f"dataset {self.uri}: {p}_labels")
                for p in parts
            }
        for p in parts:
            what = f"dataset {self.uri}: {p}_images"
            shape, dtype = _npz_member_header(self.path, f"{p}_images")
            _check_images_header(shape, dtype, what)
            if shape[0] != labels[p].size:
                raise FeatltError(
                    f"{what}: {shape[0]} images but {labels[p].size} labels; the file is "
                    "damaged, download it again"
                )
        if labels["train"].size == 0:
            raise FeatltError(f"dataset {self.uri}: train_images holds no images")
        n_classes = int(max(v.max() for v in labels.values() if v.size)) + 1
        self._set_parts(labels, [str(c) for c in range(n_classes)])

    def _load_part_image(self, part: str, position: int) -> Any:
        return array_to_rgb(
            self._npz_member(f"{part}_images")[position],
            f"dataset {self.uri}: {part}_images[{position}]",
        )

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.path.resolve()),
            "sha256": self._file_sha256(),
            "conventions": "grayscale replicated to RGB; uint8 0..255",
            **self._describe_splits(),
        }
