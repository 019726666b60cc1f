"""The rules a joined store's sources must meet before featlt reads a virtual row from them.

A virtual dataset (listed by :func:`featlt.store.indirection.walk`) is read only when it is an
array of a split, and every source it maps is an existing, complete featlt store of schema 2 with
the joined store's backbone, holding the same array, dtype and row shape, whole rows, and every
row mapped from it. :class:`featlt.store.feature_store.FeatureStore` opens each source store and
applies these checks; it then reads virtual rows from the source stores itself.

A store that records its shards' digests (the ``distributed`` provenance that
:mod:`featlt.store.join_writer` writes: each shard's file, rows and a BLAKE2b of each of its
per-block digest tables, and ``digest``, one hash over them all) must also have, at each source
file, the very shard the join recorded there: :func:`check_shard_digests` hashes each source's
digest tables (a few KiB, no feature row) and compares. Block digests name the shard-local row, so
without this two shards of equal size swapped on disk would pass every other check and read in
the wrong order. Stores joined without that record keep the checks above.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featlt.errors import StoreError
from featlt.store.digests import BATCH_ARRAYS, DIGESTED_ARRAYS
from featlt.store.digests import GROUP as DIGEST_GROUP
from featlt.store.files import REEXTRACT
from featlt.store.indirection import SourceRows
from featlt.store.provenance import backbone_identity, provenance_diff


def virtual_array(where: str, name: str) -> tuple[str, str]:
    """The (split, array) a virtual dataset ``name`` stands for; refused unless it is one of a
    split's digested arrays."""
    parts = name.split("/")
    if len(parts) != 2 or parts[1] not in DIGESTED_ARRAYS:
        raise StoreError(f"{where}: featlt reads virtual datasets only as the arrays of a "
                         f"split ({', '.join(DIGESTED_ARRAYS)}); join the stores again")
    return parts[0], parts[1]


def source_array(src: str, mapping: SourceRows, array: str) -> tuple[str, str]:
    """The (split, array) of the source store that ``mapping`` reads; it must be ``array``."""
    source_parts = mapping.dataset.strip("/").split("/")
    if len(source_parts) != 2 or source_parts[1] != array:
        raise StoreError(f"{src}: maps another array onto '{array}'; join the stores again")
    return source_parts[0], source_parts[1]


def check_source_file(where: str, mapping: SourceRows, joined: Path) -> None:
    """Refuse a source file that is not there (HDF5 would read its rows as zeros)."""
    if not mapping.file.is_file():
        raise StoreError(
            f"{where}: the source file {mapping.file} is not found (HDF5 would read its "
            "rows as zeros; relative source names resolve against the folder of "
            f"{joined.name}); put the source store back or join the stores again"
        )


def check_source_store(where: str, provenance: dict[str, Any], source_provenance: dict[str, Any],
                       source_schema: int) -> None:
    """Refuse a source store without digests or of another backbone than the joined store's."""
    if source_schema < 2:
        raise StoreError(
            f"{where}: written before featlt kept block digests (schema 1), so its rows "
            f"cannot be checked; {REEXTRACT}, then join again"
        )
    diffs = provenance_diff({"backbone": backbone_identity(provenance)},
                            {"backbone": backbone_identity(source_provenance)})
    if diffs:
        raise StoreError(
            f"{where}: its provenance differs from the joined store's at '{diffs[0]}'; join "
            "only stores of one backbone"
        )


def check_source_rows(src: str, mapping: SourceRows, dset: h5py.Dataset, source: h5py.File,
                      split: str, array: str) -> None:
    """Refuse a mapping unless the source store holds ``split/array`` with the virtual dataset's
    dtype and row shape, the mapping selects whole rows, and every mapped row is written."""
    group = source.get(split)
    if not isinstance(group, h5py.Group) or array not in group:
        raise StoreError(f"{src}: the source store has no {mapping.dataset}; join the "
                         "stores again")
    held_array = group[array]
    if held_array.dtype != dset.dtype or held_array.shape[1:] != dset.shape[1:]:
        raise StoreError(
            f"{src}: the source holds {held_array.dtype} rows of shape "
            f"{held_array.shape[1:]}, the join {dset.dtype} of shape {dset.shape[1:]}; "
            "join stores of one backbone and dtype"
        )
    n = mapping.stop - mapping.start
    box = mapping.source_box
    whole_rows = held_array.shape[0] == n if box is None else (
        all(v == 0 for v in box[0][1:])
        and tuple(v + 1 for v in box[1][1:]) == held_array.shape[1:])
    if not whole_rows:
        raise StoreError(f"{src}: does not select whole rows of the source "
                         f"({held_array.shape[0]} rows); join the stores again")
    held = int(held_array.shape[0])
    if array in BATCH_ARRAYS:
        held = min(held, int(group.attrs.get("n_written", 0)))
    if mapping.source_start + n > held:
        raise StoreError(
            f"{src}: the source holds {held} rows, fewer than the rows mapped (HDF5 would "
            "read the rest as zeros); join the stores again from complete sources"
        )


# -- the shards a join recorded -----------------------------------------------------------------
JOIN_PERSON = b"featlt-join-v1"  # BLAKE2b personalisation of the hash over all shards
JOIN_DIGEST_RULE = ("blake2b-128 over each shard's per-block digest tables "
                    "(featlt.store.digests), in rank, split and array order")
SHARD_FIX = ("put each shard file back in its place (a shard's provenance names its rank, "
             "'shard.rank'); to join the shards as they are now, rerun the same torchrun command "
             "with --resume; or re-extract with --overwrite")

