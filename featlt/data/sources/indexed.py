"""A base for sources whose splits are position lists over stored parts (with a made test split).

Most formats store one or more *parts* (``train``, ``val``, ``test``), each a sequence of labelled
images. :class:`IndexedSource` turns the parts into splits: a part becomes the split of the same
name; when no ``test`` part exists, :func:`~featlt.data.sources.stratified_holdout` moves a seeded
share of each class of ``train`` into ``test`` and the rule is recorded in ``describe()``.
Subclasses implement :meth:`IndexedSource._load_part_image` and call :meth:`_set_parts`.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from featlt.data.sources import (
    SPLIT_ORDER,
    ImageSource,
    holdout_rule,
    stratified_holdout,
)
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256


class IndexedSource(ImageSource):
    """Splits as (part, positions) pairs; see the module docstring."""

    def _set_parts(self, part_labels: dict[str, np.ndarray], class_names: list[str]) -> None:
        """Define the splits from the parts' labels.

        Args:
            part_labels: part name -> (N_part,) int labels in 0..len(class_names)-1.
        """
        if "train" not in part_labels:
            raise FeatltError(
                f"dataset {self.uri}: has no 'train' part (found "
                f"{', '.join(part_labels) or 'none'}); provide training images"
            )
        for part, labels in part_labels.items():
            labels = np.asarray(labels)
            if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
                raise FeatltError(
                    f"dataset {self.uri}: part '{part}' has labels in [{labels.min()}, "
                    f"{labels.max()}] but {len(class_names)} class names; labels must be "
                    f"0..{len(class_names) - 1}"
                )
        part_labels, class_names, self.original_label_ids = compact_labels(
            part_labels, list(class_names))
        self.class_names = class_names
        self._part_labels = {k: np.asarray(v, dtype=np.int64) for k, v in part_labels.items()}
        self._splits: dict[str, tuple[str, np.ndarray]] = {
            part: (part, np.arange(labels.size, dtype=np.int64))
            for part, labels in self._part_labels.items()
            if part in SPLIT_ORDER
        }
        self.split_rule: dict[str, Any] | None = None
        if "test" not in self._splits:
            train_rows, test_rows = stratified_holdout(self._part_labels["train"])
            self._splits["train"] = ("train", train_rows)
            self._splits["test"] = ("train", test_rows)
            self.split_rule = holdout_rule()

    def split_names(self) -> tuple[str, ...]:
        return tuple(s for s in SPLIT_ORDER if s in self._splits)

    def labels(self, split: str) -> np.ndarray:
        self.check_split(split)
        part, positions = self._splits[split]
        return self._part_labels[part][positions]

    def load_image(self, split: str, i: int) -> Any:
        self.check_split(split)
        part, positions = self._splits[split]
        if not 0 <= i < positions.size:
            raise FeatltError(
                f"dataset {self.uri}: split '{split}' has {positions.size} images, no item {i}"
            )
        return self._load_part_image(part, int(positions[i]))

    def load_encoded(self, split: str, i: int) -> bytes | None:
        self.check_split(split)
        part, positions = self._splits[split]
        if not 0 <= i < positions.size:
            return None  # load_image names the bad item
        return self._load_part_encoded(part, int(positions[i]))

    def _load_part_encoded(self, part: str, position: int) -> bytes | None:
        """The encoded bytes of a part's image, or None (the format holds decoded pixels)."""
        return None

    @abc.abstractmethod
    def _load_part_image(self, part: str, position: int) -> Any:
        """Image ``position`` of stored part ``part`` as an RGB PIL image."""

    def _describe_splits(self) -> dict[str, Any]:
        """Split sizes, class names and the made-split rule (part of ``describe()``)."""
        described: dict[str, Any] = {
            "splits": {s: int(self._splits[s][1].size) for s in self.split_names()},
            "class_names": self.class_names,
            "split_rule": self.split_rule,
        }
        if self.original_label_ids is not None:
            described["original_label_ids"] = self.original_label_ids
        return described


def compact_labels(
    part_labels: dict[str, np.ndarray], class_names: list[str]
) -> tuple[dict[str, np.ndarray], list[str], list[int] | None]:
    """Drop the classes no part has an image of, so every class id 0..C-1 has images.

    Labels with gaps ({0, 2, 5} of 6 names) become 0..2, and the names of the present classes
    are kept in order; the dataset's own ids are returned for provenance (None when nothing
    changed).

    Args:
        part_labels: part -> (N_part,) int labels in 0..len(class_names)-1.
    Returns:
        (part -> (N_part,) int64 labels in 0..C-1, C class names, original ids or None).
    """
    sizes = [np.asarray(v).reshape(-1) for v in part_labels.values()]
    present = np.unique(np.concatenate(sizes)) if sizes else np.empty(0, np.int64)
    if present.size == len(class_names):
        return part_labels, class_names, None
    new_id = np.full(len(class_names), -1, dtype=np.int64)
    new_id[present] = np.arange(present.size)
    mapped = {part: new_id[np.asarray(labels, dtype=np.int64)]
              for part, labels in part_labels.items()}
    return mapped, [class_names[i] for i in present], [int(i) for i in present]


class NpzSource(IndexedSource):
    """An :class:`IndexedSource` backed by one ``.npz`` file at ``self.path``.

    Members are read lazily, one per part, and cached per process; the cache is dropped when
    the source is pickled to a DataLoader worker, which re-reads what it needs.
    """

    path: Any  # pathlib.Path of the .npz

    def _npz_member(self, key: str) -> np.ndarray:
        """The array ``key`` of the file, read once per process."""
        cache = self.__dict__.setdefault("_members", {})
        if key not in cache:
            with np.load(self.path, allow_pickle=False) as archive:
                cache[key] = archive[key]
        return cache[key]

    def _file_sha256(self) -> str:
        """sha256 of the file, computed once."""
        if self.__dict__.get("_sha256") is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_members", None)
        return state


def open_npz(path: Any, uri: str, expected: str) -> Any:
    """Open the ``.npz`` behind a dataset URI, never unpickling; ``expected`` names the fix.

    Raises:
        FeatltError: the file is missing or is not a readable npz.
    """
    if not path.is_file():
        raise FeatltError(f"dataset {uri}: file {path} not found; pass {expected}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FeatltError(f"dataset {uri}: not a readable npz ({err})") from err
