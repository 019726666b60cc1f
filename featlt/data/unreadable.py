"""Find the images of a split that cannot be loaded, for ``featlt extract --skip-bad``.

Without ``--skip-bad`` the first corrupt or missing image stops extraction with a
:class:`~featlt.errors.FeatltError` naming the file. With it, extraction first calls
:func:`find_unreadable`, writes only the readable rows, and records the skipped source positions
in the store (``StoreWriter.begin_split(..., skipped=...)`` -> ``/<split>/skipped``)::

    skipped = find_unreadable(source, split)
    rows = np.setdiff1d(np.arange(len(source.labels(split))), skipped)  # what gets extracted
    writer.begin_split(split, source.labels(split)[rows], rows, ..., skipped=skipped)

The check decodes every image once (the same work as extraction's decode, without the
forward). The result depends only on the files, so a resumed run skips the same rows and
``begin_split`` accepts the resumed split.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from featlt.errors import FeatltError

log = logging.getLogger("featlt")
BLOCK = 512  # images per task: bounds the number of queued futures on huge splits
MAX_LOGGED = 20  # unreadable images named in the log; the rest are only counted


def _unreadable_in(source: Any, split: str, start: int, stop: int) -> list[tuple[int, str]]:
    bad = []
    for i in range(start, stop):
        try:
            source.load_image(split, i)
        except FeatltError as err:
            bad.append((i, str(err)))
    return bad


def find_unreadable(source: Any, split: str, workers: int = 1) -> np.ndarray:
    """Positions of the images of ``split`` whose ``load_image`` raises a FeatltError.

    Args:
        source: an ``ImageSource``.
        workers: threads decoding in parallel (PIL releases the GIL while decoding).
    Returns:
        (S,) int64 sorted positions in 0..N-1 (empty when every image loads).
    """
    if workers < 1:
        raise FeatltError(f"workers={workers}: must be at least 1")
    n = len(source.labels(split))
    blocks = [(start, min(start + BLOCK, n)) for start in range(0, n, BLOCK)]
    if workers == 1:
        results = [_unreadable_in(source, split, a, b) for a, b in blocks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda ab: _unreadable_in(source, split, *ab), blocks))
    bad = [item for block in results for item in block]
    for i, message in bad[:MAX_LOGGED]:
        log.warning("skipping %s item %d: %s", split, i, message)
    if len(bad) > MAX_LOGGED:
        log.warning("skipping %d more unreadable %s images", len(bad) - MAX_LOGGED, split)
    return np.asarray([i for i, _ in bad], dtype=np.int64)