TableHashes = dict[str, dict[str, str]]  # split -> array -> hex BLAKE2b of its digest table


def table_hash(table: np.ndarray) -> str:
    """The hex BLAKE2b-128 of one per-block digest table's bytes ((n_blocks, 16) uint8)."""
    return hashlib.blake2b(np.ascontiguousarray(table).tobytes(), digest_size=16).hexdigest()


def join_digest(shards: Sequence[tuple[int, TableHashes]]) -> str:
    """The hash over every shard's table hashes, (rank, hashes) in rank order: the joined
    provenance's ``distributed.digest`` (rule :data:`JOIN_DIGEST_RULE`)."""
    combined = hashlib.blake2b(digest_size=16, person=JOIN_PERSON)
    for rank, hashed in shards:
        for split in sorted(hashed):
            for name in sorted(hashed[split]):
                combined.update(f"{rank}/{split}/{name}={hashed[split][name]}\0".encode())
    return combined.hexdigest()


def table_hashes(file: h5py.File) -> TableHashes:
    """:func:`table_hash` of every digest table of a store, by split and array (a split without
    tables maps to ``{}``), reading the tables and nothing else."""
    hashed: TableHashes = {}
    for split, group in file.items():
        if not isinstance(group, h5py.Group):
            continue
        held = group.get(DIGEST_GROUP)
        hashed[split] = {name: table_hash(np.asarray(held[name][:]))
                         for name in (held.keys() if isinstance(held, h5py.Group) else ())}
    return hashed


def recorded_shards(provenance: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The shards a joined store's provenance records with their digest-table hashes
    (``distributed.shards``), or None for a store that records none (not joined, or joined
    otherwise)."""
    record = provenance.get("distributed")
    if not isinstance(record, dict) or "digest" not in record:
        return None
    shards = record.get("shards")
    return shards if isinstance(shards, list) else []


def check_shard_digests(path: Path, provenance: dict[str, Any],
                        sources: Mapping[Path, tuple[h5py.File, dict[str, Any]]]) -> None:
    """Refuse a joined store unless each source file is the shard its join recorded there.

    The record must hash to its own ``distributed.digest``, name every source, and each
    source's digest tables must hash to what it records for that file. Only the digest tables
    are read.

    Args:
        path: the joined store (source names in the record are relative to its folder).
        provenance: its provenance; without a shard record nothing is checked.
        sources: each source store's absolute path -> (its open file, its provenance).
    Raises:
        StoreError: naming the joined store, the source file, what differs and the fix.
    """
    shards = recorded_shards(provenance)
    if shards is None:
        return
    where = f"feature file {path}"
    entries = _record_entries(shards)
    digest = provenance["distributed"]["digest"]
    if entries is None or join_digest([(e["rank"], e["digests"]) for e in entries]) != digest:
        raise StoreError(
            f"{where}: its join record (provenance 'distributed') is malformed or does not hash "
            "to its own 'digest'; the file was edited or damaged; rerun the same torchrun "
            "command with --resume to join the shards again, or re-extract with --overwrite"
        )
    by_file = {Path(os.path.abspath(path.parent / e["file"])): e for e in entries}
    for source_path, (source, source_provenance) in sources.items():
        entry = by_file.get(source_path)
        if entry is None:
            raise StoreError(
                f"{where}: reads the source {source_path}, which its join record does not name "
                f"(it names {', '.join(e['file'] for e in entries)}); the file was edited; "
                f"{SHARD_FIX}"
            )
        held = table_hashes(source)
        if held != entry["digests"]:
            raise StoreError(_swapped(where, source_path, entry, held, source_provenance))


def _record_entries(shards: list[Any]) -> list[dict[str, Any]] | None:
    """The record's shard entries, or None when one lacks a rank, a file or table hashes."""
    for entry in shards:
        if not (isinstance(entry, dict) and isinstance(entry.get("rank"), int)
                and isinstance(entry.get("file"), str) and isinstance(entry.get("digests"), dict)
                and all(isinstance(t, dict) for t in entry["digests"].values())):
            return None
    return shards


def _swapped(where: str, source_path: Path, entry: dict[str, Any], held: TableHashes,
             source_provenance: dict[str, Any]) -> str:
    """The message for a source whose digest tables are not those the join recorded."""
    recorded: TableHashes = entry["digests"]
    first = next(((s, a) for s in sorted(set(held) | set(recorded))
                  for a in sorted(set(held.get(s, {})) | set(recorded.get(s, {})))
                  if held.get(s, {}).get(a) != recorded.get(s, {}).get(a)), None)
    if first is None:  # only the splits differ, each without digest tables
        differs = f"it holds splits {sorted(held)}, the join recorded {sorted(recorded)}"
    else:
        split, array = first
        differs = (f"its split '{split}' {array} digest table hashes to "
                   f"{held.get(split, {}).get(array, 'nothing (no such table)')}, the join "
                   f"recorded {recorded.get(split, {}).get(array, 'no such table')}")
    rank = (source_provenance.get("shard") or {}).get("rank")
    holds = (f"; the file holds rank {rank}'s shard, the join put rank {entry['rank']}'s here"
             if rank is not None and rank != entry["rank"] else "")
    return (f"{where}: the source {source_path} is not the shard the join recorded there: "
            f"{differs}{holds} (a shard swapped, replaced or rewritten after the join: its rows "
            f"would be read in another shard's place); {SHARD_FIX}")
