"""Features read chunk by chunk from a store: what ``fit-classifier --memory-budget`` trains on.

:class:`StreamedFeatures` stands for the ``(n, D)`` features of index-view rows of one split
without holding them: it yields float64 chunks of at most ``chunk_rows`` rows, optionally
mapped (preprocessing, a base head's logits) on the way. The heads accept it wherever they take
an ``(n, D)`` array (``fit``, ``logits``); :func:`epoch_batches` is the streamed row source of the
one training loop (:func:`featlt.heads.training.train_parameters`): small blocks of rows in
shuffled order, read a chunk at a time, rows shuffled (or class-balanced drawn) across the
chunk's blocks, regrouped into minibatches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch and h5py are imported where used, not by every head import
    import torch

    from featlt.store.feature_store import FeatureStore

    # One minibatch: inputs (b, D'), targets (b,), weights (b,) on the training device.
    Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

ChunkMap = Callable[[np.ndarray], np.ndarray]  # (b, D) float64 -> (b, D') float64
BLOCKS_PER_CHUNK = 128  # shuffled blocks mixed in one training chunk
MIN_BLOCK_ROWS = 4


@dataclass(frozen=True)
class StreamedFeatures:
    """The ``(n, dim)`` features of ``rows`` of ``split`` in an open ``store``, read by chunks.

    Attributes:
        store: an open :class:`FeatureStore` (kept open by the caller while this is used).
        split: the stored split.
        rows: (n,) sorted stored rows of the split (an index view).
        chunk_rows: at most this many rows are held per chunk.
        dim: the width of the yielded chunks (after ``maps``).
        maps: functions applied to every chunk, in order.
    """

    store: FeatureStore
    split: str
    rows: np.ndarray
    chunk_rows: int
    dim: int
    maps: tuple[ChunkMap, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, dim)``, as an array's."""
        return int(self.rows.shape[0]), self.dim

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, positions: np.ndarray) -> StreamedFeatures:
        """The rows at ``positions`` (increasing indices into this view, or a boolean mask),
        still streamed."""
        rows = self.rows[np.asarray(positions)]
        if np.any(np.diff(rows) <= 0):
            raise ValueError("StreamedFeatures: select rows in increasing order (the store "
                             "reads sorted rows); sort the positions and their labels together")
        return replace(self, rows=rows)

    def mapped(self, fn: ChunkMap, dim: int) -> StreamedFeatures:
        """The same rows with ``fn`` (``(b, self.dim) -> (b, dim)``) applied to every chunk."""
        return replace(self, maps=(*self.maps, fn), dim=dim)

    def n_chunks(self) -> int:
        return -(-len(self) // self.chunk_rows)

    def read(self, positions: np.ndarray, raw_rows: int) -> np.ndarray:
        """Features ``(b, dim)`` float64 of sorted view ``positions`` (b,), mapped; the store is
        read ``raw_rows`` stored rows at a time (at least one digest block)."""
        raw_mb = raw_rows * self.store.info(self.split).dim * 4 / 2**20
        X = self.store.read(self.split, self.rows[positions], budget_mb=raw_mb)
        values = X.astype(np.float64)
        del X
        for fn in self.maps:
            values = fn(values)
        return values

    def chunk(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``index``: ``(positions (b,) into this view, features (b, dim) float64)``."""
        positions = np.arange(index * self.chunk_rows,
                              min((index + 1) * self.chunk_rows, len(self)))
        return positions, self.read(positions, self.chunk_rows)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every chunk in row order: ``(positions (b,), features (b, dim) float64)``."""
        for index in range(self.n_chunks()):
            yield self.chunk(index)


def epoch_batches(
    Z: StreamedFeatures,
    targets: np.ndarray,
    weights: np.ndarray,
    sampling: str,
    rng: np.random.Generator,
    draws: int,
    batch: int,
    device: torch.device,
) -> Iterator[Batch]:
    """One epoch of ``draws`` rows of ``Z`` in minibatches of ``batch`` (the last may be short).

    The rows are cut into blocks of :func:`block_rows` consecutive rows; the shuffled blocks are
    dealt to chunks of about :data:`BLOCKS_PER_CHUNK` blocks, stratified by each block's first
    target (:func:`_deal`), and read a chunk at a time, so each chunk mixes blocks from all over
    the store with the classes in their overall proportions (a store written class by class
    still gives minibatches like the in-memory ones); the rows drawn from a chunk are shuffled
    together.
    ``instance``: each pass takes every row once (passes repeat until ``draws``).
    ``class_balanced``: the draws are split over blocks by each block's share of the row weights
    ``1 / n_target`` (multinomial), then drawn with replacement inside the block by the same
    weights, so every row has the probability it has in the in-memory sampler. A block drawn
    more often than it has rows (a rare class's block draws about ``draws / C`` times) is cut
    into pieces of at most its length, dealt to different chunks (:func:`_pieces`), so a rare
    class's draws are spread over the epoch as in memory instead of falling in one chunk (which
    cost crt 6 points of balanced accuracy at 100k rows, ``results/scaling.json``).

    Args:
        targets: (n,) int64 training targets; weights: (n,) per-row loss weights.
    """
    import torch

    size = block_rows(Z.chunk_rows)
    starts = np.arange(0, len(Z), size)
    lengths = np.minimum(size, len(Z) - starts)
    labels = targets[starts]  # a block's first target stands for the block (stored by class)
    per_chunk = max(1, Z.chunk_rows // size)
    p = 1.0 / np.bincount(targets)[targets]
    plan: list[list[tuple[int, int]]] = []  # chunks of (block, rows drawn from it)
    if sampling == "instance":
        left = draws
        while left > 0:
            for group in _deal(rng.permutation(starts.size), labels, per_chunk, rng):
                takes = []
                for block in group:
                    takes.append((int(block), int(min(left, lengths[block]))))
                    left -= takes[-1][1]
                    if left == 0:
                        break
                plan.append(takes)
                if left == 0:
                    break
    else:
        per_block = rng.multinomial(draws, (mass := np.add.reduceat(p, starts)) / mass.sum())
        piece_block, piece_take = _pieces(per_block, lengths)
        dealt = _deal(rng.permutation(piece_block.size), labels[piece_block], per_chunk, rng)
        plan = [_merged(piece_block[group], piece_take[group]) for group in dealt]
    pending: list[Batch] = []
    for group in plan:
        blocks = sorted(block for block, _ in group)
        positions = np.concatenate([np.arange(starts[b], starts[b] + lengths[b]) for b in blocks])
        offsets = dict(zip(blocks, np.cumsum([0, *lengths[blocks][:-1]]), strict=True))
        picks = []
        for block, take in group:
            n_rows = int(lengths[block])
            if sampling == "instance":
                local = rng.permutation(n_rows)[:take]
            else:
                weight = p[starts[block] : starts[block] + n_rows]
                local = rng.choice(n_rows, size=take, replace=True, p=weight / weight.sum())
            picks.append(offsets[block] + local)
        chosen = np.concatenate(picks)
        chosen = chosen[rng.permutation(chosen.size)]
        values = torch.as_tensor(Z.read(positions, size), dtype=torch.float32, device=device)
        for first in range(0, chosen.size, batch):
            take = chosen[first : first + batch]
            rows = positions[take]
            pending.append((values[torch.as_tensor(take, device=device)],
                            torch.as_tensor(targets[rows], dtype=torch.int64, device=device),
                            torch.as_tensor(weights[rows], dtype=torch.float32, device=device)))
            if sum(int(part[0].shape[0]) for part in pending) >= batch:
                yield from _regroup(pending, batch)
        del values
    if pending:
        yield tuple(torch.cat(parts) for parts in zip(*pending, strict=True))  # type: ignore[misc]


def block_rows(chunk_rows: int) -> int:
    """Rows per shuffled block when chunks hold ``chunk_rows`` rows: :data:`BLOCKS_PER_CHUNK`
    blocks per chunk, at least :data:`MIN_BLOCK_ROWS` rows each."""
    return max(MIN_BLOCK_ROWS, chunk_rows // BLOCKS_PER_CHUNK)


def _deal(
    blocks: np.ndarray, labels: np.ndarray, per_chunk: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Deal ``blocks`` (shuffled block indices) to chunks of at most ``per_chunk`` blocks,
    stratified: sorted (stably) by their label, then dealt round-robin, so every chunk gets an
    even share of each label's blocks (a rare class's few blocks are not left to chance).
    Returns the chunks in a random order.

    Args:
        labels: (n_blocks,) the label of each block.
    """
    n_chunks = max(1, -(-blocks.size // per_chunk))
    ordered = blocks[np.argsort(labels[blocks], kind="stable")]
    return [ordered[i::n_chunks] for i in rng.permutation(n_chunks)]


def _pieces(per_block: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each block's draws cut into pieces of at most the block's length, as even as possible.

    Args:
        per_block: (n_blocks,) draws of every block; lengths: (n_blocks,) rows of every block.
    Returns:
        (the block of every piece, the draws of every piece), each (n_pieces,) int64, the
        blocks without draws left out.
    """
    drawn = np.flatnonzero(per_block)
    counts = -(-per_block[drawn] // lengths[drawn])  # pieces per drawn block
    block = np.repeat(drawn, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    index = np.arange(block.size) - first  # the piece's number within its block
    base, extra = np.divmod(per_block[block], np.repeat(counts, counts))
    return block.astype(np.int64), (base + (index < extra)).astype(np.int64)


def _merged(blocks: np.ndarray, takes: np.ndarray) -> list[tuple[int, int]]:
    """One chunk's ``(block, draws)`` with the pieces of one block dealt to it added up."""
    unique, inverse = np.unique(blocks, return_inverse=True)
    return [(int(b), int(t)) for b, t in zip(unique, np.bincount(inverse, weights=takes),
                                              strict=True)]


def _regroup(pending: list[Batch], batch: int) -> Iterator[Batch]:
    """Yield full minibatches of ``batch`` rows from the pieces in ``pending``; the rest (fewer
    than ``batch`` rows) stays in ``pending``."""
    import torch

    joined = tuple(torch.cat(parts) for parts in zip(*pending, strict=True))
    pending.clear()
    n = int(joined[0].shape[0])
    full = n // batch * batch
    for start in range(0, full, batch):
        yield tuple(part[start : start + batch] for part in joined)  # type: ignore[misc]
    if full < n:
        pending.append(tuple(part[full:] for part in joined))  # type: ignore[arg-type]
