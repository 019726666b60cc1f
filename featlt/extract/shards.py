"""What one rank of a ``torchrun`` extraction writes, and the checks around it.

Every rank writes its shard (:func:`featlt.extract.distributed.shard_bounds`) of every split
into ``OUT.h5.shards/rankNNNNN.h5`` with the ordinary crash-safe writer; the shard's provenance
is the run's plus ``shard`` (rank, world size, its rows of each split), so ``--resume`` per shard
is the ordinary resume. Before any rank writes, :func:`check_outputs` refuses (on every rank at
once) an output or shard that exists without ``--resume``/``--overwrite`` and a resume whose
shards or joined output were written by another world size, naming both sizes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py

from featlt.errors import FeatltError
from featlt.extract.distributed import World, shard_folder, shard_path
from featlt.runtime import log
from featlt.store.files import partial_path


def shard_provenance(provenance: dict[str, Any], world: World,
                     bounds: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The shard store's provenance: the run's plus ``shard`` (rank, world size, rows)."""
    return {**provenance, "shard": {
        "rank": world.rank, "world_size": world.size,
        "rows": {split: [int(a), int(b)] for split, (a, b) in bounds.items()},
        "rows_meaning": "[start, stop) positions into the split's planned rows, whole batches",
    }}


def shard_plan(plan: Any, bounds: dict[str, tuple[int, int]]) -> Any:
    """The row plan of one shard: each split's rows cut to ``bounds``; splits without rows
    left out (a split's skipped positions and source labels stay whole: they describe the
    split)."""
    kept = tuple(s for s in plan.splits if bounds[s][1] > bounds[s][0])
    return replace(plan, splits=kept,
                   rows={s: plan.rows[s][bounds[s][0]:bounds[s][1]] for s in kept})


def check_outputs(output: Path, mode: str, world: World, check_output: Any) -> None:
    """Refuse, before any work, what this rank may not write.

    Rank 0 checks the joined output (``check_output(output, mode)``); on resume the world size
    of the shards and of the joined output already there; without ``--resume`` or
    ``--overwrite`` shards an interrupted run left; with ``--overwrite`` it removes shards of
    ranks this run does not have (all of them in a one-process run). Every rank of a distributed
    run checks its shard.
    """
    if world.rank == 0:
        check_output(output, mode)
        if mode == "resume":
            refuse_other_world_size(output, world.size)
        elif mode == "overwrite":
            _remove_stale_shards(output, world.size if world.distributed else 0)
        else:
            _refuse_left_shards(output, world.size)
    if world.distributed:
        check_output(shard_path(output, world.rank), mode)


def refuse_other_world_size(output: Path, size: int) -> None:
    """Refuse to resume ``output`` when its shards or joined store came from another number of
    processes (the shards' rows would not be this run's), naming both sizes."""
    found = _written_world_sizes(output)
    other = next(((path, n) for path, n in found if n != size), None)
    if other is None:
        return
    path, written = other
    raise FeatltError(
        f"resuming {output}: {path} was written by a run of world size {written}, this run has "
        f"world size {size}; resume with the same number of processes ("
        + (f"torchrun --nnodes/--nproc-per-node giving {written}" if written > 1 else
           "one process, without torchrun")
        + ") or pass --overwrite to start again"
    )


def _refuse_left_shards(output: Path, size: int) -> None:
    """Refuse a new run beside the shards of an interrupted one."""
    left = [(path, n) for path, n in _written_world_sizes(output) if path != output]
    if left:
        path, written = left[0]
        raise FeatltError(
            f"output {output}: an interrupted run of world size {written} left {path}; pass "
            f"--resume to continue it (with world size {written}; this run has {size}) or "
            "--overwrite to start again"
        )


def _written_world_sizes(output: Path) -> list[tuple[Path, int]]:
    """(file, world size) of the joined output and of every shard store (or unfinished one)."""
    found: list[tuple[Path, int]] = []
    joined = _provenance(output)
    if joined is not None:
        found.append((output, int((joined.get("distributed") or {}).get("world_size", 1))))
    folder = shard_folder(output)
    if folder.is_dir():
        for path in sorted(folder.glob("rank*.h5*")):
            if path.suffix == ".lock":
                continue
            record = _provenance(path)
            if record is not None and isinstance(record.get("shard"), dict):
                found.append((path, int(record["shard"].get("world_size", 0))))
    return found


def _provenance(path: Path) -> dict[str, Any] | None:
    """A store's provenance, or None when the file is absent or not a featlt store."""
    for candidate in (path, partial_path(path)):
        if not candidate.is_file():
            continue
        try:
            with h5py.File(candidate, "r", locking=False) as file:
                if "provenance" in file.attrs:
                    return json.loads(file.attrs["provenance"])
        except (OSError, ValueError):
            return None
    return None


def _remove_stale_shards(output: Path, size: int) -> None:
    """Delete the shard stores of ranks ``size`` and above (an earlier run with more
    processes): ``--overwrite`` starts the output again."""
    folder = shard_folder(output)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("rank*.h5*")):
        if path.suffix == ".lock":
            continue
        digits = path.name.removeprefix("rank").split(".")[0]
        if digits.isdigit() and int(digits) >= size:
            log.info("--overwrite: removing %s (a shard of an earlier run this one does not "
                     "have)", path)
            path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def combined_splits(shards: list[list[Any]], split_result: Any) -> list[Any]:
    """One result per split from every rank's results: rows and resumed rows summed, seconds
    the slowest rank's, img/s the rows extracted by all ranks over those seconds."""
    names = list(dict.fromkeys(r.name for results in shards for r in results))
    out = []
    for name in names:
        parts = [r for results in shards for r in results if r.name == name]
        rows = sum(r.rows for r in parts)
        resumed = sum(r.resumed_from for r in parts)
        seconds = max(r.seconds for r in parts)
        done = rows - resumed
        out.append(split_result(
            name=name, rows=rows, resumed_from=resumed, seconds=seconds,
            images_per_second=round(done / seconds, 2) if done and seconds > 0 else None))
    return out

