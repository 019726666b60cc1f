"""``torchrun`` extraction: which process this is, its shard of the rows, and agreement between
processes.

Under ``torchrun --nproc-per-node N -m featlt extract ...`` (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous set by torchrun) every process opens one process group (NCCL
on CUDA, one GPU per process, ``LOCAL_RANK`` picks it; gloo on CPU), plans the same rows, and
extracts a contiguous shard of every split into its own store file,
``OUT.h5.shards/rank00000.h5`` ...; rank 0 then joins the shards into ``OUT.h5``
(:mod:`featlt.store.join_writer`). Without ``WORLD_SIZE`` (or with 1) nothing here changes a
one-process run.

Shards are whole batches: a split of N rows is cut into ``ceil(N / batch)`` batches, and each
rank takes a contiguous run of them (:func:`shard_bounds`), so every rank forwards exactly the
batches a one-process run forwards, and every row is extracted once (no padding by repetition).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from featlt.errors import FeatltError

T = TypeVar("T")
SHARD_FOLDER_SUFFIX = ".shards"


@dataclass(frozen=True)
class World:
    """This process's place among the extraction's processes.

    ``size`` 1: a plain one-process run (no process group). ``local_size``: processes on this
    machine (they share its cores).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def on_rank0(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, its result (or its error) handed to every rank.

        Raises:
            FeatltError: on every rank, when rank 0's ``compute`` raised one (its message).
        """
        if not self.distributed:
            return compute()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.rank == 0:
            try:
                box[0] = ("ok", compute())
            except FeatltError as err:
                box[0] = ("error", str(err))
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise FeatltError(value)
        return value

    def agree(self, check: Callable[[], None]) -> None:
        """Run ``check()`` on every rank; if any rank refuses, every rank raises its message.

        A refusal on one rank alone would leave the others waiting for it at the next
        collective; here all stop together: a refusing rank raises its own error, the others
        the first refusal (by rank).
        """
        if not self.distributed:
            check()
            return
        error: FeatltError | None = None
        try:
            check()
        except FeatltError as err:
            error = err
        errors = self.gather(None if error is None else str(error))
        first = next(((rank, e) for rank, e in enumerate(errors) if e is not None), None)
        if error is not None:
            raise error
        if first is not None:
            raise FeatltError(f"rank {first[0]} of {self.size}: {first[1]}")

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, by rank (a barrier: it returns once all ranks sent theirs)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out


def current_world(device: str) -> World:
    """The :class:`World` torchrun's environment describes; the process group opened once.

    Args:
        device: ``cuda`` or ``cpu``, the forward's device (NCCL for cuda, gloo for cpu).
    Raises:
        FeatltError: a malformed torchrun environment, or more CUDA processes on a machine than
            it has GPUs.
    """
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_size = _env_int("LOCAL_WORLD_SIZE", size)
    if not 0 <= rank < size:
        raise FeatltError(f"RANK={rank} with WORLD_SIZE={size}: outside 0..{size - 1}; start "
                          "featlt with torchrun, which sets both")
    import torch
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise FeatltError(
                f"LOCAL_RANK={local_rank}: this machine has {torch.cuda.device_count()} CUDA "
                "GPU(s) and featlt runs one process per GPU; pass --nproc-per-node "
                f"{torch.cuda.device_count()} or fewer to torchrun"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(_close_group)
    return World(rank, size, local_rank, local_size, dist.get_backend())


def _close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as err:
        raise FeatltError(f"{name}={value!r}: not an integer; start featlt with torchrun, "
                          "which sets it") from err


def shard_bounds(n_rows: int, batch_size: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a split of ``n_rows`` rows that ``rank`` of ``size`` extracts.

    The split's ``ceil(n_rows / batch_size)`` batches are dealt out in contiguous runs whose
    lengths differ by at most one batch (``numpy.array_split``'s rule), so shard boundaries fall
    on the batch boundaries of a one-process run; a rank left without a batch gets no rows.
    """
    batches = -(-n_rows // batch_size)
    base, extra = divmod(batches, size)
    first = rank * base + min(rank, extra)
    count = base + (1 if rank < extra else 0)
    return min(first * batch_size, n_rows), min((first + count) * batch_size, n_rows)


def shard_folder(output: Path) -> Path:
    """The folder of an output's shard stores: ``OUT.h5.shards`` beside ``OUT.h5``."""
    return output.with_name(output.name + SHARD_FOLDER_SUFFIX)


def shard_path(output: Path, rank: int) -> Path:
    """Rank ``rank``'s shard store of ``output``."""
    return shard_folder(output) / f"rank{rank:05d}.h5"


def shard_rows(rows: dict[str, np.ndarray], batch_size: int, world: World
               ) -> dict[str, tuple[int, int]]:
    """{split: (start, stop)}: this rank's rows of every split (positions into ``rows[split]``)."""
    return {split: shard_bounds(int(r.size), batch_size, world.rank, world.size)
            for split, r in rows.items()}
