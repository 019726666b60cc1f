"""Block digests of a feature store's arrays: computed while writing, checked while reading.

Every array of a split (``features``, ``views``, ``logits``, ``labels``, ``index``, ``skipped``,
``source_labels``) is cut into blocks of ``block_rows`` rows (the array's HDF5 chunk rows for the
arrays written batch by batch, :data:`WHOLE_BLOCK_ROWS` for the 1-D arrays written whole), and
each block gets a 16-byte BLAKE2b digest::

    /<split>/digests/<array>   (n_blocks, 16) uint8, attrs: block_rows, algorithm

Block ``k`` covers rows ``[k * block_rows, min((k + 1) * block_rows, n_written))``. Its digest
hashes, in this order, a header naming the split, the array and the block's first row, the raw
stored bytes of its rows (the dtype as stored, C order), and a trailer with the row count, the
dtype and the row shape. Naming the split, the array and the position means a block moved to
another place (two chunks swapped, one split's group renamed onto another, an array aliased by a
link) no longer matches; hashing the stored bytes means a reader checks exactly what it read.

Digests catch corruption (bit rot, a truncated copy, a bad disk) and careless edits (bytes
overwritten with h5py or a hex editor). They are not a signature: whoever can rewrite the file can
recompute them.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

DIGEST_SIZE = 16
PERSON = b"featlt-block-v1"  # BLAKE2b personalisation (at most 16 bytes)
ALGORITHM = "blake2b-128/featlt-block-v1"
GROUP = "digests"
# Arrays written batch by batch (blocks: the array's chunk rows) and arrays written whole at
# begin_split (blocks: WHOLE_BLOCK_ROWS rows, 1 MiB of int64).
BATCH_ARRAYS = ("features", "views", "logits")
WHOLE_ARRAYS = ("labels", "index", "skipped", "source_labels")
DIGESTED_ARRAYS = BATCH_ARRAYS + WHOLE_ARRAYS
WHOLE_BLOCK_ROWS = 1 << 17


def n_blocks(n_rows: int, block_rows: int) -> int:
    """Blocks of ``block_rows`` rows that cover ``n_rows`` rows."""
    return math.ceil(n_rows / block_rows) if n_rows else 0


def _start(split: str, array: str, first_row: int) -> Any:
    """A BLAKE2b state that has absorbed the header of the block starting at ``first_row``."""
    state = hashlib.blake2b(digest_size=DIGEST_SIZE, person=PERSON)
    state.update(f"{split}/{array}@{first_row}\0".encode())
    return state


def _finish(state: Any, rows: int, dtype: np.dtype, row_shape: tuple[int, ...]) -> np.ndarray:
    """The (16,) uint8 digest of a block of ``rows`` rows, from a copy of ``state``."""
    final = state.copy()
    final.update(f"\0{rows}:{np.dtype(dtype).str}:{tuple(int(s) for s in row_shape)}".encode())
    return np.frombuffer(final.digest(), dtype=np.uint8)


def _absorb(state: Any, values: np.ndarray) -> None:
    if values.size:
        state.update(memoryview(np.ascontiguousarray(values)).cast("B"))


def block_digest(split: str, array: str, first_row: int, values: np.ndarray) -> np.ndarray:
    """The digest of one block.

    Args:
        first_row: the stored row the block starts at (a multiple of the block rows).
        values: (b, ...) the block's rows, in the dtype they are stored in.
    Returns:
        (16,) uint8.
    """
    state = _start(split, array, first_row)
    _absorb(state, values)
    return _finish(state, values.shape[0], values.dtype, values.shape[1:])


def whole_digests(split: str, array: str, values: np.ndarray,
                  block_rows: int = WHOLE_BLOCK_ROWS) -> np.ndarray:
    """Digests of an array written in one piece.

    Args:
        values: (N, ...) the whole array as stored.
    Returns:
        (n_blocks(N, block_rows), 16) uint8.
    """
    count = n_blocks(values.shape[0], block_rows)
    out = np.zeros((count, DIGEST_SIZE), dtype=np.uint8)
    for k in range(count):
        start = k * block_rows
        out[k] = block_digest(split, array, start, values[start:start + block_rows])
    return out


def mismatched_blocks(
    split: str, array: str, first_row: int, values: np.ndarray, table: np.ndarray,
    block_rows: int, blocks: list[int],
) -> list[int]:
    """Which of ``blocks`` do not match their recorded digest.

    Args:
        first_row: the stored row ``values`` starts at.
        values: (b, ...) stored rows that contain every block of ``blocks`` entirely (each block
            ends at the next multiple of ``block_rows`` or at the end of ``values``).
        table: (n_blocks, 16) uint8 recorded digests.
        blocks: block numbers to check.
    """
    bad = []
    for k in blocks:
        start = k * block_rows
        stop = min(start + block_rows, first_row + values.shape[0])
        block = values[start - first_row:stop - first_row]
        if not np.array_equal(block_digest(split, array, start, block), table[k]):
            bad.append(k)
    return bad


class BlockHasher:
    """The digests of one batch-written array as its rows arrive.

    It holds the BLAKE2b state of the block being filled, so a batch that ends mid-block costs
    no re-read: the next batch continues the same state, and the block's digest is rewritten
    each time it grows. A writer that resumes (or starts a hasher late) calls :meth:`catch_up`,
    which re-reads the rows of the open block from the file.
    """

    def __init__(self, split: str, array: str, block_rows: int, dtype: np.dtype,
                 row_shape: tuple[int, ...]):
        if block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}")
        self.split, self.array, self.block_rows = split, array, int(block_rows)
        self.dtype, self.row_shape = np.dtype(dtype), tuple(row_shape)
        self.next_row = 0
        self._block_start = 0
        self._state = _start(split, array, 0)

    def catch_up(self, dataset: Any, written: int) -> None:
        """Rebuild the open block's state from the stored rows below ``written``.

        Args:
            dataset: the stored (N, ...) array (an h5py dataset); rows below ``written`` valid.
        """
        start = (written // self.block_rows) * self.block_rows
        self._block_start = start
        self._state = _start(self.split, self.array, start)
        if written > start:
            _absorb(self._state, np.asarray(dataset[start:written], dtype=self.dtype))
        self.next_row = written

    def add(self, first_row: int, values: np.ndarray) -> tuple[int, np.ndarray]:
        """Absorb rows ``[first_row, first_row + b)``; return the digests of every block touched.

        Args:
            first_row: must equal :attr:`next_row`.
            values: (b, ...) the rows as stored (dtype :attr:`dtype`).
        Returns:
            (first block number, (k, 16) uint8 digests of blocks first .. first + k - 1), each
            covering its rows up to ``first_row + b``.
        """
        if first_row != self.next_row:
            raise ValueError(f"{self.split}/{self.array}: rows from {self.next_row} expected, "
                             f"got {first_row}")
        count = int(values.shape[0])
        first_block = first_row // self.block_rows
        digests: list[np.ndarray] = []
        done = 0
        while done < count:
            row = first_row + done
            if row == self._block_start + self.block_rows:  # the open block is full
                self._block_start = row
                self._state = _start(self.split, self.array, row)
            take = min(count - done, self._block_start + self.block_rows - row)
            _absorb(self._state, values[done:done + take])
            done += take
            digests.append(_finish(self._state, row + take - self._block_start, self.dtype,
                                   self.row_shape))
        self.next_row = first_row + count
        empty = np.zeros((0, DIGEST_SIZE), np.uint8)
        return first_block, (np.stack(digests) if digests else empty)


def rewrite_digests(group: Any, array: str) -> None:
    """Recompute the digests of ``group[array]`` from its stored rows (all ``n_written``).

    For tools and tests that change an array on purpose (a fabricated degenerate store). It is
    what anyone who rewrites a file can do, which is why digests are no signature.

    Args:
        group: an h5py group of a split, open for writing, with ``digests/<array>``.
    """
    table = group[GROUP][array]
    block_rows = int(table.attrs["block_rows"])
    split = group.name.strip("/")
    dset = group[array]
    rows = int(group.attrs["n_written"]) if array in BATCH_ARRAYS else int(dset.shape[0])
    table[:n_blocks(rows, block_rows)] = whole_digests(split, array, dset[:rows], block_rows)
