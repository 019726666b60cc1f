"""The HDF5 feature store: schema, provenance, crash-safe append/resume, chunked readers.

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

Crash safety: the default HDF5 format (no SWMR, no ``libver="latest"``); each batch and the
digests of the blocks it touches are written and flushed *before* ``n_written`` advances, so after
a kill the file reopens and everything below ``n_written`` is valid, digests included. The root
attribute ``complete`` is set last; readers refuse files without it.

Reading: :class:`FeatureStore` first walks every object of the file
(:mod:`featlt.store.indirection`): external links and external raw storage are refused, virtual
datasets are read only when every source is a complete featlt store holding the mapped rows.
Then every read checks the digests of the blocks it touches (once per block per open store)
unless verification is off (``--no-verify``; :mod:`featlt.store.verification`). Schema-1 stores
(no digests) still read, with a one-line note.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from featlt import __version__
from featlt.errors import ProvenanceMismatchError, StoreError
from featlt.runtime import fault_cause_and_fix, log, write_error
from featlt.store import digests as block_digests
from featlt.store import verification
from featlt.store.digests import BATCH_ARRAYS, DIGESTED_ARRAYS, WHOLE_ARRAYS, BlockHasher
from featlt.store.indirection import Layout, SourceRows, virtual_sources, walk

# 1: no digests; 2: block digests of every array (featlt.store.digests)
SCHEMA_VERSION = 2
ARRAYS = BATCH_ARRAYS  # the arrays iter_rows streams: features, views, logits
REEXTRACT = "re-extract it with `featlt extract ... --overwrite`"
FLOAT16_MAX = float(np.finfo(np.float16).max)
# Provenance keys that describe the run rather than the features; they may differ on resume.
VOLATILE_PROVENANCE_KEYS = frozenset({"run"})
# Backbone values derived from the rest of the record (the feature extractor's parameter count,
# added to provenance later): a record that lacks one still matches a record that has it.
DERIVED_PROVENANCE_KEYS = frozenset({"backbone.feature.params"})
WriteMode = Literal["create", "resume", "overwrite"]


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


def provenance_diff(
    a: dict[str, Any], b: dict[str, Any], ignore: frozenset[str] = VOLATILE_PROVENANCE_KEYS
) -> list[str]:
    """Dotted keys whose values differ between two provenance records (ignored keys skipped)."""
    diffs: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if not prefix and key in ignore:
                    continue
                walk(x.get(key), y.get(key), f"{prefix}.{key}" if prefix else key)
        elif x != y and not (prefix in DERIVED_PROVENANCE_KEYS and None in (x, y)):
            diffs.append(prefix)

    walk(json.loads(json.dumps(a)), json.loads(json.dumps(b)), "")
    return diffs


def require_same_provenance(
    a: dict[str, Any], b: dict[str, Any], what: str, keys: tuple[str, ...] | None = None
) -> None:
    """Raise :class:`ProvenanceMismatchError` naming the first differing attribute.

    Args:
        keys: compare only these top-level keys (e.g. ``("backbone",)``); all but volatile if None.
    """
    if keys is not None:
        a = {k: a.get(k) for k in keys}
        b = {k: b.get(k) for k in keys}
    diffs = provenance_diff(a, b)
    if diffs:
        key = diffs[0]
        raise ProvenanceMismatchError(
            f"{what}: provenance differs at '{key}' ({_lookup(a, key)!r} vs {_lookup(b, key)!r})"
            + (f" and {len(diffs) - 1} more attribute(s)" if len(diffs) > 1 else "")
            + "; use matching settings or write a new file"
        )


# Backbone provenance fields that say where and how a backbone ran, not what it computes.
RUN_DEPENDENT_BACKBONE_KEYS = frozenset({"device", "precision", "channels_last", "forward", "zoo"})


def backbone_identity(provenance: dict[str, Any]) -> dict[str, Any]:
    """What makes features of two runs the same kind of features.

    The backbone record without where or at which precision it ran, and its weights identified
    by their tensors' hash alone (the same tensors from a zoo package or a file are the same
    weights). Heads trained on CPU features apply to CUDA features of the same backbone.
    """
    backbone = {k: v for k, v in (provenance.get("backbone") or {}).items()
                if k not in RUN_DEPENDENT_BACKBONE_KEYS}
    weights = backbone.get("weights")
    if isinstance(weights, dict) and "tensors_sha256" in weights:
        backbone["weights"] = {"tensors_sha256": weights["tensors_sha256"]}
    return backbone


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def rows_per_chunk(row_bytes: int, target_bytes: int = 1 << 20) -> int:
    """Rows in one ~1 MiB HDF5 chunk."""
    return max(1, target_bytes // max(1, row_bytes))


PARTIAL_SUFFIX = ".partial"
# A resume restarts an unfinished file whose provenance differs in --skip-bad (after a run that
# stopped at an unreadable image, it leaves those images out, so the rows change) and otherwise
# at most in what follows from the row count (the forward path chosen for the run's size).
RESTART_KEY, RESTART_FOLLOWERS = "data.skip_bad", ("forward.",)


def partial_path(path: str | Path) -> Path:
    """Where a store lives until it is complete: ``<output>.partial`` beside the output."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def locked_message(path: Path) -> str:
    """The message for an HDF5 file another process holds open for writing."""
    return (
        f"feature file {path}: locked by another process (an extraction writing it, or the "
        "decode workers of one that was just killed, which exit within seconds); wait until it "
        "ends and retry"
    )


