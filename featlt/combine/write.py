"""``featlt combine``: one combined store written through the store writer.

The output is written by :class:`featlt.store.writer.StoreWriter` (block digests, ``.partial``
until complete, then renamed in one step) under the output's one-writer lock
(:mod:`featlt.output_lock`); ``mode`` has ``extract``'s meaning (``create`` refuses an existing
output, ``overwrite`` replaces it, ``resume`` continues an interrupted combination of the same
members). Rows are combined in batches under a memory budget, each member read block by block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featlt.combine.inputs import (
    Member,
    check_members,
    member_of,
    same_augmentation,
    store_dtype,
)
from featlt.combine.record import combined_provenance
from featlt.combine.rows import SharedSplit, common_splits, shared_split
from featlt.output_lock import output_lock
from featlt.runtime import refuse_output_onto_inputs
from featlt.store.feature_store import FeatureStore
from featlt.store.members import DEFAULT_MAX_WIDTH, apply_recipe
from featlt.store.writer import StoreWriter, WriteMode


@dataclass(frozen=True)
class CombineResult:
    """What one ``featlt combine`` wrote."""

    output: Path
    members: list[str]  # each member in words, in order
    dims: list[int]  # each member's width
    dim: int  # the combined width
    dtype: str
    rows: dict[str, int]  # split -> rows written
    views: int  # augmented views per row kept (0: none)
    logits: bool  # the members' logits kept (concatenated)
    seconds: float
    notes: list[str] = field(default_factory=list)


def combine_stores(paths: Sequence[str | Path], output: str | Path, mode: WriteMode = "create",
                   max_width: int = DEFAULT_MAX_WIDTH, budget_mb: float = 256.0,
                   min_members: int = 2) -> CombineResult:
    """Combine the member stores ``paths`` into the store ``output``.

    Args:
        paths: k >= ``min_members`` complete feature stores of one dataset.
        mode: ``create``, ``overwrite`` or ``resume`` (as ``featlt extract``).
        max_width: the widest combined feature accepted.
        budget_mb: memory for one batch of combined rows.
        min_members: 2 (a combination); 1 also accepts one store, written L2-normalised under
            the same recipe (the benchmark's normalised singles).
    Raises:
        FeatltError: the checks of :func:`featlt.combine.inputs.check_members` and
            :func:`featlt.combine.rows.shared_split`; an output that is an input, exists
            (``create``) or is locked by another run.
    """
    began = time.perf_counter()
    output = Path(output)
    with output_lock(output, "--output", unwritable="skip"), ExitStack() as stack:
        refuse_output_onto_inputs(output, list(paths))
        stores = [stack.enter_context(FeatureStore(p)) for p in paths]
        members = [member_of(s) for s in stores]
        check_members(members, max_width, min_members)
        splits, partial = common_splits(stores)
        shared = {split: shared_split(stores, split) for split in splits}
        smallest = members[int(np.argmin([sum(s.info(split).n_rows for split in splits)
                                          for s in stores]))]
        augmented = same_augmentation(members)
        n_views = _common(stores, splits, "views") if augmented else 0
        keep_logits = augmented and _common(stores, splits, "logits") > 0
        dtype = store_dtype(members)
        provenance = combined_provenance(members, splits, dtype, smallest, keep_logits)
        dim = sum(m.dim for m in members)
        with StoreWriter(output, provenance, mode) as writer:
            for split, rows in shared.items():
                n_logits = sum(s.info(split).n_logits for s in stores) if keep_logits else 0
                start = writer.begin_split(
                    split, rows.labels, rows.positions, rows.class_names, dim, dtype=dtype,
                    n_views=n_views, n_logits=n_logits, source_labels=rows.source_labels)
                batch = _batch_rows(dim, n_views, n_logits, budget_mb)
                for first, feats, views, logits in _combined_batches(
                        stores, members, rows, dtype, start, batch, n_views > 0, keep_logits):
                    writer.write_rows(split, first, feats, views, logits)
            writer.mark_complete()
    notes = [f"split '{s}' is not held by every input, so it is left out" for s in partial]
    if not augmented:
        notes.append("the members' augmented views differ (or some have none), so the "
                     "combination holds no views and no logits")
    return CombineResult(output=output, members=[m.describe() for m in members],
                         dims=[m.dim for m in members], dim=dim, dtype=dtype,
                         rows={s: int(r.positions.size) for s, r in shared.items()},
                         views=n_views, logits=keep_logits,
                         seconds=time.perf_counter() - began, notes=notes)


def _common(stores: Sequence[FeatureStore], splits: Sequence[str], array: str) -> int:
    """Views per row (``views``) or 1 (``logits``) when every split of every store holds the
    array (the same view count everywhere for views), else 0."""
    counts = {s.info(split).n_views if array == "views" else int(s.has(split, array))
              for s in stores for split in splits}
    return counts.pop() if len(counts) == 1 else 0


def _batch_rows(dim: int, n_views: int, n_logits: int, budget_mb: float) -> int:
    """Rows per batch: the float64 working copies of a batch fit ``budget_mb``."""
    row_bytes = 8 * (dim * (1 + n_views) + n_logits) * 2
    return max(1, int(budget_mb * 2**20) // row_bytes)


def _read(store: FeatureStore, split: str, rows: np.ndarray, array: str) -> np.ndarray:
    """``array`` at stored ``rows`` (any order), as stored dtype, in the order given."""
    order = np.argsort(rows, kind="stable")
    values = store.read(split, rows[order], array=array,
                        dtype=np.float32 if array == "logits" else store.info(split).dtype)
    out = np.empty_like(values)
    out[order] = values
    return out


def _combined_batches(
    stores: Sequence[FeatureStore], members: Sequence[Member], rows: SharedSplit, dtype: str,
    start: int, batch: int, views: bool, logits: bool,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """(first row, features (b, D), views (b, V, D) or None, logits (b, K) or None) of the
    combined split from row ``start`` on."""
    dtypes = [m.dtype for m in members]
    split = rows.split
    for first in range(start, rows.positions.size, batch):
        picked = [r[first:first + batch] for r in rows.rows]
        feats = apply_recipe([_read(s, split, r, "features") for s, r in zip(stores, picked,
                                                                              strict=True)],
                             dtypes, dtype)
        combined_views = apply_recipe(
            [_read(s, split, r, "views") for s, r in zip(stores, picked, strict=True)],
            dtypes, dtype) if views else None
        combined_logits = np.concatenate(
            [_read(s, split, r, "logits") for s, r in zip(stores, picked, strict=True)],
            axis=1) if logits else None
        yield first, feats, combined_views, combined_logits
