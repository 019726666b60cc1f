"""Training rows read block by block: the one way every stage of the report reads features.

:class:`ArrayRows` wraps an in-memory (N, D) float32 array (its blocks are views, nothing is
copied); :class:`StoreRows` reads the rows of an index view of a feature store a chunk at a time
(``evaluate-separability --memory-budget``), so no more than one chunk is held. Both give
``blocks()``, ``(first row, (b, D) float32 block)`` in row order, and ``take(rows)``, the
``(r, D)`` float32 rows at sorted positions (kNN queries, k-means samples);
:func:`selected_blocks` gives a sample of rows block by block without holding it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from featlt.store.feature_store import FeatureStore

BLOCK_ROWS = 65536  # rows per block of an in-memory array (bounds each stage's temporaries)
MB = 2**20


class Rows(Protocol):
    """(N, D) float32 training rows, read by blocks."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]: ...

    def take(self, positions: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayRows:
    """An in-memory (N, D) float32 array, in blocks of ``block_rows`` rows (views)."""

    X: np.ndarray
    block_rows: int = BLOCK_ROWS

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.X.shape[0]), int(self.X.shape[1])

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, (b, D) view)`` for every block, in row order."""
        for start in range(0, self.X.shape[0], self.block_rows):
            yield start, self.X[start:start + self.block_rows]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """(r, D) float32 copy of the rows at ``positions`` (r,)."""
        return self.X[np.asarray(positions, dtype=np.int64)]


@dataclass(frozen=True)
class StoreRows:
    """The ``rows`` (n,) (sorted stored rows of ``split``) of an open store, ``chunk_rows`` at a
    time; ``dim`` is the feature width."""

    store: FeatureStore
    split: str
    rows: np.ndarray
    chunk_rows: int
    dim: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rows.size), self.dim

    def _read(self, stored: np.ndarray) -> np.ndarray:
        """(r, D) float32 stored rows ``stored`` (sorted), read a chunk's worth at a time."""
        return self.store.read(self.split, stored, budget_mb=self.chunk_rows * self.dim * 4 / MB)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, (b, D) float32 chunk)`` for every chunk, in row order."""
        for start in range(0, self.rows.size, self.chunk_rows):
            yield start, self._read(self.rows[start:start + self.chunk_rows])

    def take(self, positions: np.ndarray) -> np.ndarray:
        """(r, D) float32 rows at sorted view ``positions`` (r,)."""
        return self._read(self.rows[np.asarray(positions, dtype=np.int64)])


def take_in_order(rows: Rows, positions: np.ndarray) -> np.ndarray:
    """(r, D) float32 rows at ``positions`` (r,) in the order given (read sorted, then placed)."""
    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    out = np.empty((positions.size, rows.shape[1]), dtype=np.float32)
    out[order] = rows.take(positions[order])
    return out


def selected_blocks(rows: Rows, positions: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """The rows at sorted ``positions`` (r,), block by block: ``(index into positions, (b, D)
    float32 selected rows)``; one block of ``rows`` is held at a time."""
    positions = np.asarray(positions, dtype=np.int64)
    for first, block in rows.blocks():
        low, high = np.searchsorted(positions, [first, first + block.shape[0]])
        if high > low:
            yield int(low), block[positions[low:high] - first]


def as_rows(X: np.ndarray | Rows) -> Rows:
    """``X`` itself when it already reads by blocks, else :class:`ArrayRows` over it."""
    return ArrayRows(X) if isinstance(X, np.ndarray) else X
