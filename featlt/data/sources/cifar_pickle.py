"""``cifar10:ROOT``, ``cifar100:ROOT``, ``cifar100-coarse:ROOT``: CIFAR python pickles.

The folder layout is torchvision's (the archives ``cifar-10-python.tar.gz`` and
``cifar-100-python.tar.gz`` unpacked): ``ROOT`` is the folder holding ``cifar-10-batches-py/``
(``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) or
``cifar-100-python/`` (``train``, ``test``, ``meta``), or that folder itself. Splits: ``train``
(the five batches in order, 50,000 images) and ``test`` (10,000), in the files' order, which is
torchvision's order. ``cifar100`` uses the 100 fine labels, ``cifar100-coarse`` the 20
superclasses.

The pickles are read with :class:`RestrictedUnpickler`: it resolves only the numpy callables
that rebuild arrays, dtypes and scalars (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``,
``_frombuffer``) and ``_codecs.encode`` restricted to latin-1 (how protocol-2 pickles written by
Python 3 store bytes). Any other global (``os.system``, ``builtins.eval``, a class) is refused
with a :class:`FeatltError` before it is called, so a crafted file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from featlt.data.sources import array_to_rgb, register_source
from featlt.data.sources.indexed import IndexedSource
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256

CIFAR_SIDE = 32
_LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "parts": {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]},
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "parts": {"train": ["train"], "test": ["test"]},
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
    },
    "cifar100-coarse": {
        "folder": "cifar-100-python",
        "parts": {"train": ["train"], "test": ["test"]},
        "meta": "meta",
        "label_key": "coarse_labels",
        "names_key": "coarse_label_names",
    },
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle referenced something outside the allow-list (it was not called)."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; only latin-1 is accepted."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object: the only globals a CIFAR pickle may reference."""
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):  # numpy 1.x / Python 2 names and numpy 2.x
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals CIFAR pickles hold (see module doc)."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"global '{module}.{name}' is not allowed in a CIFAR pickle"
            ) from None


def restricted_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (latin-1 for Python 2 strings).

    Raises :class:`FeatltError` naming the file when it is missing, truncated, or references a
    global outside the allow-list (nothing it names is ever called).
    """
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError as err:
        raise FeatltError(f"CIFAR file {path}: not found; unpack the CIFAR archive there") from err
    except RefusedGlobal as err:
        raise FeatltError(
            f"CIFAR file {path}: refused ({err}); featlt reads only CIFAR's own pickles (arrays, "
            "lists, strings), so re-download the official archive"
        ) from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OSError) as err:
        raise FeatltError(
            f"CIFAR file {path}: not a readable pickle ({type(err).__name__}: {err}); "
            "re-download the official archive"
        ) from err


def _as_str_keys(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise FeatltError(
            f"CIFAR file {path}: holds a {type(record).__name__}, not a dict; is it a CIFAR batch?"
        )
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in record.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one CIFAR batch file.

    Returns:
        images: (N, 32, 32, 3) uint8 RGB; labels: (N,) int64.
    """
    record = _as_str_keys(restricted_load(path), path)
    if "data" not in record or label_key not in record:
        raise FeatltError(
            f"CIFAR file {path}: has keys {', '.join(sorted(record))} but needs 'data' and "
            f"'{label_key}'; is it the right CIFAR variant?"
        )
    data = record["data"]
    row = 3 * CIFAR_SIDE * CIFAR_SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != row:
        shape = getattr(data, "shape", None)
        raise FeatltError(
            f"CIFAR file {path}: 'data' must be a (N, {row}) uint8 array, got "
            f"{type(data).__name__} {shape}; re-download the official archive"
        )
    labels = np.asarray(record[label_key])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise FeatltError(
            f"CIFAR file {path}: '{label_key}' must hold {data.shape[0]} integers, got shape "
            f"{labels.shape} dtype {labels.dtype}"
        )
    images = data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def read_cifar_names(path: Path, names_key: str) -> list[str]:
    """Class names from a CIFAR meta file (``batches.meta`` or ``meta``)."""
    record = _as_str_keys(restricted_load(path), path)
    names = record.get(names_key)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise FeatltError(
            f"CIFAR file {path}: '{names_key}' is missing or not a list of names; is it the "
            "right CIFAR variant?"
        )
    return [n.decode("latin-1") if isinstance(n, bytes) else n for n in names]


def locate_cifar_folder(root: Path, variant: str) -> Path:
    """The folder that holds ``variant``'s files: ``root/<torchvision folder>`` or ``root``."""
    layout = _LAYOUTS[variant]
    first = layout["parts"]["train"][0]
    for folder in (root / layout["folder"], root):
        if (folder / first).is_file():
            return folder
    raise FeatltError(
        f"dataset {variant}:{root}: neither {root / layout['folder'] / first} nor "
        f"{root / first} exists; pass the folder where the CIFAR archive was unpacked"
    )


class CifarPickleSource(IndexedSource):
    """CIFAR pickles in torchvision's layout; ``path`` is the root folder (module doc)."""

    variant = "cifar10"

    def __init__(self, path: str):
        self.uri = f"{self.variant}:{path}"
        root = Path(path).expanduser()
        self.folder = locate_cifar_folder(root, self.variant)
        layout = _LAYOUTS[self.variant]
        self._files = {
            part: [self.folder / name for name in names] for part, names in layout["parts"].items()
        }
        names = read_cifar_names(self.folder / layout["meta"], layout["names_key"])
        self._images: dict[str, np.ndarray] = {}
        labels = {}
        for part in self._files:
            self._images[part], labels[part] = self._read_part(part)
        self._set_parts(labels, names)
        self._sha256: dict[str, str] | None = None

    def _read_part(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, 32, 32, 3) uint8 images and (N,) int64 labels of a part, batches in order."""
        label_key = _LAYOUTS[self.variant]["label_key"]
        batches = [read_cifar_batch(f, label_key) for f in self._files[part]]
        return (
            np.concatenate([b[0] for b in batches]),
            np.concatenate([b[1] for b in batches]),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = {}  # workers re-read the pickles lazily
        return state

    def _load_part_image(self, part: str, position: int) -> Any:
        if part not in self._images:
            self._images[part] = self._read_part(part)[0]
        return array_to_rgb(self._images[part][position], f"dataset {self.uri}: {part}[{position}]")

    def describe(self) -> dict[str, Any]:
        if self._sha256 is None:
            files = [f for part in self._files.values() for f in part]
            files.append(self.folder / _LAYOUTS[self.variant]["meta"])
            self._sha256 = {f.name: file_sha256(f) for f in files}
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.folder.resolve()),
            "format": "CIFAR python pickles (restricted unpickler)",
            "labels": _LAYOUTS[self.variant]["label_key"],
            "sha256": self._sha256,
            **self._describe_splits(),
        }


@register_source("cifar10")
class Cifar10Source(CifarPickleSource):
    """CIFAR-10: ``cifar-10-batches-py``, 10 classes."""

    variant = "cifar10"


@register_source("cifar100")
class Cifar100Source(CifarPickleSource):
    """CIFAR-100 with its 100 fine labels: ``cifar-100-python``."""

    variant = "cifar100"


@register_source("cifar100-coarse")
class Cifar100CoarseSource(CifarPickleSource):
    """CIFAR-100 with its 20 coarse (superclass) labels: ``cifar-100-python``."""

    variant = "cifar100-coarse"
