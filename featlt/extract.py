"""The extraction loop: images -> frozen backbone -> feature store, crash-safe and resumable.

Images are decoded and transformed in DataLoader workers (one torch thread each); the forward
pass runs in the main process under ``inference_mode``. Every batch is written to the store,
flushed, and only then counted (``n_written``), so a killed run resumes at the last batch
boundary and — since batches are the same rows in the same shape — writes the same bytes as an
uninterrupted run. Resuming checks the provenance (backbone, weights, data config, dataset
fingerprint, batch size, dtype, ...) and names the first attribute that differs.

Fault injection for tests: ``FEATLT_FAULT_AFTER_BATCHES=k`` makes the process kill itself with
SIGKILL right after its k-th batch is written.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from featlt.errors import FeatltError, StoreError
from featlt.runtime import Runtime, log
from featlt.store import FLOAT16_MAX, StoreWriter, WriteMode

FAULT_ENV = "FEATLT_FAULT_AFTER_BATCHES"


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``featlt extract`` needs; echoed into the store's provenance."""

    model: str  # timm "arch[.tag]" or a zoo name
    data: str  # a source URI, see featlt.data.sources
    output: Path
    weights: str | None = None  # FILE | local-dir:FOLDER | hub | random; None for zoo names
    splits: tuple[str, ...] | None = None  # None: every split the source has
    resolution: int | None = None  # None: the model tag's input size
    batch_size: int = 64
    dtype: Literal["float16", "float32"] = "float16"  # halves the file; overflow is detected
    workers: int | None = None  # DataLoader workers; None: see default_workers()
    # At most this many images per split (a seeded random subset): one int for every split,
    # or {split: n}; None (or a split missing from the dict): all images.
    limit: int | dict[str, int] | None = None
    mode: WriteMode = "create"  # create | resume | overwrite
    store_logits: bool = False  # also store the backbone's own classifier outputs
    skip_bad: bool = False  # leave out unreadable images (recorded in /<split>/skipped)
    amp: bool = True  # autocast on CUDA (bfloat16 where supported); CPU always runs float32


@dataclass(frozen=True)
class SplitResult:
    name: str
    rows: int
    resumed_from: int  # rows already in the file when this run started
    seconds: float
    images_per_second: float | None  # None when nothing was left to extract


@dataclass(frozen=True)
class ExtractResult:
    output: Path
    splits: list[SplitResult]
    dim: int
    provenance: dict[str, Any]


