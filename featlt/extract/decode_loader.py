"""What an extraction run's DataLoader workers do: load images, transform them, batch them.

:class:`SplitImages` is the map-style dataset of one split's selected rows (clean image and
``--views`` views as uint8), :class:`Collate` stacks a batch (normalised in the worker on CPU,
left uint8 for the GPU), :func:`worker_init` gives each worker one torch thread and ties its
life to the main process. :func:`check_batch_memory` refuses, before any image is decoded at
that size, a batch that cannot fit in the memory there is.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from featlt.errors import FeatltError

# The largest --resolution featlt accepts: a 4096 x 4096 float32 image is 201 MB, and a
# timm model's activations are several times that.
MAX_RESOLUTION = 4096
# Peak CPU inference memory of a forward pass over the float32 input batch's size, measured at
# 1024 px, batch 1, torch 2.14: MobileNetV3-S 6.2x, ResNet-18 10.7x, EfficientNet-Lite0 30x.
# The check assumes less than the least of them, so it refuses only what cannot fit.
ACTIVATION_FACTOR = 4
# Batches a DataLoader worker keeps ready (torch's default prefetch_factor).
PREFETCH_BATCHES = 2


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


@dataclass(frozen=True)
class BatchMemory:
    """The least memory an extraction's batches need, in bytes.

    ``host``: the decoded batches the DataLoader keeps queued (float32 on CPU, uint8 for CUDA),
    plus on CPU the forward pass; ``device``: on CUDA the forward pass (0 on CPU).
    """

    host: int
    device: int
    queued: int  # decoded batches in flight (part of host)
    forward: int  # one forward pass: the float32 batch x (1 + ACTIVATION_FACTOR [/ 2 under AMP])


def batch_memory(batch_size: int, input_size: tuple[int, int, int], n_views: int, workers: int,
                 device: str, amp: bool = False) -> BatchMemory:
    """A lower bound of the memory the batches of an extraction need.

    Args:
        batch_size: images per forward pass (``--batch-size``); views are forwarded in chunks of
            the same size.
        input_size: (3, H, W), the backbone's input.
        n_views: ``--views`` V; each image's V views travel in its batch, (b, V, 3, H, W).
        workers: DataLoader workers, each keeping :data:`PREFETCH_BATCHES` batches ready (0: one
            batch, made in the main process).
        device: ``cpu`` or ``cuda``.
        amp: CUDA autocast (activations in 16 bits, half the bytes).
    """
    pixels = int(np.prod(input_size))
    batch_float32 = batch_size * pixels * 4
    in_flight = workers * PREFETCH_BATCHES if workers else 1
    queued = in_flight * batch_size * (1 + n_views) * pixels * (4 if device == "cpu" else 1)
    activations = ACTIVATION_FACTOR / (2 if amp and device != "cpu" else 1)
    forward = int(batch_float32 * (1 + activations))
    if device == "cpu":
        return BatchMemory(host=queued + forward, device=0, queued=queued, forward=forward)
    return BatchMemory(host=queued, device=forward, queued=queued, forward=forward)


def check_batch_memory(batch_size: int, input_size: tuple[int, int, int], n_views: int,
                       workers: int, device: str, amp: bool = False,
                       available: dict[str, int | None] | None = None) -> BatchMemory:
    """Refuse an input size above :data:`MAX_RESOLUTION` and batches that cannot fit in the
    available memory (:func:`batch_memory` against :func:`available_memory`), naming the
    numbers and the fix (a smaller ``--batch-size`` or ``--resolution``).

    Args:
        batch_size: images per batch (``--batch-size``, or fewer when no split has as many).
        input_size: (3, H, W), the backbone's input.
        available: {"host": bytes, "device": bytes or None}; None: measured now.
    Returns:
        the estimate, when it fits (or the available memory cannot be read).
    """
    height, width = int(input_size[1]), int(input_size[2])
    if max(height, width) > MAX_RESOLUTION:
        raise FeatltError(
            f"--resolution: the backbone's input is {height}x{width} px, above "
            f"{MAX_RESOLUTION}, the largest featlt accepts; pass --resolution {MAX_RESOLUTION} "
            "or less"
        )
    need = batch_memory(batch_size, input_size, n_views, workers, device, amp)
    available = available_memory(device) if available is None else available
    for where in ("host", "device"):
        have, needed = available.get(where), getattr(need, where)
        if have is None or needed <= have:
            continue
        one = batch_memory(1, input_size, n_views, workers, device, amp)
        fits = have // max(getattr(one, where), 1)
        fix = (f"pass --batch-size {fits} or less" if fits >= 1 else
               f"even --batch-size 1 needs {_gib(getattr(one, where))}; pass --resolution "
               f"{max(1, int(height * math.sqrt(have / getattr(one, where))))} or less")
        label = "this machine's" if where == "host" else f"{device} free"
        raise FeatltError(
            f"a batch of {batch_size} images at {height}x{width} px (--batch-size, --resolution; "
            f"--views {n_views}, {workers} workers) needs at least {_gib(needed)} of {label} "
            "memory, but "
            f"{_gib(have)} is available (forward pass {_gib(need.forward)}: the float32 batch "
            f"{_gib(batch_size * height * width * 12)} and at least {ACTIVATION_FACTOR}x it in "
            f"activations; decoded batches queued: {_gib(need.queued)}); {fix}, or a smaller "
            "--resolution"
        )
    return need


def available_memory(device: str) -> dict[str, int | None]:
    """{"host": bytes the OS can give without swapping, "device": free CUDA memory}; None where
    it cannot be read."""
    host = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if host is None and hasattr(os, "sysconf"):
        try:
            host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            host = None
    gpu = None
    if device == "cuda":
        import torch

        gpu = int(torch.cuda.mem_get_info()[0])
    return {"host": host, "device": gpu}


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"
