"""``jpeg-npz:FILE.npz``: JPEG files packed into one npz (the layout of ``../shared/data/cifar10``).

Keys per part ``p`` in train/val/test: ``p_bytes`` uint8 (n_bytes,) the JPEG files concatenated,
``p_offsets`` int64 (N+1,) with image i at ``bytes[offsets[i]:offsets[i+1]]``, ``p_labels`` int64
(N,); optional ``p_src`` (N,) file names (used in error messages) and ``label_names`` (C,).
The byte arrays are read lazily, once per process (DataLoader workers each read their own copy).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from featlt.data.sources import SPLIT_ORDER, decode_image, register_source
from featlt.data.sources.indexed import NpzSource, open_npz
from featlt.errors import FeatltError


@register_source("jpeg-npz")
class PackedJpegSource(NpzSource):
    """Packed-JPEG npz; ``path`` is the .npz file."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.uri = f"jpeg-npz:{path}"
        with open_npz(self.path, self.uri, "an existing .npz") as archive:
            parts = [p for p in SPLIT_ORDER if f"{p}_bytes" in archive.files]
            missing = [
                f"{p}_{k}" for p in parts for k in ("offsets", "labels")
                if f"{p}_{k}" not in archive.files
            ]
            if not parts or missing:
                raise FeatltError(
                    f"dataset {self.uri}: not a packed-JPEG npz (needs train_bytes, "
                    f"train_offsets, train_labels; missing {', '.join(missing) or 'train_bytes'})"
                    "; use npz: for plain image arrays"
                )
            labels = {p: archive[f"{p}_labels"].astype(np.int64) for p in parts}
            self._offsets = {p: archive[f"{p}_offsets"].astype(np.int64) for p in parts}
            names = (
                [str(n) for n in archive["label_names"]] if "label_names" in archive.files
                else [str(c) for c in range(int(max(v.max() for v in labels.values())) + 1)]
            )
        for p in parts:
            if self._offsets[p].shape != (labels[p].size + 1,):
                raise FeatltError(
                    f"dataset {self.uri}: {p}_offsets has shape {self._offsets[p].shape} but "
                    f"{p}_labels has {labels[p].size} entries; offsets must have N+1 entries"
                )
        self._set_parts(labels, names)

    def _load_part_image(self, part: str, position: int) -> Any:
        data = io.BytesIO(self._load_part_encoded(part, position))
        return decode_image(data, f"dataset {self.uri}: {part} image {position}")

    def _load_part_encoded(self, part: str, position: int) -> bytes:
        start, stop = self._offsets[part][position], self._offsets[part][position + 1]
        return self._npz_member(f"{part}_bytes")[start:stop].tobytes()

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "scheme": self.scheme,
            "path": str(self.path.resolve()),
            "sha256": self._file_sha256(),
            **self._describe_splits(),
        }