def default_workers() -> int:
    """DataLoader workers: a quarter of the cores (at least 1, at most 4), decoding only."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def check_output(path: Path, mode: WriteMode) -> None:
    """Refuse an existing output without resume/overwrite, or an unwritable one, before any work."""
    if path.is_dir():
        raise StoreError(f"output {path}: is a folder; pass a file path such as {path}/features.h5")
    if path.exists() and mode == "create":
        raise StoreError(
            f"output {path}: already exists; pass --resume to continue it or --overwrite to "
            "replace it"
        )
    folder = path.parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(
            f"output {path}: {existing} is a file, so folder {folder} cannot be created; "
            "choose another output path"
        )
    probe = existing / f".featlt-write-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise StoreError(
            f"output {path}: folder {existing} is not writable ({err.strerror}); choose a "
            "writable output path"
        ) from err


def subset_rows(n: int, limit: int | None, seed: int, split: str) -> np.ndarray:
    """Rows of a split to extract: all, or a sorted seeded random subset of ``limit`` rows.

    The subset depends only on (n, limit, seed, split name), so a rerun picks the same rows.
    """
    if limit is not None and limit < 1:
        raise FeatltError(f"--limit {limit}: must be at least 1")
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    key = [seed, *split.encode()]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    return np.sort(rng.choice(n, size=limit, replace=False)).astype(np.int64)


def extract_features(config: ExtractConfig, runtime: Runtime) -> ExtractResult:
    """Extract ``config.splits`` of ``config.data`` with ``config.model`` into ``config.output``."""
    import torch

    from featlt.backbones import create_backbone, package_versions, resolve_spec
    from featlt.data.sources import open_source
    from featlt.runtime import resolve_torch_device

    if config.batch_size < 1:
        raise FeatltError(f"--batch-size {config.batch_size}: must be at least 1")
    if config.dtype not in ("float16", "float32"):
        raise FeatltError(f"--dtype {config.dtype}: use float16 or float32")
    check_output(config.output, config.mode)
    source = open_source(config.data)
    splits = config.splits or source.split_names()
    for split in splits:
        source.check_split(split)
    device = resolve_torch_device(runtime.device)
    workers = default_workers() if config.workers is None else config.workers
    if workers < 0:
        raise FeatltError(f"--workers {workers}: must be 0 (decode in the main process) or more")
    # Decode workers hold one thread each; the forward pass gets the remaining cores. On a busy
    # 2-core machine 2 torch threads can be several times slower than 1 (threads wait on each
    # other when one is descheduled), so the default never oversubscribes.
    threads = runtime.threads or max(1, (os.cpu_count() or 1) - workers)
    torch.set_num_threads(threads)
    spec = resolve_spec(config.model, config.weights, config.resolution, runtime.seed)
    backbone = create_backbone(spec, device=device, amp=config.amp)
    if config.store_logits and backbone.num_classes == 0:
        raise FeatltError(
            f"--store-logits: backbone {backbone.provenance['model']} has no classifier in its "
            "weights; drop --store-logits"
        )
    limits = {s: config.limit.get(s) if isinstance(config.limit, dict) else config.limit
              for s in splits}
    skipped = {s: _unreadable(source, s, workers) if config.skip_bad else None for s in splits}
    rows = {s: _select_rows(len(source.labels(s)), skipped[s], limits[s], runtime.seed, s)
            for s in splits}
    provenance = {
        "backbone": backbone.provenance,
        "data": {
            **source.describe(),
            "extracted_splits": list(splits),
            "skip_bad": config.skip_bad,
            "limit": None if config.limit is None else {
                "per_split": limits, "seed": runtime.seed,
                "method": "uniform random subset per split, sorted"},
        },
        "store": {
            "dtype": config.dtype,
            "batch_size": config.batch_size,
            "store_logits": config.store_logits,
            "features": "clean eval-transform pooled pre-logits",
        },
        "run": {
            "versions": package_versions(),
            "weights_file": backbone.weights_file,
            "threads": threads,
            "workers": workers,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    fault_after = int(os.environ.get(FAULT_ENV, "0") or 0)
    results: list[SplitResult] = []
    with StoreWriter(config.output, provenance, mode=config.mode) as writer:
        batches = 0
        for split in splits:
            labels = source.labels(split)[rows[split]]
            start = writer.begin_split(
                split, labels, rows[split], source.class_names, backbone.dim, config.dtype,
                n_logits=backbone.num_classes if config.store_logits else 0,
                skipped=skipped[split],
            )
            if start % config.batch_size and start != labels.size:
                raise StoreError(
                    f"resuming {config.output}: split '{split}' holds {start} rows, not a "
                    f"multiple of --batch-size {config.batch_size}; pass --overwrite"
                )
            began = time.perf_counter()
            for first, feats, logits in _batches(
                source, split, rows[split], start, backbone, config, workers
            ):
                _check_range(feats, config, split, first)
                writer.write_rows(split, first, feats, logits=logits)
                batches += 1
                if fault_after and batches == fault_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            seconds = time.perf_counter() - began
            done = labels.size - start
            results.append(SplitResult(
                name=split, rows=int(labels.size), resumed_from=int(start),
                seconds=round(seconds, 3),
                images_per_second=round(done / seconds, 2) if done and seconds > 0 else None,
            ))
            log.info("split %s: %d rows (%d resumed) in %.1f s", split, labels.size, start,
                     seconds)
        writer.mark_complete()
    return ExtractResult(config.output, results, backbone.dim, provenance)


def _select_rows(
    n: int, skipped: np.ndarray | None, limit: int | None, seed: int, split: str
) -> np.ndarray:
    """(n_rows,) sorted source positions to extract: readable ones, then the --limit subset."""
    readable = np.arange(n, dtype=np.int64)
    if skipped is not None:
        readable = np.setdiff1d(readable, skipped)
    return readable[subset_rows(readable.size, limit, seed, split)]


def _unreadable(source: Any, split: str, workers: int) -> np.ndarray:
    """(S,) positions of the split's images that cannot be loaded (decodes every image once)."""
    from featlt.data.unreadable import find_unreadable

    return find_unreadable(source, split, workers=max(1, workers))


def _check_range(feats: np.ndarray, config: ExtractConfig, split: str, first: int) -> None:
    """Refuse float16 storage of features beyond float16's range (they would become inf)."""
    if config.dtype == "float16":
        peak = float(np.abs(feats).max(initial=0.0))
        if peak > FLOAT16_MAX:
            raise StoreError(
                f"output {config.output}: split '{split}' rows from {first}: features reach "
                f"{peak:.3g}, beyond float16's range ({FLOAT16_MAX:.0f}); re-run with "
                "--dtype float32 --overwrite"
            )


def _batches(
    source: Any,
    split: str,
    rows: np.ndarray,
    start: int,
    backbone: Any,
    config: ExtractConfig,
    workers: int,
) -> Any:
    """Yield (first row, (b, D) float32 features, (b, K) float32 logits or None) from ``start``."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    dataset = _SplitImages(source, split, rows[start:], backbone.transform)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None,
        pin_memory=backbone.device == "cuda",
    )
    first = start
    with tqdm(total=rows.size, initial=start, desc=f"extract {split}", unit="img",
              disable=None, file=sys.stderr) as bar:
        for images, error in loader:
            if error is not None:
                raise FeatltError(error)
            feats, logits = backbone.forward(images, logits=config.store_logits)
            yield (
                first,
                feats.numpy(),
                None if logits is None else logits.numpy(),
            )
            first += int(images.shape[0])
            bar.update(int(images.shape[0]))


class _SplitImages:
    """A map-style dataset of one split's selected rows: item j -> (tensor, error message)."""

    def __init__(self, source: Any, split: str, rows: np.ndarray, transform: Any):
        self.source, self.split, self.rows, self.transform = source, split, rows, transform

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, j: int) -> tuple[Any, str | None]:
        try:
            image = self.source.load_image(self.split, int(self.rows[j]))
        except FeatltError as err:
            return None, str(err)
        return self.transform(image), None


def _collate(items: list[tuple[Any, str | None]]) -> tuple[Any, str | None]:
    """Stack a batch; pass the first decode error on instead (raised in the main process)."""
    import torch

    for _, error in items:
        if error is not None:
            return None, error
    return torch.stack([tensor for tensor, _ in items]), None


def _worker_init(_: int) -> None:
    """One torch thread per decoding worker, so workers and the forward pass share the cores."""
    import torch

    torch.set_num_threads(1)

