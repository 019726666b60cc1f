"""Joining the shard stores of a ``torchrun`` extraction into one store, no feature byte copied.

Each rank of a distributed extraction writes a contiguous shard of every split into its own
complete store (:class:`featlt.store.writer.StoreWriter`); :func:`join_shards` writes ``OUT.h5``
whose split arrays are HDF5 virtual datasets mapping, in rank order, the whole arrays of the
shards that hold the split, so the joined rows are the original sample order. It writes what
:mod:`featlt.store.joined` accepts:

- every batch-written and per-row array (``features``, ``views``, ``logits``, ``labels``,
  ``index``) maps the whole array of each shard, in rank order, covering every row once;
- the whole-split arrays every shard holds alike (``skipped``, ``source_labels``) map the first
  shard's array (their digest tables are compared, not their rows);
- source names are relative to the joined file's folder (``OUT.h5.shards/rank00000.h5``), so
  the output and its shard folder move together;
- the root carries schema 2, the provenance and ``complete``; no array is stored in the file, so
  it has no digest tables of its own: reads are checked against the shards' digests.

Before writing, every shard must be a complete featlt store of this run's world size and rank,
its provenance equal to the run's (the run record and the shard's own rows aside; the first
differing attribute is named) and its rows the next ones of each split. The shards' rows are not
read: their per-block digest tables (a few KiB) are, and the provenance records one BLAKE2b of
each table and one over all of them (``distributed.digest``), so the joined file names the exact
bytes it stands for, and every reader refuses a shard file that is not the one recorded at its
place (:func:`featlt.store.joined.check_shard_digests`: shards swapped or replaced). The file
is written as ``OUT.h5.partial`` and renamed onto ``OUT.h5`` once complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featlt import __version__
from featlt.errors import StoreError
from featlt.runtime import fault_cause_and_fix, write_error
from featlt.store import digests as block_digests
from featlt.store.files import SCHEMA_VERSION, partial_path
from featlt.store.joined import JOIN_DIGEST_RULE, join_digest, table_hash
from featlt.store.provenance import provenance_diff

# Provenance keys of a shard that are its own: the run record and which rows it holds.
SHARD_KEYS = frozenset({"run", "shard"})
ROW_ARRAYS = ("features", "views", "logits", "labels", "index")  # one row per sample
SPLIT_ARRAYS = ("skipped", "source_labels")  # the whole split's, alike in every shard
JOIN_FIX = "extract again with the same torchrun command and --overwrite"


@dataclass(frozen=True)
class JoinResult:
    """What :func:`join_shards` wrote: the file, its rows per split, and what it cost."""

    output: Path
    rows: dict[str, int]
    seconds: float
    feature_bytes_copied: int  # bytes of array data stored in the joined file itself (0)
    file_bytes: int


@dataclass(frozen=True)
class _Shard:
    """One shard store's attributes and digest tables, read without its rows."""

    path: Path
    provenance: dict[str, Any]
    splits: dict[str, dict[str, Any]]  # split -> {"attrs", "arrays": {name: (shape, dtype)}}
    tables: dict[str, dict[str, np.ndarray]]  # split -> array -> (n_blocks, 16) uint8


def join_shards(output: Path, shards: list[Path], provenance: dict[str, Any],
                world_size: int, backend: str | None) -> JoinResult:
    """Write ``output`` as the join of ``shards`` (rank order), with ``provenance`` plus the
    ``distributed`` record.

    Args:
        output: the joined store to write (replaced atomically).
        shards: one complete shard store per rank, rank 0 first.
        provenance: the run's feature provenance (no ``shard`` key).
        world_size: processes of the run; each shard must record the same.
        backend: the process group's backend (``gloo``, ``nccl``), for the record.
    Raises:
        StoreError: a shard that is missing, incomplete, of another run's settings (naming the
            attribute), of another world size or rank, or whose rows do not follow on; a write
            that fails (the unfinished file is removed, ``output`` left as it was).
    """
    began = time.perf_counter()
    if len(shards) != world_size:
        raise StoreError(f"joining {output}: {len(shards)} shard stores for world size "
                         f"{world_size}; {JOIN_FIX}")
    read = [_read_shard(path, rank, world_size, provenance) for rank, path in enumerate(shards)]
    splits = list((provenance.get("data") or {}).get("extracted_splits") or [])
    layout = {split: _split_layout(output, split, read) for split in splits}
    record = _distributed_record(output, read, world_size, backend)
    partial = partial_path(output)
    with _atomic_file(output, partial) as file:
        file.attrs["featlt_version"] = __version__
        file.attrs["schema_version"] = SCHEMA_VERSION
        file.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        file.attrs["provenance"] = json.dumps({**provenance, "distributed": record},
                                              sort_keys=True)
        file.attrs["complete"] = False
        for split, (holders, attrs) in layout.items():
            _write_split(file, output, split, holders, attrs)
        file.flush()
        copied = _stored_bytes(file)
        file.attrs["complete"] = True
    return JoinResult(output, {s: int(a["n_rows"]) for s, (_, a) in layout.items()},
                      round(time.perf_counter() - began, 4), copied, output.stat().st_size)


