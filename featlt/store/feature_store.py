"""The HDF5 feature store's schema and its reader, :class:`FeatureStore`.

Layout (one file per backbone x dataset, one group per split)::

    /                  attrs: featlt_version, schema_version, created, provenance (JSON), complete
    /<split>/features  (N, D) float16|float32, chunked ~1 MiB: the clean eval-transform feature
    /<split>/views     (N, V, D) optional: V train-time-augmented views
    /<split>/logits    (N, K) float32 optional: the backbone's own classifier outputs
    /<split>/labels    (N,) int64
    /<split>/index     (N,) int64: position of each row in the source dataset
    /<split>/skipped   (S,) int64 optional: source positions skipped as unreadable (--skip-bad)
    /<split>/source_labels (M,) int64 optional: labels of the whole source split, written when
                       only a view's rows are extracted (views resolve on source positions)
    /<split>           attrs: class_names (JSON), class_counts (JSON), n_rows, n_written
    /<split>/digests/<array>  (n_blocks, 16) uint8: a BLAKE2b digest per block of rows of each
                       array above (schema 2; :mod:`featlt.store.digests`)

Reading: :class:`FeatureStore` first walks every object of the file
(:mod:`featlt.store.indirection`): external links and external raw storage are refused, virtual
datasets are read only when every source is a complete featlt store holding the mapped rows (and,
in a store that records its shards' digest tables, the very shard recorded at its place).
Then every read checks the digests of the blocks it touches (once per block per open store)
unless verification is off (``--no-verify``; :mod:`featlt.store.verification`). Schema-1 stores
(no digests) still read, with a one-line note.

Writing: :class:`featlt.store.writer.StoreWriter`; provenance comparison:
:mod:`featlt.store.provenance`; the rules a joined store's sources must meet:
:mod:`featlt.store.joined`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from featlt import __version__
from featlt.errors import StoreError
from featlt.runtime import log
from featlt.store import digests as block_digests
from featlt.store import joined, verification
from featlt.store.digests import BATCH_ARRAYS, DIGESTED_ARRAYS
from featlt.store.files import (
    REEXTRACT,
    SCHEMA_VERSION,
    damaged_message,
    is_lock_error,
    locked_message,
    partial_path,
)
from featlt.store.indirection import Layout, SourceRows, virtual_sources, walk

ARRAYS = BATCH_ARRAYS  # the arrays iter_rows streams: features, views, logits


@dataclass(frozen=True)
class SplitInfo:
    """What a split holds (``featlt info`` prints this)."""

    name: str
    n_rows: int
    n_written: int
    dim: int
    dtype: str
    n_views: int
    n_logits: int
    class_names: list[str]
    class_counts: list[int]
    n_skipped: int


@dataclass(frozen=True)
class ArrayCheck:
    """What :meth:`FeatureStore.verify` checked of one array of one split."""

    split: str
    array: str
    rows: int  # rows whose blocks were checked
    blocks: int  # digest blocks checked (the sources' blocks, for a virtual array)
    bytes: int  # bytes read and hashed
    sources: int  # source stores read (0: the array is stored in the file)
    unchecked_rows: int  # rows of a block still being written (incomplete stores only)


@dataclass
class _Digests:
    """The recorded digests of one array and which of its blocks this store already checked."""

    table: np.ndarray  # (n_blocks, 16) uint8
    block_rows: int
    verified: np.ndarray  # (n_blocks,) bool


_NOTED_WITHOUT_DIGESTS: set[str] = set()


class FeatureStore:
    """Read-only access to a complete feature store, streaming under a memory budget.

    ``rows`` arguments are index views: sorted row indices into a stored split.

    Opening walks every object of the file (:func:`featlt.store.indirection.walk`) and checks
    every virtual dataset's sources; reading checks the digests of the blocks read, once per
    block (unless ``verify`` is False).

    Args:
        allow_incomplete: open a file without ``complete`` (``featlt info``); rows at or beyond
            ``n_written`` are not meaningful and blocks still being written are not checked.
        verify: check block digests on every read; None: the process default
            (:func:`featlt.store.verification.default`, False under ``--no-verify``).
        allow_virtual: False for the sources of a joined store (a join of joins is refused).
    """

    def __init__(self, path: str | Path, allow_incomplete: bool = False,
                 verify: bool | None = None, *, allow_virtual: bool = True):
        self.path = Path(path)
        self.verify = verification.default() if verify is None else bool(verify)
        partial = partial_path(self.path)
        if not self.path.exists() and partial.exists():
            if not allow_incomplete:
                raise StoreError(
                    f"feature file {self.path}: incomplete (an interrupted or failed extraction "
                    f"left {partial.name}); finish it with the same `featlt extract ... --resume` "
                    "command"
                )
            self.path = partial
        if not self.path.exists():
            raise StoreError(f"feature file {self.path}: not found; run `featlt extract` first")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            if is_lock_error(err):
                raise StoreError(locked_message(self.path)) from err
            damaged = damaged_message(self.path, err, REEXTRACT)
            raise StoreError(damaged or (
                f"feature file {self.path}: not an HDF5 file ({err}); pass a file written by "
                "`featlt extract`")) from err
        self._sources: dict[Path, FeatureStore] = {}
        self._digest_cache: dict[tuple[str, str], _Digests] = {}
        self._mappings: dict[tuple[str, str], tuple[SourceRows, ...]] = {}
        try:
            self._check_on_open(allow_incomplete, allow_virtual)
        except BaseException:
            self.close()
            raise

    def _check_on_open(self, allow_incomplete: bool, allow_virtual: bool) -> None:
        """Attributes, then the walk over every object, then virtual sources and digest tables."""
        attrs = self._file.attrs
        if "featlt_version" not in attrs or "provenance" not in attrs:
            raise StoreError(
                f"feature file {self.path}: not a featlt feature store (no featlt_version); "
                "pass a file written by `featlt extract`"
            )
        if not allow_incomplete and not bool(attrs.get("complete", False)):
            raise StoreError(
                f"feature file {self.path}: incomplete (extraction was interrupted); finish it "
                "with the same `featlt extract ... --resume` command"
            )
        try:
            self.provenance: dict[str, Any] = json.loads(attrs["provenance"])
        except ValueError as err:
            raise StoreError(f"feature file {self.path}: its provenance is not JSON ({err}); "
                             f"the file is damaged; {REEXTRACT}") from err
        self.complete = bool(attrs.get("complete", False))
        self.created = str(attrs.get("created", ""))
        self.featlt_version = str(attrs["featlt_version"])
        self.schema_version = int(attrs.get("schema_version", 1))
        if self.schema_version > SCHEMA_VERSION:
            raise StoreError(
                f"feature file {self.path}: schema version {self.schema_version}, newer than "
                f"this featlt ({__version__}) reads (up to {SCHEMA_VERSION}); upgrade featlt"
            )
        self.layout: Layout = walk(self._file, self.path)
        if self.layout.virtual and not allow_virtual:
            name = next(iter(self.layout.virtual))
            raise StoreError(
                f"feature file {self.path}: '/{name}' is a virtual dataset, in a store that is "
                "itself the source of a joined store; featlt does not join joined stores; join "
                "the original stores"
            )
        for name, mappings in self.layout.virtual.items():
            self._check_virtual(name, mappings)
        joined.check_shard_digests(self.path, self.provenance, {
            path: (source._file, source.provenance) for path, source in self._sources.items()})
        if self.complete:
            for split in self.splits:
                self._check_row_counts(split)
        if not self.verify:
            return
        if self.schema_version < 2:
            if str(self.path.resolve()) not in _NOTED_WITHOUT_DIGESTS:
                _NOTED_WITHOUT_DIGESTS.add(str(self.path.resolve()))
                log.warning("feature file %s: written before featlt kept block digests "
                            "(schema 1), so its bytes are read unchecked; %s to get them",
                            self.path, REEXTRACT)
            return
        for split in self.splits:
            group = self._file[split]
            if not isinstance(group, h5py.Group):
                raise StoreError(f"feature file {self.path}: '/{split}' is not a split group; "
                                 f"the file was edited or damaged; {REEXTRACT}")
            for array in DIGESTED_ARRAYS:
                if array in group and not group[array].is_virtual:
                    self._digests(split, array)

    def _check_row_counts(self, split: str) -> None:
        """In a complete store every row array of a split holds ``n_rows`` rows, all written
        (rows beyond them would be read without a digest covering them)."""
        group = self._file[split]
        if not isinstance(group, h5py.Group) or "n_rows" not in group.attrs:
            return
        n_rows = int(group.attrs["n_rows"])
        counts = {"n_written": int(group.attrs.get("n_written", n_rows))}
        counts.update({array: int(group[array].shape[0]) for array in
                       ("features", "views", "logits", "labels", "index") if array in group})
        wrong = {k: v for k, v in counts.items() if v != n_rows}
        if wrong:
            name, rows = next(iter(wrong.items()))
            raise StoreError(
                f"feature file {self.path}: split '{split}' says n_rows {n_rows} but "
                f"{'n_written is' if name == 'n_written' else name + ' holds'} {rows}; the "
                f"file was edited or damaged; {REEXTRACT}"
            )

    # -- virtual datasets ----------------------------------------------------------------------
    def _check_virtual(self, name: str, mappings: tuple[SourceRows, ...]) -> None:
        """Refuse a virtual dataset unless every source is a complete featlt store of the same
        backbone, with digests, holding every row mapped from it (:mod:`featlt.store.joined`)."""
        where = f"feature file {self.path}: virtual dataset '/{name}'"
        split_name, array_name = joined.virtual_array(where, name)
        dset = self._file[name]
        for mapping in mappings:
            src = f"{where} {mapping.describe()}"
            split, array = joined.source_array(src, mapping, array_name)
            source = self._source(mapping, src)
            joined.check_source_rows(src, mapping, dset, source._file, split, array)
            self._mappings[(split_name, array_name)] = mappings

    def _source(self, mapping: SourceRows, where: str) -> FeatureStore:
        """The source store of ``mapping``, opened once (its own walk and digests included)."""
        key = Path(os.path.abspath(mapping.file))
        if key in self._sources:
            return self._sources[key]
        joined.check_source_file(where, mapping, self.path)
        try:
            source = FeatureStore(mapping.file, verify=self.verify, allow_virtual=False)
        except StoreError as err:
            raise StoreError(f"{where}: {err}") from err
        self._sources[key] = source
        joined.check_source_store(where, self.provenance, source.provenance,
                                  source.schema_version)
        return source

    def sources(self) -> dict[str, list[SourceRows]]:
        """Every virtual array (``split/array``) and its sources, in row order."""
        return {name: list(mappings) for name, mappings in self.layout.virtual.items()}

    # -- digests -------------------------------------------------------------------------------
    def _digests(self, split: str, array: str) -> _Digests | None:
        """The digests of a stored (not virtual) array, or None when nothing is checked."""
        if not self.verify or self.schema_version < 2:
            return None
        key = (split, array)
        if key in self._digest_cache:
            return self._digest_cache[key]
        group = self._file[split]
        where = f"feature file {self.path}: split '{split}' {array}"
        tables = group.get(block_digests.GROUP)
        if not isinstance(tables, h5py.Group) or array not in tables:
            raise StoreError(
                f"{where}: no block digests, though the file is schema {self.schema_version}; "
                f"the file was edited or damaged; {REEXTRACT} (or pass --no-verify to read it "
                "unchecked)"
            )
        table = tables[array]
        block_rows = int(table.attrs.get("block_rows", 0))
        needed = block_digests.n_blocks(int(group[array].shape[0]), max(block_rows, 1))
        if (block_rows < 1 or table.dtype != np.uint8 or table.ndim != 2
                or table.shape[1] != block_digests.DIGEST_SIZE or table.shape[0] < needed):
            raise StoreError(f"{where}: its digest table is malformed (shape {table.shape}, "
                             f"block_rows {block_rows}); the file was edited or damaged; "
                             f"{REEXTRACT}")
        digests = _Digests(np.asarray(table[:]), block_rows, np.zeros(table.shape[0], bool))
        self._digest_cache[key] = digests
        return digests

    def _written(self, split: str, array: str) -> int:
        """Rows of ``array`` that hold data: all in a complete store, else ``n_written`` for
        batch-written arrays."""
        group = self._file[split]
        rows = int(group[array].shape[0])
        if array in BATCH_ARRAYS and not self.complete:
            rows = min(rows, int(group.attrs.get("n_written", rows)))
        return rows

    def _read_rows(self, split: str, array: str, start: int, stop: int) -> np.ndarray:
        """Stored rows ``[start, stop)`` of ``array`` as stored (dtype, shape), after checking
        the digests of every block they touch that this store has not checked yet.

        A block is checked whole, so the read may extend to the blocks' bounds. Virtual arrays
        are read from their source stores, which check their own digests.
        """
        dset = self._group(split)[array]
        if dset.is_virtual:
            return self._read_virtual(split, array, dset, start, stop)
        digests = self._digests(split, array)
        low, high, todo = start, stop, np.zeros(0, np.int64)
        if digests is not None and stop > start:
            size, n = digests.block_rows, int(dset.shape[0])
            limit = self._written(split, array)
            blocks = np.arange(start // size, (stop - 1) // size + 1)
            ends = np.minimum((blocks + 1) * size, n)
            todo = blocks[~digests.verified[blocks] & (ends <= limit)]
            if todo.size:
                low = min(start, int(todo[0]) * size)
                high = max(stop, min((int(todo[-1]) + 1) * size, n))
        values = self._raw(dset, split, array, low, high)
        if todo.size:
            assert digests is not None
            bad = block_digests.mismatched_blocks(split, array, low, values, digests.table,
                                                  digests.block_rows, todo.tolist())
            if bad:
                raise self._mismatch(split, array, bad, values, low, digests)
            digests.verified[todo] = True
        return values[start - low:stop - low]

    def _raw(self, dset: h5py.Dataset, split: str, array: str, start: int,
             stop: int) -> np.ndarray:
        try:
            return dset[start:stop]
        except (OSError, RuntimeError) as err:
            raise StoreError(
                f"feature file {self.path}: split '{split}' {array} rows {start}-{stop - 1} "
                f"cannot be read ({err}); the file is damaged; {REEXTRACT}"
            ) from err

    def _read_virtual(self, split: str, array: str, dset: h5py.Dataset, start: int,
                      stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of a virtual array, read from its sources' stores."""
        mappings = self._mappings.get((split, array))
        if mappings is None:  # reached through a soft link: the same object, other name
            mappings = virtual_sources(dset, self.path, f"/{split}/{array}")
            for mapping in mappings:
                self._source(mapping, f"feature file {self.path}: virtual dataset "
                                      f"'/{split}/{array}' {mapping.describe()}")
            self._mappings[(split, array)] = mappings
        parts = []
        for mapping in mappings:
            first, last = max(start, mapping.start), min(stop, mapping.stop)
            if first >= last:
                continue
            source = self._sources[Path(os.path.abspath(mapping.file))]
            source_split, source_array = mapping.dataset.strip("/").split("/")
            offset = mapping.source_start - mapping.start
            try:
                parts.append(source._read_rows(source_split, source_array, first + offset,
                                               last + offset))
            except StoreError as err:
                raise StoreError(f"feature file {self.path}: virtual dataset "
                                 f"'/{split}/{array}' {mapping.describe()}: {err}") from err
        if not parts:
            return np.empty((0, *dset.shape[1:]), dtype=dset.dtype)
        return np.concatenate(parts)

    def _mismatch(self, split: str, array: str, bad: list[int], values: np.ndarray, low: int,
                  digests: _Digests) -> StoreError:
        """The error for blocks whose digest differs; a NaN/inf row is named first."""
        size = digests.block_rows
        first = bad[0] * size
        block = values[first - low:min(first + size, low + values.shape[0]) - low]
        more = f", and {len(bad) - 1} more block(s) in this read" if len(bad) > 1 else ""
        if block.dtype.kind == "f":
            finite = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
            if not finite.all():
                row = first + int(np.flatnonzero(~finite)[0])
                return StoreError(
                    f"feature file {self.path}: split '{split}' stored row {row} (source "
                    f"position {self._source_position(split, row)}) holds NaN/inf {array}, and "
                    f"its block (rows {first}-{first + block.shape[0] - 1}) does not match its "
                    f"digest{more}; the file is damaged, {REEXTRACT}"
                )
        return StoreError(
            f"feature file {self.path}: split '{split}' {array} rows {first}-"
            f"{first + block.shape[0] - 1} do not match their digest (block {bad[0]} of "
            f"{len(digests.verified)}{more}); the file was damaged or edited after it was "
            f"written; {REEXTRACT} (--no-verify reads it unchecked)"
        )

    def _source_position(self, split: str, row: int) -> str:
        """The source position of a stored row, for messages ("unknown" if unreadable)."""
        try:
            return str(int(self._read_rows(split, "index", row, row + 1)[0]))
        except (StoreError, IndexError, KeyError):
            return "unknown"

    def verify_all(self, budget_mb: float = 256.0) -> list[ArrayCheck]:
        """Check every block of every array of every split (``featlt info --verify``).

        Returns:
            one :class:`ArrayCheck` per array; empty for a schema-1 store (nothing to check).
        Raises:
            StoreError: the first block that does not match, naming its rows and the fix.
        """
        if not self.verify:
            raise StoreError(f"feature file {self.path}: opened with verification off; "
                             "drop --no-verify to verify it")
        if self.schema_version < 2:
            return []
        checks = []
        for split in self.splits:
            group = self._group(split)
            for array in DIGESTED_ARRAYS:
                if array not in group:
                    continue
                checks.append(self._verify_array(split, array, group[array], budget_mb))
        return checks

    def _verify_array(self, split: str, array: str, dset: h5py.Dataset,
                      budget_mb: float) -> ArrayCheck:
        rows = self._written(split, array)
        row_bytes = max(1, dset.dtype.itemsize * int(np.prod(dset.shape[1:], dtype=np.int64)))
        step = self._block_step(split, array, dset)
        block = max(step, (int(budget_mb * 2**20) // row_bytes) // step * step)
        for start in range(0, rows, block):
            self._read_rows(split, array, start, min(start + block, rows))
        if dset.is_virtual:
            blocks, sources = 0, set()
            for mapping in self._mappings[(split, array)]:
                source = self._sources[Path(os.path.abspath(mapping.file))]
                source_split, source_array = mapping.dataset.strip("/").split("/")
                checked = source._digests(source_split, source_array)
                size = checked.block_rows if checked else 1
                last = mapping.source_start + mapping.stop - mapping.start - 1
                blocks += last // size - mapping.source_start // size + 1
                sources.add(mapping.file)
            return ArrayCheck(split, array, rows, blocks, rows * row_bytes, len(sources), 0)
        digests = self._digests(split, array)
        assert digests is not None
        checked_rows = min(rows, int(digests.verified.sum()) * digests.block_rows)
        return ArrayCheck(split, array, checked_rows, int(digests.verified.sum()),
                          checked_rows * row_bytes, 0, rows - checked_rows)

    def _block_step(self, split: str, array: str, dset: h5py.Dataset) -> int:
        """Rows per digest block (else per chunk, else 1): reads aligned to it check each
        block once."""
        digests = None if dset.is_virtual else self._digests(split, array)
        if digests is not None:
            return digests.block_rows
        return int(dset.chunks[0]) if dset.chunks else 1

    # -- reading -------------------------------------------------------------------------------
    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._file.keys())

    def _group(self, split: str) -> h5py.Group:
        if split not in self._file:
            raise StoreError(
                f"feature file {self.path}: no split '{split}' (has {', '.join(self.splits)}); "
                "extract it with --splits"
            )
        group = self._file[split]
        if "labels" not in group or "features" not in group:
            raise StoreError(
                f"feature file {self.path}: split '{split}' has no labels or features; "
                "re-extract it"
            )
        return group

    def info(self, split: str) -> SplitInfo:
        group = self._group(split)
        feats = group["features"]
        return SplitInfo(
            name=split,
            n_rows=int(group.attrs["n_rows"]),
            n_written=int(group.attrs["n_written"]),
            dim=int(feats.shape[1]),
            dtype=str(feats.dtype),
            n_views=int(group["views"].shape[1]) if "views" in group else 0,
            n_logits=int(group["logits"].shape[1]) if "logits" in group else 0,
            class_names=json.loads(group.attrs["class_names"]),
            class_counts=json.loads(group.attrs["class_counts"]),
            n_skipped=int(group["skipped"].shape[0]) if "skipped" in group else 0,
        )

    def _whole(self, split: str, array: str) -> np.ndarray:
        """A 1-D array of a split, read whole, its digests checked."""
        return self._read_rows(split, array, 0, int(self._group(split)[array].shape[0]))

    def labels(self, split: str) -> np.ndarray:
        """(N,) int64 class ids of a split."""
        return self._whole(split, "labels")

    def source_index(self, split: str) -> np.ndarray:
        """(N,) int64 positions of the split's rows in the source dataset."""
        return self._whole(split, "index")

    def source_labels(self, split: str) -> np.ndarray | None:
        """(M,) int64 labels of the whole source split, or None when the file holds the whole
        split (every index view then resolves on the stored rows)."""
        group = self._group(split)
        return self._whole(split, "source_labels") if "source_labels" in group else None

    def class_names(self, split: str) -> list[str]:
        return json.loads(self._group(split).attrs["class_names"])

    def has(self, split: str, array: str) -> bool:
        return split in self._file and array in self._file[split]

    def iter_rows(
        self,
        split: str,
        rows: np.ndarray | None = None,
        array: str = "features",
        budget_mb: float = 256.0,
        dtype: type = np.float32,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream ``array`` of a split in contiguous blocks that fit ``budget_mb``.

        Blocks are whole digest blocks (HDF5 chunks), so each is read and checked once.

        Yields:
            (positions, values): positions (b,) index into ``rows`` (or rows themselves when
            ``rows`` is None); values (b, ...) the selected rows cast to ``dtype``.
        """
        group = self._group(split)
        if array not in ARRAYS or array not in group:
            raise StoreError(
                f"feature file {self.path}: split '{split}' has no '{array}' array; "
                + ("extract with --views" if array == "views" else "extract with --store-logits")
            )
        dset = group[array]
        n_rows = dset.shape[0]
        itemsize = max(dset.dtype.itemsize, np.dtype(dtype).itemsize)
        row_bytes = int(np.prod(dset.shape[1:])) * itemsize
        step = self._block_step(split, array, dset)
        block = max(step, int(budget_mb * 2**20) // row_bytes // step * step)
        if rows is None:
            for start in range(0, n_rows, block):
                stop = min(start + block, n_rows)
                values = self._read_rows(split, array, start, stop).astype(dtype, copy=False)
                self._check_finite_rows(split, array, np.arange(start, stop), values)
                yield np.arange(start, stop), values
            return
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= n_rows):
            raise StoreError(
                f"index view on split '{split}': rows must be sorted, unique and in [0, {n_rows})"
            )
        position = 0
        while position < rows.size:
            start = int(rows[position]) // step * step
            stop = min(start + block, n_rows)
            end = int(np.searchsorted(rows, stop, side="left"))
            selected = self._read_rows(split, array, start, stop)[rows[position:end] - start]
            values = selected.astype(dtype, copy=False)
            self._check_finite_rows(split, array, rows[position:end], values)
            yield np.arange(position, end), values
            position = end

    def _check_finite_rows(
        self, split: str, array: str, stored_rows: np.ndarray, values: np.ndarray
    ) -> None:
        """Refuse NaN/inf read from the file, naming the first bad stored row and its source.

        Args:
            stored_rows: (b,) rows of the stored split that ``values`` (b, ...) hold.
        """
        finite = np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
        if finite.all():
            return
        bad = np.flatnonzero(~finite)
        row = int(stored_rows[bad[0]])
        raise StoreError(
            f"feature file {self.path}: split '{split}' stored row {row} (source position "
            f"{self._source_position(split, row)}) holds NaN/inf {array} ({bad.size} such rows "
            "in the block read); the file is damaged, re-extract it with `featlt extract ... "
            "--overwrite`"
        )

    def read(
        self,
        split: str,
        rows: np.ndarray | None = None,
        array: str = "features",
        dtype: type = np.float32,
        budget_mb: float = 256.0,
    ) -> np.ndarray:
        """Read the selected rows of ``array`` into memory: (n, D), (n, V, D) or (n, K).

        Blocks are copied into one preallocated array, so peak memory is the result plus a block.
        """
        dset = self._group(split)[array] if array in ARRAYS and self.has(split, array) else None
        n = (dset.shape[0] if rows is None else len(rows)) if dset is not None else 0
        out = np.empty((n, *(dset.shape[1:] if dset is not None else ())), dtype=dtype)
        for positions, values in self.iter_rows(split, rows, array, budget_mb, dtype):
            out[positions[0] : positions[-1] + 1] = values
        return out

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources = {}
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
