"""Writing a feature store batch by batch: crash-safe, resumable (:class:`StoreWriter`).

Crash safety: the default HDF5 format (no SWMR, no ``libver="latest"``); each batch and the
digests of the blocks it touches are written and flushed *before* ``n_written`` advances, so after
a kill the file reopens and everything below ``n_written`` is valid, digests included. The root
attribute ``complete`` is set last; readers refuse files without it. The schema is described in
:mod:`featlt.store.feature_store`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from featlt import __version__
from featlt.errors import StoreError
from featlt.runtime import (
    fault_cause_and_fix,
    log,
    make_folders,
    remove_empty_folders,
    write_error,
)
from featlt.store import digests as block_digests
from featlt.store.digests import DIGESTED_ARRAYS, WHOLE_ARRAYS, BlockHasher
from featlt.store.files import (
    SCHEMA_VERSION,
    damaged_message,
    is_lock_error,
    locked_message,
    partial_path,
)
from featlt.store.indirection import walk
from featlt.store.provenance import provenance_diff, require_same_provenance

FLOAT16_MAX = float(np.finfo(np.float16).max)
WriteMode = Literal["create", "resume", "overwrite"]
# A resume restarts an unfinished file whose provenance differs in --skip-bad (after a run that
# stopped at an unreadable image, it leaves those images out, so the rows change) and otherwise
# at most in what follows from the row count (the forward path chosen for the run's size).
RESTART_KEY, RESTART_FOLLOWERS = "data.skip_bad", ("forward.",)


def rows_per_chunk(row_bytes: int, target_bytes: int = 1 << 20) -> int:
    """Rows in one ~1 MiB HDF5 chunk."""
    return max(1, target_bytes // max(1, row_bytes))


class StoreWriter:
    """Creates or resumes a feature store and appends rows batch by batch.

    Use :meth:`begin_split` for each split, then :meth:`write_rows` in order, then
    :meth:`mark_complete`. Rows must be appended sequentially from :meth:`n_written`.

    Rows are written into ``<path>.partial``; closing the writer after :meth:`mark_complete`
    renames it onto ``path`` in one step, so ``path`` is either the previous file, untouched, or
    the complete new one. An interrupted or failed run keeps ``<path>.partial`` for ``resume``; a
    failed HDF5 write (disk full, ...) removes it, and the folders this writer created for it,
    as HDF5 leaves such a file unreliable.

    Every array gets block digests (:mod:`featlt.store.digests`), written with the rows they
    cover and before ``n_written`` advances.

    Args:
        chunk_bytes: target bytes of one HDF5 chunk (and so of one digest block) of the
            batch-written arrays; 1 MiB by default (tests use less, to get many blocks).
    """

    def __init__(self, path: str | Path, provenance: dict[str, Any], mode: WriteMode = "create",
                 chunk_bytes: int = 1 << 20):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.provenance = provenance
        self.chunk_bytes = int(chunk_bytes)
        self._complete = False
        self._datasets: dict[str, h5py.Dataset] = {}
        self._hashers: dict[tuple[str, str], BlockHasher] = {}
        self._existed = self.path.exists()  # decides what a failure message says of the output
        self._made_folders: list[Path] = []
        if mode not in ("create", "resume", "overwrite"):
            raise StoreError(f"store mode '{mode}': unknown; use create, resume or overwrite")
        if mode == "create" and self.partial.exists():
            raise StoreError(
                f"output {self.path}: an interrupted run left {self.partial.name}; pass --resume "
                "to continue it or --overwrite to start again"
            )
        if mode == "create" and self.path.exists():
            raise StoreError(
                f"output {self.path}: already exists; pass --resume to continue it or "
                "--overwrite to replace it"
            )
        if mode == "resume" and (self.partial.exists() or self.path.exists()):
            resumed = self._resume()
            if resumed is not None:
                self._file = resumed
                return
        self._file = self._create()

    def _resume(self) -> h5py.File | None:
        """Open the unfinished file (a complete output is copied to it first) for appending.

        Returns None when it must start afresh (see :data:`RESTART_KEY`).
        """
        existing = self.partial if self.partial.exists() else self.path
        file = self._open(existing, "r+" if existing == self.partial else "r")
        try:
            if "featlt_version" not in file.attrs:
                raise StoreError(
                    f"output {existing}: exists but is not a featlt feature store; "
                    "choose another output or pass --overwrite"
                )
            if walk(file, existing).virtual:  # external links and storage are refused by walk
                raise StoreError(
                    f"output {existing}: a joined store (virtual datasets) cannot be resumed; "
                    "choose another output or pass --overwrite"
                )
            stored = json.loads(file.attrs["provenance"])
            diffs = provenance_diff(stored, self.provenance)
            if RESTART_KEY in diffs and all(d == RESTART_KEY or d.startswith(RESTART_FOLLOWERS)
                                            for d in diffs):
                file.close()
                log.warning("resuming %s: %s changed, so the unfinished rows are extracted "
                            "again", self.path, ", ".join(diffs))
                return None
            require_same_provenance(stored, self.provenance, f"resuming {self.path}")
        except BaseException:
            file.close()
            raise
        if existing == self.partial:
            return file
        file.close()
        try:  # the complete output stays as it is until the resumed copy is complete
            shutil.copyfile(self.path, self.partial)
        except OSError as err:
            self.partial.unlink(missing_ok=True)
            raise write_error(self.partial, err) from err
        return self._open(self.partial, "r+")

    def _create(self) -> h5py.File:
        """A new, empty unfinished file (replacing an older unfinished one)."""
        try:
            self._made_folders = make_folders(self.path.parent)
        except OSError as err:
            raise StoreError(
                f"output {self.path}: cannot create folder {self.path.parent} ({err.strerror}); "
                "choose a writable output path"
            ) from err
        if not os.access(self.path.parent, os.W_OK):
            remove_empty_folders(self._made_folders)
            raise StoreError(
                f"output {self.path}: folder {self.path.parent} is not writable; "
                "choose a writable output path"
            )
        self.partial.unlink(missing_ok=True)
        try:
            self._file = self._open(self.partial, "w")
        except StoreError:
            remove_empty_folders(self._made_folders)
            raise
        with self._writing():
            attrs = self._file.attrs
            attrs["featlt_version"] = __version__
            attrs["schema_version"] = SCHEMA_VERSION
            attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            attrs["provenance"] = json.dumps(self.provenance, sort_keys=True)
            attrs["complete"] = False
            self._file.flush()
        return self._file

    @staticmethod
    def _open(path: Path, mode: str) -> h5py.File:
        try:
            return h5py.File(path, mode)  # default format: reopenable after a kill
        except OSError as err:
            if is_lock_error(err):
                raise StoreError(locked_message(path)) from err
            damaged = damaged_message(path, err, "pass --overwrite to extract it again")
            raise StoreError(
                damaged or f"output {path}: cannot be opened for writing ({err})") from err

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Run HDF5 writes; a failed one (disk full, I/O error) removes the unfinished file.

        HDF5 cannot close a file whose write failed on a full disk (its closing writes fail again
        and the process crashes at exit), so the file is truncated, its descriptor redirected to
        /dev/null for those last writes, and then it is closed and deleted.
        """
        try:
            yield
        except (OSError, RuntimeError) as err:
            removed = self._abandon()
            cause, fix = fault_cause_and_fix(err)
            if self._existed:
                left = f"{self.path.name} is as it was before"
            else:
                left = f"no {self.path.name} was written" + (
                    f" and the folder {removed[-1]} made for it was removed" if removed else "")
            raise StoreError(
                f"output {self.path}: writing {self.partial.name} failed ({cause}); the "
                f"unfinished file was removed and {left}; {fix}"
            ) from None

    def _abandon(self) -> list[Path]:
        """Close and delete the unfinished file, then the folders made for it while empty;
        return those removed (deepest first)."""
        with suppress(OSError, RuntimeError, ValueError):
            fd = self._file.id.get_vfd_handle()
            os.ftruncate(fd, 0)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, fd)  # HDF5's last writes while closing go nowhere instead of failing
            os.close(null)
        self._datasets.clear()
        with suppress(OSError, RuntimeError, ValueError):
            self._file.close()
        self.partial.unlink(missing_ok=True)
        remove_empty_folders(self._made_folders)
        removed = [f for f in self._made_folders if not f.exists()]
        self._made_folders = []
        return removed

    def begin_split(
        self,
        split: str,
        labels: np.ndarray,
        source_index: np.ndarray,
        class_names: list[str],
        dim: int,
        dtype: str = "float32",
        n_views: int = 0,
        n_logits: int = 0,
        skipped: np.ndarray | None = None,
        compression: str | None = None,
        source_labels: np.ndarray | None = None,
    ) -> int:
        """Create a split (or check a resumed one) and return its ``n_written``.

        Args:
            labels: (N,) int class ids in 0..len(class_names)-1.
            source_index: (N,) int position of each row in the source dataset.
            dim: feature dimension D.
            n_views: V augmented views per row (0: no ``views`` array).
            n_logits: K backbone logits per row (0: no ``logits`` array).
            skipped: (S,) source positions left out as unreadable.
            source_labels: (M,) labels of the whole source split, when only some rows are
                extracted.
        """
        labels = np.asarray(labels, dtype=np.int64)
        n_rows = int(labels.shape[0])
        if split in self._file:
            group = self._file[split]
            same = (
                group["features"].shape == (n_rows, dim)
                and np.array_equal(group["labels"][:], labels)
                and np.array_equal(group["index"][:], np.asarray(source_index, np.int64))
                and ("views" in group) == (n_views > 0)
                and ("logits" in group) == (n_logits > 0)
                and ("source_labels" in group) == (source_labels is not None)
            )
            if not same:
                raise StoreError(
                    f"resuming {self.path}: split '{split}' holds different rows, labels or "
                    "arrays than this run would write; pass --overwrite to start again"
                )
            with self._writing():
                self._add_missing_digests(split)
            return int(group.attrs["n_written"])
        if dtype not in ("float16", "float32"):
            raise StoreError(f"feature dtype '{dtype}': use float16 or float32")
        if n_rows == 0:
            raise StoreError(
                f"output {self.path}: split '{split}' has no rows; leave it out of --splits or "
                "check the data source"
            )
        group = self._file.create_group(split)
        itemsize = np.dtype(dtype).itemsize
        chunk = min(max(n_rows, 1), rows_per_chunk(dim * itemsize, self.chunk_bytes))
        group.create_dataset(
            "features", shape=(n_rows, dim), dtype=dtype, chunks=(chunk, dim),
            compression=compression,
        )
        if n_views:
            vchunk = min(max(n_rows, 1), rows_per_chunk(n_views * dim * itemsize,
                                                        self.chunk_bytes))
            group.create_dataset(
                "views", shape=(n_rows, n_views, dim), dtype=dtype,
                chunks=(vchunk, n_views, dim), compression=compression,
            )
        if n_logits:
            lchunk = min(max(n_rows, 1), rows_per_chunk(n_logits * 4, self.chunk_bytes))
            group.create_dataset(
                "logits", shape=(n_rows, n_logits), dtype="float32", chunks=(lchunk, n_logits)
            )
        group.create_dataset("labels", data=labels)
        group.create_dataset("index", data=np.asarray(source_index, dtype=np.int64))
        if skipped is not None and len(skipped):
            group.create_dataset("skipped", data=np.asarray(skipped, dtype=np.int64))
        if source_labels is not None:
            group.create_dataset("source_labels", data=np.asarray(source_labels, np.int64))
        counts = np.bincount(labels, minlength=len(class_names))
        group.attrs["class_names"] = json.dumps(list(class_names))
        group.attrs["class_counts"] = json.dumps([int(c) for c in counts])
        group.attrs["n_rows"] = n_rows
        group.attrs["n_written"] = 0
        with self._writing():
            self._add_missing_digests(split)
            self._file.flush()
        return 0

    def _add_missing_digests(self, split: str) -> None:
        """Create the digest tables of a split's arrays that have none.

        Arrays written whole (labels, index, ...) are digested at once; batch-written arrays get
        a table of zeros that :meth:`write_rows` fills, plus the digests of rows already written
        (a split resumed from a file written before digests existed).
        """
        group = self._file[split]
        tables = group.require_group(block_digests.GROUP)
        for name in DIGESTED_ARRAYS:
            if name not in group or name in tables:
                continue
            dset = group[name]
            whole = name in WHOLE_ARRAYS
            block_rows = block_digests.WHOLE_BLOCK_ROWS if whole else int(dset.chunks[0])
            count = block_digests.n_blocks(int(dset.shape[0]), block_rows)
            table = tables.create_dataset(name, shape=(count, block_digests.DIGEST_SIZE),
                                          dtype=np.uint8)
            table.attrs["block_rows"] = block_rows
            table.attrs["algorithm"] = block_digests.ALGORITHM
            if whole:
                table[...] = block_digests.whole_digests(split, name, dset[:], block_rows)
                continue
            written = int(group.attrs["n_written"])
            hasher = BlockHasher(split, name, block_rows, dset.dtype, dset.shape[1:])
            step = max(1, (64 << 20) // max(1, dset.dtype.itemsize * int(np.prod(dset.shape[1:])))
                       // block_rows) * block_rows
            for start in range(0, written, step):
                first, values = hasher.add(start, dset[start:min(start + step, written)])
                table[first:first + len(values)] = values
            self._hashers[(split, name)] = hasher

    def _dataset(self, split: str, name: str) -> h5py.Dataset:
        """The split's array, kept open until the file closes.

        A dataset object closed on release writes its cached chunks then, where a full disk's
        error cannot be caught (HDF5 then crashes the process at exit); kept open, every write
        fails inside :meth:`_writing`, which can clean up.
        """
        key = f"{split}/{name}"
        if key not in self._datasets:
            self._datasets[key] = self._file[key]
        return self._datasets[key]

    def n_written(self, split: str) -> int:
        return int(self._file[split].attrs["n_written"])

    def write_rows(
        self,
        split: str,
        start: int,
        features: np.ndarray,
        views: np.ndarray | None = None,
        logits: np.ndarray | None = None,
    ) -> None:
        """Write rows ``[start, start + b)``, flush, then advance ``n_written``.

        Args:
            features: (b, D) float.
            views: (b, V, D) float, when the split has views.
            logits: (b, K) float, when the split has logits.
        """
        group = self._file[split]
        written = int(group.attrs["n_written"])
        if start != written:
            raise StoreError(
                f"store {self.path}: split '{split}' expects rows from {written}, got {start}"
            )
        stop = start + int(features.shape[0])
        dtype = group["features"].dtype
        arrays = {"features": features, "views": views, "logits": logits}
        stored: dict[str, np.ndarray] = {}
        for name, array in arrays.items():
            if array is not None:
                _check_finite(array, name, split, start,
                              dtype if name != "logits" else np.float32)
                # cast here, so the bytes hashed are the bytes HDF5 stores
                stored[name] = np.ascontiguousarray(array, dtype=group[name].dtype)
        with self._writing():
            for name, values in stored.items():
                self._dataset(split, name)[start:stop] = values
            self._file.flush()
            for name, values in stored.items():  # digests before the row counter advances
                first, new = self._hasher(split, name, start).add(start, values)
                self._dataset(split, f"{block_digests.GROUP}/{name}")[first:first + len(new)] = new
            self._file.flush()
            group.attrs["n_written"] = stop
            self._file.flush()

    def _hasher(self, split: str, name: str, start: int) -> BlockHasher:
        """The digest state of ``split/name`` ready for rows from ``start`` (after a resume,
        rebuilt from the rows of the open block already in the file)."""
        hasher = self._hashers.get((split, name))
        if hasher is None or hasher.next_row != start:
            dset = self._dataset(split, name)
            table = self._dataset(split, f"{block_digests.GROUP}/{name}")
            hasher = BlockHasher(split, name, int(table.attrs["block_rows"]), dset.dtype,
                                 dset.shape[1:])
            hasher.catch_up(dset, start)
            self._hashers[(split, name)] = hasher
        return hasher

    def mark_complete(self) -> None:
        """Mark the file complete once every split is fully written."""
        for split in self._file:
            group = self._file[split]
            if int(group.attrs["n_written"]) != int(group.attrs["n_rows"]):
                raise StoreError(f"store {self.path}: split '{split}' is not fully written")
        with self._writing():
            for split in self._file:  # a resumed schema-1 file: every split gets digests
                self._add_missing_digests(split)
            self._file.attrs["schema_version"] = SCHEMA_VERSION
            self._file.attrs["complete"] = True
            self._file.flush()
        self._complete = True

    def close(self) -> None:
        """Close the file; after :meth:`mark_complete`, rename it onto the output path."""
        if self._file.id.valid:
            with self._writing():
                self._datasets.clear()
                self._file.close()
        if self._complete:
            self._complete = False
            try:
                os.replace(self.partial, self.path)
            except OSError as err:
                raise write_error(self.path, err) from err

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._complete = False  # a failure after mark_complete still leaves the output as is
        self.close()


def _check_finite(array: np.ndarray, name: str, split: str, start: int, dtype: np.dtype) -> None:
    if not np.isfinite(array).all():
        raise StoreError(
            f"split '{split}' rows from {start}: the backbone produced NaN/Inf {name}; "
            "check the weights and the input value range"
        )
    if np.dtype(dtype) == np.float16 and np.abs(array).max(initial=0.0) > FLOAT16_MAX:
        raise StoreError(
            f"split '{split}' rows from {start}: {name} reach {np.abs(array).max():.3g}, beyond "
            f"float16's range ({FLOAT16_MAX:.0f}); re-run with --dtype float32"
        )