def _read_shard(path: Path, rank: int, world_size: int,
                provenance: dict[str, Any]) -> _Shard:
    """A shard's attributes, array shapes and digest tables; refused unless it is this run's."""
    where = f"joining shard {path}"
    if not path.is_file():
        raise StoreError(f"{where}: not found (rank {rank} did not finish); rerun the same "
                         "torchrun command with --resume")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise StoreError(f"{where}: cannot be opened ({err}); {JOIN_FIX}") from err
    with file:
        if "provenance" not in file.attrs or not bool(file.attrs.get("complete", False)):
            raise StoreError(f"{where}: not a complete featlt store; rerun the same torchrun "
                             "command with --resume")
        stored = json.loads(file.attrs["provenance"])
        shard = stored.get("shard") or {}
        if shard.get("world_size") != world_size or shard.get("rank") != rank:
            raise StoreError(
                f"{where}: written as rank {shard.get('rank')} of world size "
                f"{shard.get('world_size')}, but it is rank {rank}'s file of a run of world "
                f"size {world_size}; {JOIN_FIX}"
            )
        diffs = provenance_diff(provenance, stored, ignore=SHARD_KEYS)
        if diffs:
            raise StoreError(
                f"{where}: from another run's settings: provenance differs at '{diffs[0]}' "
                f"({_lookup(provenance, diffs[0])!r} here, {_lookup(stored, diffs[0])!r} in the "
                f"shard); {JOIN_FIX}"
            )
        splits: dict[str, dict[str, Any]] = {}
        tables: dict[str, dict[str, np.ndarray]] = {}
        for split in file:
            group = file[split]
            splits[split] = {
                "attrs": {k: group.attrs[k] for k in ("class_names", "class_counts", "n_rows",
                                                      "n_written")},
                "arrays": {name: (tuple(group[name].shape), group[name].dtype)
                           for name in (*ROW_ARRAYS, *SPLIT_ARRAYS) if name in group},
            }
            held = group.get(block_digests.GROUP)
            tables[split] = {name: np.asarray(held[name][:]) for name in
                             (held.keys() if isinstance(held, h5py.Group) else ())}
    return _Shard(path, stored, splits, tables)


def _split_layout(output: Path, split: str, shards: list[_Shard]
                  ) -> tuple[list[_Shard], dict[str, Any]]:
    """The shards holding ``split`` (rank order) and the joined split's attributes; refused
    unless their rows follow on and their arrays agree."""
    holders: list[_Shard] = []
    position = 0
    for shard in shards:
        start, stop = (shard.provenance["shard"].get("rows") or {}).get(split, (0, 0))
        if stop == start:
            continue
        info = shard.splits.get(split)
        if start != position or info is None or int(info["attrs"]["n_rows"]) != stop - start:
            raise StoreError(
                f"joining shard {shard.path}: split '{split}' should hold rows "
                f"{position}.. (recorded {start}-{stop - 1}, "
                f"{'none' if info is None else int(info['attrs']['n_rows'])} stored); {JOIN_FIX}"
            )
        if int(info["attrs"]["n_written"]) != stop - start:
            raise StoreError(f"joining shard {shard.path}: split '{split}' is not fully "
                             f"written; rerun the same torchrun command with --resume")
        position = stop
        holders.append(shard)
    if not holders:
        raise StoreError(f"joining {output}: no shard holds split '{split}'; {JOIN_FIX}")
    first = holders[0].splits[split]
    for shard in holders[1:]:
        info = shard.splits[split]
        for name, (shape, dtype) in first["arrays"].items():
            other = info["arrays"].get(name)
            if name in ROW_ARRAYS and (other is None or other[0][1:] != shape[1:]
                                       or other[1] != dtype):
                raise StoreError(f"joining shard {shard.path}: split '{split}' {name} differs "
                                 f"from {holders[0].path.name}'s; {JOIN_FIX}")
            if name in SPLIT_ARRAYS and not np.array_equal(
                    shard.tables[split].get(name), holders[0].tables[split].get(name)):
                raise StoreError(f"joining shard {shard.path}: split '{split}' {name} differs "
                                 f"from {holders[0].path.name}'s; {JOIN_FIX}")
        if info["attrs"]["class_names"] != first["attrs"]["class_names"]:
            raise StoreError(f"joining shard {shard.path}: split '{split}' has other class "
                             f"names than {holders[0].path.name}; {JOIN_FIX}")
    counts = np.sum([json.loads(s.splits[split]["attrs"]["class_counts"]) for s in holders],
                    axis=0)
    attrs = {"class_names": first["attrs"]["class_names"],
             "class_counts": json.dumps([int(c) for c in counts]),
             "n_rows": position, "n_written": position}
    return holders, attrs


