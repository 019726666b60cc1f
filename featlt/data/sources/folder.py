"""``folder:PATH``: an image folder with one subfolder per class.

Layouts:

- ``PATH/<class>/**/<image>``: one part, ``train`` (a test split is held out, see
  :func:`~featlt.data.sources.stratified_holdout`);
- ``PATH/{train,val,test}/<class>/**/<image>``: the parts that exist (``train`` required).

Class names are the class subfolder names of all parts, sorted; a class missing from a part has
no images there. Images are files with a common image extension (hidden files skipped), in
sorted path order, so item ``i`` is stable. The fingerprint hashes every image's relative path
and size (not the pixels, which would mean reading the whole dataset). As with ``split-list:``, an
image that resolves outside the root through a symlink is refused when it is opened (``--skip-bad``
leaves it out).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from featlt.data.sources import SPLIT_ORDER, decode_image, register_source
from featlt.data.sources.indexed import IndexedSource
from featlt.data.sources.split_list import resolve_inside
from featlt.errors import FeatltError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


@register_source("folder")
class ImageFolderSource(IndexedSource):
    """Image folder; ``path`` is the root folder."""

    def __init__(self, path: str):
        self.root = Path(path).expanduser()
        self.uri = f"folder:{path}"
        if not self.root.is_dir():
            raise FeatltError(f"dataset {self.uri}: folder {self.root} not found; pass a folder")
        part_dirs = {p: self.root / p for p in SPLIT_ORDER if (self.root / p).is_dir()}
        if not part_dirs:
            part_dirs = {"train": self.root}
        class_dirs = {p: _subfolders(d) for p, d in part_dirs.items()}
        names = sorted({c for classes in class_dirs.values() for c in classes})
        if not names:
            raise FeatltError(
                f"dataset {self.uri}: no class subfolders in {self.root}; put the images of "
                "each class into their own subfolder (PATH/<class>/img.jpg)"
            )
        class_id = {name: c for c, name in enumerate(names)}
        self._files: dict[str, list[Path]] = {}
        labels: dict[str, np.ndarray] = {}
        for part, part_dir in part_dirs.items():
            files, part_labels = [], []
            for name in class_dirs[part]:
                for file in _image_files(part_dir / name):
                    files.append(file)
                    part_labels.append(class_id[name])
            if not files:
                raise FeatltError(
                    f"dataset {self.uri}: part '{part}' ({part_dir}) holds no images with "
                    f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
                )
            self._files[part] = files
            labels[part] = np.asarray(part_labels, dtype=np.int64)
        self._set_parts(labels, names)
        self._layout = "split-subfolders" if self.root not in part_dirs.values() else "classes"

    def _load_part_image(self, part: str, position: int) -> Any:
        file = self._files[part][position]
        what = f"dataset {self.uri}: image {file}"
        return decode_image(resolve_inside(self.root, str(file.relative_to(self.root)), what), what)

    def _load_part_encoded(self, part: str, position: int) -> bytes | None:
        """The file's bytes; None when it cannot be read (:meth:`load_image` says why)."""
        file = self._files[part][position]
        what = f"dataset {self.uri}: image {file}"
        try:
            return resolve_inside(self.root, str(file.relative_to(self.root)), what).read_bytes()
        except (OSError, FeatltError):
            return None

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for part in sorted(self._files):
            for file in self._files[part]:
                size = file.stat().st_size if file.exists() else -1
                # file names are bytes to the OS and need not be UTF-8
                digest.update(os.fsencode(file.relative_to(self.root)) + f"\t{size}\n".encode())
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.root.resolve()),
            "layout": self._layout,
            "fingerprint": {"method": "sha256 of relative paths and sizes", "sha256":
                            digest.hexdigest()},
            **self._describe_splits(),
        }


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