def is_lock_error(err: OSError) -> bool:
    """Whether HDF5 refused to open a file because another process holds its lock.

    HDF5 says "unable to lock file" (errno 11); a truncated file's message mentions "sblock",
    which a bare search for "lock" mistook for a lock.
    """
    return isinstance(err, BlockingIOError) or "unable to lock file" in str(err).lower()


def damaged_message(path: Path, err: OSError, fix: str) -> str | None:
    """The message for a file HDF5 finds truncated, or None when ``err`` says something else."""
    text = str(err)
    if "truncated file" not in text:
        return None
    found = re.search(r"eof = (\d+).*stored_eof = (\d+)", text)
    sizes = (f": {int(found.group(1))} bytes on disk, {int(found.group(2))} written"
             if found else "")
    return f"feature file {path}: truncated or damaged{sizes}; {fix}"


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    created: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        created.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty_folders(folders: list[Path]) -> None:
    """Remove folders a failed write created, deepest first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


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
            self._made_folders = _make_folders(self.path.parent)
        except OSError as err:
            raise StoreError(
                f"output {self.path}: cannot create folder {self.path.parent} ({err.strerror}); "
                "choose a writable output path"
            ) from err
        if not os.access(self.path.parent, os.W_OK):
            _remove_empty_folders(self._made_folders)
            raise StoreError(
                f"output {self.path}: folder {self.path.parent} is not writable; "
                "choose a writable output path"
            )
        self.partial.unlink(missing_ok=True)
        try:
            self._file = self._open(self.partial, "w")
        except StoreError:
            _remove_empty_folders(self._made_folders)
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
        _remove_empty_folders(self._made_folders)
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
        backbone, with digests, holding every row mapped from it."""
        parts = name.split("/")
        where = f"feature file {self.path}: virtual dataset '/{name}'"
        if len(parts) != 2 or parts[1] not in DIGESTED_ARRAYS:
            raise StoreError(f"{where}: featlt reads virtual datasets only as the arrays of a "
                             f"split ({', '.join(DIGESTED_ARRAYS)}); join the stores again")
        dset = self._file[name]
        for mapping in mappings:
            src = f"{where} {mapping.describe()}"
            source_parts = mapping.dataset.strip("/").split("/")
            if len(source_parts) != 2 or source_parts[1] != parts[1]:
                raise StoreError(f"{src}: maps another array onto '{parts[1]}'; join the "
                                 "stores again")
            source = self._source(mapping, src)
            split, array = source_parts
            group = source._file.get(split)
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
            self._mappings[(parts[0], parts[1])] = mappings

    def _source(self, mapping: SourceRows, where: str) -> FeatureStore:
        """The source store of ``mapping``, opened once (its own walk and digests included)."""
        key = Path(os.path.abspath(mapping.file))
        if key in self._sources:
            return self._sources[key]
        if not mapping.file.is_file():
            raise StoreError(
                f"{where}: the source file {mapping.file} is not found (HDF5 would read its "
                "rows as zeros; relative source names resolve against the folder of "
                f"{self.path.name}); put the source store back or join the stores again"
            )
        try:
            source = FeatureStore(mapping.file, verify=self.verify, allow_virtual=False)
        except StoreError as err:
            raise StoreError(f"{where}: {err}") from err
        self._sources[key] = source
        if source.schema_version < 2:
            raise StoreError(
                f"{where}: written before featlt kept block digests (schema 1), so its rows "
                f"cannot be checked; {REEXTRACT}, then join again"
            )
        diffs = provenance_diff({"backbone": backbone_identity(self.provenance)},
                                {"backbone": backbone_identity(source.provenance)})
        if diffs:
            raise StoreError(
                f"{where}: its provenance differs from the joined store's at '{diffs[0]}'; join "
                "only stores of one backbone"
            )
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