def _write_split(file: h5py.File, output: Path, split: str, holders: list[_Shard],
                 attrs: dict[str, Any]) -> None:
    """The split's group: one virtual dataset per array, mapping the shards' whole arrays."""
    group = file.create_group(split)
    for key, value in attrs.items():
        group.attrs[key] = value
    total = int(attrs["n_rows"])
    arrays = holders[0].splits[split]["arrays"]
    for name, (shape, dtype) in arrays.items():
        if name in SPLIT_ARRAYS:
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(_relative(holders[0].path, output), f"{split}/{name}",
                                             shape=shape)
        else:
            layout = h5py.VirtualLayout(shape=(total, *shape[1:]), dtype=dtype)
            row = 0
            for shard in holders:
                held = shard.splits[split]["arrays"][name][0]
                layout[row:row + held[0]] = h5py.VirtualSource(
                    _relative(shard.path, output), f"{split}/{name}", shape=held)
                row += held[0]
        group.create_virtual_dataset(name, layout)


def _distributed_record(output: Path, shards: list[_Shard], world_size: int,
                        backend: str | None) -> dict[str, Any]:
    """The joined store's ``distributed`` provenance: world size, each shard's file, rows and
    digest-table hashes, and one hash over them all (what
    :func:`featlt.store.joined.check_shard_digests` checks on every read)."""
    hashed = [{split: {name: table_hash(tables[name]) for name in sorted(tables)}
               for split, tables in sorted(shard.tables.items())} for shard in shards]
    entries = [{"rank": rank, "file": _relative(shard.path, output),
                "rows": shard.provenance["shard"].get("rows") or {}, "digests": hashes}
               for rank, (shard, hashes) in enumerate(zip(shards, hashed, strict=True))]
    return {"world_size": world_size, "backend": backend, "shards": entries,
            "digest": join_digest(list(enumerate(hashed))), "digest_rule": JOIN_DIGEST_RULE}


def _relative(path: Path, output: Path) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(output.parent))


def _stored_bytes(file: h5py.File) -> int:
    """Bytes of array data stored in ``file`` itself (virtual datasets store none)."""
    total = 0

    def visit(_: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset) and not obj.is_virtual:
            total += int(obj.id.get_storage_size())

    file.visititems(visit)
    return total


@contextmanager
def _atomic_file(output: Path, partial: Path) -> Iterator[h5py.File]:
    """``partial`` open for writing, renamed onto ``output`` when the block ends; on failure
    it is removed and ``output`` is as it was."""
    partial.unlink(missing_ok=True)
    try:
        file = h5py.File(partial, "w")
    except OSError as err:
        raise write_error(partial, err) from err
    try:
        with file:
            yield file
        os.replace(partial, output)
    except (OSError, RuntimeError) as err:
        partial.unlink(missing_ok=True)
        cause, fix = fault_cause_and_fix(err)
        raise StoreError(f"output {output}: writing the joined store failed ({cause}); the "
                         f"unfinished file was removed and {output.name} is as it was before; "
                         f"{fix}, then rerun the same torchrun command with --resume") from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
