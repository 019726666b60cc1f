"""``fit-classifier --memory-budget MB``: what a run needs in memory, and how it keeps a budget.

The budget is resident memory above the level right after imports. A run whose every head
streams (:attr:`featlt.heads.registry.HeadSpec.streams`) reads features in chunks of
:attr:`MemoryPlan.chunk_rows` rows; what it holds whole is per-row bookkeeping (labels, indices,
targets, weights), the validation and test logits and the fitted parameters. A head that cannot
stream (CWS, DLSA, CIBL) needs the view's features in memory and runs so when the budget holds
them; otherwise the run is refused before any work, naming the smallest budget that works.
Estimates are from rows x width x bytes of what is held (the constants below, measured on
synthetic stores: tests/test_heads_streaming.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featlt.errors import FeatltError
from featlt.heads.registry import HEADS, head_spec
from featlt.store.memory import MB, MIN_CHUNK_ROWS

if TYPE_CHECKING:
    from featlt.data.protocol import DataView
    from featlt.store.feature_store import FeatureStore

# Allocations that do not scale with the data: torch's autograd and allocator on first use,
# HDF5's chunk cache and one stored block read (about 1 MiB) with its float32 copy,
# scipy/sklearn helpers' first calls.
OVERHEAD_MB = 32.0
# Per row of a stored split: its labels, source indices, index-view rows, targets, weights and
# sampling probabilities (int64/float64) and their temporary copies.
ROW_BYTES = 96
# Per element of a chunk: the stored value read (<= 4), the float32 read (4), float64 (8), the
# preprocessed float64 (8), the float32 tensor (4), minibatch gathers and a margin (8).
CHUNK_ELEMENT_BYTES = 36
# Per element of an in-memory view (a head that cannot stream): the float32 arrays (4), the
# float64 validated copy (8), the preprocessed float64 (8) and the float32 training tensor (4).
MEMORY_ELEMENT_BYTES = 24
# Copies of the (n, C) float64 validation/test logits alive at once (logits, softmax,
# log-softmax, bootstrap).
LOGIT_COPIES = 4


@dataclass(frozen=True)
class ViewSizes:
    """The sizes a plan is made from."""

    n_stored: int  # rows of every stored split the view reads (whole-split labels are read)
    n_train: int
    n_eval: int  # validation + test rows of the view
    dim: int
    n_classes: int
    n_views: int  # stored augmented views per training row (CIBL reads them)


@dataclass(frozen=True)
class MemoryPlan:
    """How a run keeps its budget: ``chunk_rows`` rows per chunk (streamed), or None (in
    memory, the budget holding the whole view)."""

    budget_mb: float
    chunk_rows: int | None
    need_mb: float  # the estimate of the chosen path (at the smallest chunk when streamed)


def view_sizes(store: FeatureStore, view: DataView) -> ViewSizes:
    """The :class:`ViewSizes` of index ``view`` on ``store``."""
    splits = [(view.train_split, view.train_rows), (view.val_split, view.val_rows),
              (view.test_split, view.test_rows)]
    info = store.info(view.train_split)
    return ViewSizes(
        n_stored=sum(store.info(split).n_rows for split in
                     dict.fromkeys(split for split, _ in splits if split is not None)),
        n_train=int(view.train_rows.size),
        n_eval=sum(int(rows.size) for _, rows in splits[1:] if rows is not None),
        dim=info.dim, n_classes=len(view.class_names), n_views=info.n_views)


def parameter_mb(names: list[str], sizes: ViewSizes) -> float:
    """Fitted parameters kept until saved: every grid point of every named head (float64),
    with Adam's moments and the best copy while training (float32) of the largest."""
    from featlt.heads.selection import grid_points

    fits = 0
    for name in names:
        spec = head_spec(name)
        if spec.base is None:
            hidden = int(spec.defaults.get("hidden", 0))
            width = sizes.n_classes + hidden
            fits += len(grid_points(spec.grid)) * width
    return (fits * sizes.dim * 8 + 4 * (sizes.n_classes + 256) * sizes.dim * 4) / MB


def fixed_mb(names: list[str], sizes: ViewSizes) -> float:
    """What a run holds whatever the chunk size: overhead, per-row bookkeeping, logits and
    parameters."""
    return (OVERHEAD_MB + sizes.n_stored * ROW_BYTES / MB
            + sizes.n_eval * sizes.n_classes * 8 * LOGIT_COPIES / MB
            + parameter_mb(names, sizes))


def in_memory_mb(names: list[str], sizes: ViewSizes) -> float:
    """The estimate for a run with the view's features in memory."""
    rows = sizes.n_train + sizes.n_eval
    views = sizes.n_train * sizes.n_views * sizes.dim * MEMORY_ELEMENT_BYTES if any(
        name == "cibl" for name in names) else 0
    return fixed_mb(names, sizes) + (rows * sizes.dim * MEMORY_ELEMENT_BYTES + views) / MB


def plan_memory(names: list[str], sizes: ViewSizes, budget_mb: float, what: str) -> MemoryPlan:
    """Choose how the run of heads ``names`` keeps ``budget_mb``, or refuse it.

    Args:
        what: the input in words, for messages (``feature file X.h5``).
    Raises:
        FeatltError: the budget is below the smallest that works, naming it.
    """
    fixed = fixed_mb(names, sizes)
    chunk_mb = sizes.dim * CHUNK_ELEMENT_BYTES / MB
    minimum = fixed + MIN_CHUNK_ROWS * chunk_mb
    memory = in_memory_mb(names, sizes)
    resident = [name for name in names if not HEADS[name].streams]
    if resident:
        if budget_mb >= memory:
            return MemoryPlan(budget_mb, None, memory)
        raise FeatltError(
            f"--memory-budget {budget_mb:g}: head(s) {', '.join(resident)} cannot stream "
            f"features; on {what} ({sizes.n_train + sizes.n_eval} rows x {sizes.dim} features) "
            f"they need about {math.ceil(memory)} MB in memory; pass --memory-budget "
            f"{math.ceil(memory)} or more, or leave {', '.join(resident)} out (the other heads "
            f"stream from --memory-budget {math.ceil(minimum)})"
        )
    if budget_mb < minimum:
        raise FeatltError(
            f"--memory-budget {budget_mb:g}: below the smallest budget that works on {what} "
            f"(about {math.ceil(minimum)} MB: {fixed:.1f} MB for labels, logits and parameters "
            f"of {sizes.n_stored} rows and {len(names)} head(s), plus chunks of "
            f"{MIN_CHUNK_ROWS} rows); pass --memory-budget {math.ceil(minimum)} or more"
        )
    rows = int((budget_mb - fixed) / chunk_mb)
    return MemoryPlan(budget_mb, rows, fixed + rows * chunk_mb)
