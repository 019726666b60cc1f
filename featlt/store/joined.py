"""The rules a joined store's sources must meet before featlt reads a virtual row from them.

A virtual dataset (listed by :func:`featlt.store.indirection.walk`) is read only when it is an
array of a split, and every source it maps is an existing, complete featlt store of schema 2 with
the joined store's backbone, holding the same array, dtype and row shape, whole rows, and every
row mapped from it. :class:`featlt.store.feature_store.FeatureStore` opens each source store and
applies these checks; it then reads virtual rows from the source stores itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

from featlt.errors import StoreError
from featlt.store.digests import BATCH_ARRAYS, DIGESTED_ARRAYS
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
