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

Crash safety: the default HDF5 format (no SWMR, no ``libver="latest"``); each batch is written
and flushed *before* ``n_written`` advances, so after a kill the file reopens and everything below
``n_written`` is valid. The root attribute ``complete`` is set last; readers refuse files
without it.
"""

from __future__ import annotations

import json
import os
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

SCHEMA_VERSION = 1
ARRAYS = ("features", "views", "logits")
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


class StoreWriter:
    """Creates or resumes a feature store and appends rows batch by batch.

    Use :meth:`begin_split` for each split, then :meth:`write_rows` in order, then
    :meth:`mark_complete`. Rows must be appended sequentially from :meth:`n_written`.

    Rows are written into ``<path>.partial``; closing the writer after :meth:`mark_complete`
    renames it onto ``path`` in one step, so ``path`` is either the previous file, untouched, or
    the complete new one. An interrupted or failed run keeps ``<path>.partial`` for ``resume``; a
    failed HDF5 write (disk full, ...) removes it, as HDF5 leaves such a file unreliable.
    """

    def __init__(self, path: str | Path, provenance: dict[str, Any], mode: WriteMode = "create"):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.provenance = provenance
        self._complete = False
        self._datasets: dict[str, h5py.Dataset] = {}
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"output {self.path}: cannot create folder {self.path.parent} ({err.strerror}); "
                "choose a writable output path"
            ) from err
        if not os.access(self.path.parent, os.W_OK):
            raise StoreError(
                f"output {self.path}: folder {self.path.parent} is not writable; "
                "choose a writable output path"
            )
        self.partial.unlink(missing_ok=True)
        self._file = self._open(self.partial, "w")
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
            if "lock" in str(err).lower():
                raise StoreError(locked_message(path)) from err
            raise StoreError(f"output {path}: cannot be opened for writing ({err})") from err

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
            self._abandon()
            cause, fix = fault_cause_and_fix(err)
            raise StoreError(
                f"output {self.path}: writing {self.partial.name} failed ({cause}); the "
                f"unfinished file was removed and {self.path.name} is as it was before; {fix}"
            ) from None

    def _abandon(self) -> None:
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
        chunk = min(max(n_rows, 1), rows_per_chunk(dim * itemsize))
        group.create_dataset(
            "features", shape=(n_rows, dim), dtype=dtype, chunks=(chunk, dim),
            compression=compression,
        )
        if n_views:
            vchunk = min(max(n_rows, 1), rows_per_chunk(n_views * dim * itemsize))
            group.create_dataset(
                "views", shape=(n_rows, n_views, dim), dtype=dtype,
                chunks=(vchunk, n_views, dim), compression=compression,
            )
        if n_logits:
            lchunk = min(max(n_rows, 1), rows_per_chunk(n_logits * 4))
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
            self._file.flush()
        return 0

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
        for name, array in arrays.items():
            if array is not None:
                _check_finite(array, name, split, start,
                              dtype if name != "logits" else np.float32)
        with self._writing():
            for name, array in arrays.items():
                if array is not None:
                    self._dataset(split, name)[start:stop] = array
            self._file.flush()
            group.attrs["n_written"] = stop
            self._file.flush()

    def mark_complete(self) -> None:
        """Mark the file complete once every split is fully written."""
        for split in self._file:
            group = self._file[split]
            if int(group.attrs["n_written"]) != int(group.attrs["n_rows"]):
                raise StoreError(f"store {self.path}: split '{split}' is not fully written")
        with self._writing():
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


class FeatureStore:
    """Read-only access to a complete feature store, streaming under a memory budget.

    ``rows`` arguments are index views: sorted row indices into a stored split.
    """

    def __init__(self, path: str | Path, allow_incomplete: bool = False):
        self.path = Path(path)
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
            if "lock" in str(err).lower():
                raise StoreError(locked_message(self.path)) from err
            raise StoreError(
                f"feature file {self.path}: not an HDF5 file ({err}); pass a file written by "
                "`featlt extract`"
            ) from err
        attrs = self._file.attrs
        if "featlt_version" not in attrs or "provenance" not in attrs:
            self._file.close()
            raise StoreError(
                f"feature file {self.path}: not a featlt feature store (no featlt_version); "
                "pass a file written by `featlt extract`"
            )
        if not allow_incomplete and not bool(attrs.get("complete", False)):
            self._file.close()
            raise StoreError(
                f"feature file {self.path}: incomplete (extraction was interrupted); finish it "
                "with the same `featlt extract ... --resume` command"
            )
        self.provenance: dict[str, Any] = json.loads(attrs["provenance"])
        self.complete = bool(attrs.get("complete", False))
        self.created = str(attrs.get("created", ""))
        self.featlt_version = str(attrs["featlt_version"])

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

    def labels(self, split: str) -> np.ndarray:
        """(N,) int64 class ids of a split."""
        return self._group(split)["labels"][:]

    def source_index(self, split: str) -> np.ndarray:
        """(N,) int64 positions of the split's rows in the source dataset."""
        return self._group(split)["index"][:]

    def source_labels(self, split: str) -> np.ndarray | None:
        """(M,) int64 labels of the whole source split, or None when the file holds the whole
        split (every index view then resolves on the stored rows)."""
        group = self._group(split)
        return group["source_labels"][:] if "source_labels" in group else None

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
        block = max(dset.chunks[0] if dset.chunks else 1, int(budget_mb * 2**20) // row_bytes)
        if rows is None:
            for start in range(0, n_rows, block):
                stop = min(start + block, n_rows)
                values = dset[start:stop].astype(dtype, copy=False)
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
            start = int(rows[position])
            stop = min(start + block, n_rows)
            end = int(np.searchsorted(rows, stop, side="left"))
            values = dset[start:stop][rows[position:end] - start].astype(dtype, copy=False)
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
        source = int(self._group(split)["index"][row])
        raise StoreError(
            f"feature file {self.path}: split '{split}' stored row {row} (source position "
            f"{source}) holds NaN/inf {array} ({bad.size} such rows in the block read); the "
            "file is damaged, re-extract it with `featlt extract ... --overwrite`"
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
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
