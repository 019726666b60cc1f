"""``idx:DIR`` and ``fashion-mnist[:DIR]``: the idx format of MNIST and Fashion-MNIST.

``DIR`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``) and with ``.`` instead of the
last ``-`` (``train-images.idx3-ubyte``) as some mirrors name them. Splits: ``train`` and ``test``
(from ``t10k``), in file order. Images are (N, H, W) uint8 grayscale, replicated to RGB.

``fashion-mnist`` names the ten Fashion-MNIST classes and defaults ``DIR`` to
``/usr/share/datasets/fashion-mnist`` (where ``apt-get install dataset-fashion-mnist`` puts it);
``idx`` names classes "0".."C-1" (for MNIST these are the digits).

An idx file is: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, one big-endian uint32 per dimension, then
the values, big-endian, row-major. A file whose size disagrees with its header is refused.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np

from featlt.data.sources import array_to_rgb, register_source
from featlt.data.sources.indexed import IndexedSource
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_PREFIXES = {"train": "train", "test": "t10k"}


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_header(handle: IO[bytes], path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = handle.read(4)
    if len(magic) != 4 or magic[:2] != b"\x00\x00" or magic[2] not in IDX_DTYPES:
        raise FeatltError(
            f"idx file {path}: bad magic number {magic.hex() or '(empty)'}; expected 0000 then a "
            "type code 08/09/0b/0c/0d/0e and the rank; is it an idx (MNIST-style) file?"
        )
    raw = handle.read(4 * magic[3])
    if len(raw) != 4 * magic[3]:
        raise FeatltError(f"idx file {path}: header truncated; download the file again")
    shape = struct.unpack(f">{magic[3]}I", raw)
    return np.dtype(IDX_DTYPES[magic[2]]), tuple(int(d) for d in shape)


def read_idx_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """The (big-endian) dtype and shape an idx / idx.gz file declares, reading the header only."""
    try:
        with _open(path) as handle:
            return _read_header(handle, path)
    except FileNotFoundError as err:
        raise FeatltError(f"idx file {path}: not found") from err
    except (OSError, EOFError) as err:
        raise FeatltError(f"idx file {path}: unreadable ({err}); download it again") from err


def read_idx(path: Path) -> np.ndarray:
    """The whole array of an idx / idx.gz file, in native byte order."""
    try:
        with _open(path) as handle:
            dtype, shape = _read_header(handle, path)
            data = handle.read()
    except FileNotFoundError as err:
        raise FeatltError(f"idx file {path}: not found") from err
    except (OSError, EOFError) as err:
        raise FeatltError(f"idx file {path}: unreadable ({err}); download it again") from err
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise FeatltError(
            f"idx file {path}: header {shape} needs {expected} bytes of values but the file has "
            f"{len(data)}; the file is truncated or damaged, download it again"
        )
    values = np.frombuffer(data, dtype=dtype).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=False)


def find_idx_file(folder: Path, prefix: str, kind: str) -> Path:
    """``folder/<prefix>-<kind>-ubyte[.gz]`` (or ``<prefix>-<kind.replace('-', '.')>``).

    ``kind`` is ``images-idx3`` or ``labels-idx1``.
    """
    stem_kind, rank = kind.split("-")
    for stem in (f"{prefix}-{kind}-ubyte", f"{prefix}-{stem_kind}.{rank}-ubyte"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    raise FeatltError(
        f"idx folder {folder}: no {prefix}-{kind}-ubyte(.gz) file; pass the folder that holds "
        "the MNIST-style files (train-images-idx3-ubyte.gz, ...)"
    )


@register_source("idx")
class IdxSource(IndexedSource):
    """An MNIST-layout folder of idx files; ``path`` is the folder."""

    default_dir = ""
    fixed_class_names: list[str] | None = None

    def __init__(self, path: str):
        self.uri = f"{self.scheme}:{path}"
        if not path and not self.default_dir:
            raise FeatltError(f"dataset {self.uri}: pass the folder, e.g. idx:/data/mnist")
        self.folder = Path(path or self.default_dir).expanduser()
        if not self.folder.is_dir():
            hint = (
                " (apt-get install dataset-fashion-mnist puts it there)" if self.default_dir else ""
            )
            raise FeatltError(f"dataset {self.uri}: folder {self.folder} not found{hint}")
        self._files = {
            part: {
                "images": find_idx_file(self.folder, prefix, "images-idx3"),
                "labels": find_idx_file(self.folder, prefix, "labels-idx1"),
            }
            for part, prefix in _PREFIXES.items()
        }
        labels = {}
        for part, files in self._files.items():
            labels[part] = self._read_labels(files["labels"])
            dtype, shape = read_idx_header(files["images"])
            if dtype != np.dtype(">u1") or len(shape) != 3 or shape[0] != labels[part].size:
                raise FeatltError(
                    f"idx file {files['images']}: declares {dtype} {shape}, but the images must "
                    f"be uint8 (N, H, W) with N = {labels[part].size} labels from "
                    f"{files['labels'].name}"
                )
        names = self.fixed_class_names or [
            str(c) for c in range(int(max(v.max() for v in labels.values() if v.size)) + 1)
        ]
        self._set_parts(labels, names)
        self._images: dict[str, np.ndarray] = {}
        self._sha256: dict[str, str] | None = None

    @staticmethod
    def _read_labels(path: Path) -> np.ndarray:
        labels = read_idx(path)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise FeatltError(
                f"idx file {path}: labels must be a 1-D integer array, got {labels.dtype} "
                f"{labels.shape}"
            )
        return labels.astype(np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = {}
        return state

    def _load_part_image(self, part: str, position: int) -> Any:
        if part not in self._images:
            self._images[part] = read_idx(self._files[part]["images"])
        return array_to_rgb(self._images[part][position], f"dataset {self.uri}: {part}[{position}]")

    def describe(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = {
                f.name: file_sha256(f) for files in self._files.values() for f in files.values()
            }
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.folder.resolve()),
            "sha256": self._sha256,
            "conventions": "grayscale replicated to RGB; uint8 0..255",
            **self._describe_splits(),
        }


@register_source("fashion-mnist")
class FashionMnistSource(IdxSource):
    """Fashion-MNIST idx files with their ten class names (default: the Debian package's copy)."""

    default_dir = FASHION_MNIST_DIR
    fixed_class_names = FASHION_MNIST_CLASSES
