"""What an extraction run's DataLoader workers do: load images, transform them, batch them.

:class:`SplitImages` is the map-style dataset of one split's selected rows (clean image and
``--views`` views as uint8), :class:`Collate` stacks a batch (normalised in the worker on CPU,
left uint8 for the GPU), :func:`worker_init` gives each worker one torch thread and ties its
life to the main process.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from featlt.errors import FeatltError


class SplitImages:
    """Map-style dataset of one split's selected rows: item j -> (clean, views, error).

    ``clean``: (3, H, W) uint8; ``views``: (V, 3, H, W) uint8 keyed on (seed, source position,
    view), or None without views; ``error``: None, or the message of an unreadable image.
    """

    def __init__(
        self, source: Any, split: str, rows: np.ndarray, transform: Any, view_transform: Any,
        n_views: int, seed: int,
    ):
        self.source, self.split, self.rows, self.transform = source, split, rows, transform
        self.view_transform, self.n_views, self.seed = view_transform, n_views, seed

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, j: int) -> tuple[Any, Any, str | None]:
        index = int(self.rows[j])
        try:
            image = self.source.load_image(self.split, index)
        except FeatltError as err:
            return None, None, str(err)
        views = (None if self.view_transform is None else
                 self.view_transform.views(image, self.seed, index, self.n_views, as_uint8=True))
        return self.transform(image), views, None


class Collate:
    """Stack a batch of :class:`SplitImages` items, normalised when ``normalize`` is given.

    Returns (images (b, 3, H, W), views (b, V, 3, H, W) or None, None): uint8 without
    ``normalize``, else float32 (:class:`~featlt.extract.batch_normalize.BatchNormalize`,
    bit-identical to the per-image transform), channels_last when ``channels_last``. The first
    decode error of the batch is passed on instead, as (None, None, message), and raised in the
    main process. Picklable: it runs in the DataLoader workers.
    """

    def __init__(self, normalize: Any = None, normalize_views: Any = None,
                 channels_last: bool = False):
        self.normalize, self.normalize_views = normalize, normalize_views
        self.channels_last = channels_last

    def __call__(self, items: list[tuple[Any, Any, str | None]]) -> tuple[Any, Any, str | None]:
        import torch

        for _, _, error in items:
            if error is not None:
                return None, None, error
        images = torch.stack([clean for clean, _, _ in items])
        views = None if items[0][1] is None else torch.stack([v for _, v, _ in items])
        if self.normalize is None:
            return images, views, None
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if views is not None:
            views = self.normalize_views(views)
        return self.normalize(images), views, None


def worker_init(_: int) -> None:
    """One torch thread per decoding worker, so workers and the forward pass share the cores;
    the worker dies with the main process (a killed extraction leaves no worker holding the
    output file open, and with it HDF5's lock)."""
    import torch

    torch.set_num_threads(1)
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when its parent dies (PR_SET_PDEATHSIG);
    elsewhere DataLoader's own check notices within seconds."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
