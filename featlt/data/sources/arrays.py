"""``npz:FILE.npz``: images as numpy arrays.

Keys: ``x_train``/``y_train`` (required), ``x_val``/``y_val`` and ``x_test``/``y_test`` (optional;
without a test part one is held out from train), and optionally ``class_names`` (or
``label_names``) (C,) str. Labels are ints 0..C-1 into those names; without names, and for
string labels, the distinct label values are the classes (labels {0, 2, 5} give 3 classes named
"0", "2", "5"). A class without any image is dropped, so every class id has images.

Image conventions:

- shape (N, H, W) or (N, H, W, 1): grayscale, replicated to RGB; (N, H, W, 3): RGB.
  Channels-first (N, 1, H, W) / (N, 3, H, W) is accepted when the last axis is not 1 or 3.
- dtype uint8 holds 0..255; uint16 holds 0..65535 and keeps its high byte (``v >> 8``, the rule
  of 16-bit image files, :mod:`featlt.data.decode`); float holds 0..1 (scaled by 255 and
  rounded). Float pixels outside [0, 1] are refused (divide 0..255 data by 255, or store uint8).

Only the label arrays and the array headers are read on open; the image arrays are loaded
lazily, once per process.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from featlt.data.sources import SPLIT_ORDER, array_to_rgb, register_source
from featlt.data.sources.indexed import NpzSource, open_npz
from featlt.errors import FeatltError


@register_source("npz")
class ArraySource(NpzSource):
    """Numpy-array npz; ``path`` is the .npz file."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.uri = f"npz:{path}"
        with open_npz(self.path, self.uri, "an .npz") as archive:
            files = set(archive.files)
            parts = [p for p in SPLIT_ORDER if f"x_{p}" in files]
            missing = [f"y_{p}" for p in parts if f"y_{p}" not in files]
            if "train" not in parts or missing:
                raise FeatltError(
                    f"dataset {self.uri}: needs x_train and y_train (and y_<split> for each "
                    f"x_<split>); found keys {', '.join(sorted(files))}"
                )
            labels = {p: _read_member(archive, f"y_{p}", self.uri).reshape(-1) for p in parts}
            name_key = next((k for k in ("class_names", "label_names") if k in files), None)
            names = ([str(n) for n in _read_member(archive, name_key, self.uri)] if name_key
                     else None)
        labels, names = _label_ids(labels, names, self.uri)
        self._layouts: dict[str, str] = {}
        for p in parts:
            shape, dtype = _npz_member_header(self.path, f"x_{p}")
            self._layouts[p] = _layout(shape, dtype, f"dataset {self.uri}: x_{p}")
            if shape[0] != labels[p].size:
                raise FeatltError(
                    f"dataset {self.uri}: x_{p} has {shape[0]} images but y_{p} has "
                    f"{labels[p].size} labels; they must match"
                )
        self._set_parts(labels, names)

    def _load_part_image(self, part: str, position: int) -> Any:
        pixels = self._npz_member(f"x_{part}")[position]
        if self._layouts[part] == "channels-first":
            pixels = np.moveaxis(pixels, 0, -1)
        return array_to_rgb(pixels, f"dataset {self.uri}: x_{part}[{position}]")

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.path.resolve()),
            "sha256": self._file_sha256(),
            "layouts": self._layouts,
            "conventions": "grayscale replicated to RGB; uint8 0..255, uint16 0..65535 (high "
                           "byte), float 0..1",
            **self._describe_splits(),
        }


def _read_member(archive: Any, key: str, uri: str) -> np.ndarray:
    """An npz member, never unpickled: an object array is refused with the fix."""
    try:
        return np.asarray(archive[key])
    except ValueError as err:
        raise FeatltError(
            f"dataset {uri}: {key} is an object (pickled) array, which featlt never unpickles; "
            f"save it as integers or strings, e.g. np.savez(..., {key}=np.asarray(values, "
            "dtype=str))"
        ) from err


def _label_ids(
    labels: dict[str, np.ndarray], names: list[str] | None, uri: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Integer labels and class names of the y_<part> arrays.

    Integer labels with ``class_names`` index those names; without names, and for string labels,
    the distinct values (sorted) become the classes, named by their values: labels {3, 7} or
    {"cat", "dog"} become ids 0, 1. Gaps in indexed names are dropped later
    (:func:`~featlt.data.sources.indexed.compact_labels`).

    Returns:
        (part -> (N_part,) int64 labels, class names).
    """
    kinds = {p: v.dtype.kind for p, v in labels.items()}
    if all(kind in "US" for kind in kinds.values()):
        texts = {p: v.astype(str) for p, v in labels.items()}
        values = np.unique(np.concatenate(list(texts.values())))
        return {p: np.searchsorted(values, v).astype(np.int64) for p, v in texts.items()}, [
            str(v) for v in values]
    for p, kind in kinds.items():
        if kind not in "iu":
            raise FeatltError(
                f"dataset {uri}: y_{p} has dtype {labels[p].dtype}; labels must be integers or "
                f"strings (all parts alike); e.g. np.savez(..., y_{p}=y_{p}.astype(int))"
            )
    ints = {p: v.astype(np.int64) for p, v in labels.items()}
    if names is not None:
        return ints, names
    values = np.unique(np.concatenate(list(ints.values())))
    return {p: np.searchsorted(values, v).astype(np.int64) for p, v in ints.items()}, [
        str(v) for v in values]


def _npz_member_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` in an npz, read from its header only."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return tuple(shape), dtype


def _layout(shape: tuple[int, ...], dtype: np.dtype, what: str) -> str:
    """``channels-last`` or ``channels-first`` for an image stack, or a FeatltError."""
    if dtype not in (np.uint8, np.uint16) and not np.issubdtype(dtype, np.floating):
        raise FeatltError(
            f"{what}: dtype {dtype} is neither uint8 (0..255), uint16 (0..65535) nor float (0..1); "
            "convert the array to one of them"
        )
    if len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3)):
        return "channels-last"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "channels-first"
    raise FeatltError(
        f"{what}: shape {shape} is not (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W); "
        "reshape the image array"
    )
