"""The extraction loop: images -> frozen backbone -> feature store, crash-safe and resumable.

Images are decoded and transformed in DataLoader workers (:mod:`featlt.extract.decode_loader`, one
torch thread each), together with their ``--views`` augmented views, and batched there: normalised
in the worker on CPU, sent as uint8 pixels to normalise on the GPU under CUDA
(:mod:`featlt.extract.batch_normalize`, bit-identical to the per-image transform either way). The
forward pass runs in the main process under ``inference_mode`` on the path
:mod:`featlt.extractors.fast_forward` picks and checks against eager on a first batch of real images
(BatchNorm folded and channels_last on CPU, compiled for long CPU runs, CUDA autocast), with every
core or the cores the workers leave, as timings of that batch decide
(:mod:`featlt.extract.thread_policy`). Every batch is written to the store, flushed, and only then
counted (``n_written``), so a killed run resumes at the last batch boundary and — since batches are
the same rows in the same shape, the forward path is chosen from the whole run's size, and view
randomness is keyed on (seed, source position, view) — writes the same bytes as an uninterrupted
run. Resuming checks the provenance (backbone, weights, data config, dataset fingerprint, batch
size, dtype, forward path, views ...) and names the first attribute that differs.

Under ``torchrun`` (:mod:`featlt.extract.distributed`) every rank extracts a contiguous shard of
every split into its own store, holding that shard's lock (rank 0 also the output's), and rank 0
joins the shards into the output through HDF5 virtual datasets
(:mod:`featlt.store.join_writer`); the forward path is chosen from the whole run, so every rank
picks the one a one-process run would.

Fault injection for tests: ``FEATLT_FAULT_AFTER_BATCHES=k`` makes the process kill itself with
SIGKILL right after its k-th batch is written (under torchrun only rank ``FEATLT_FAULT_RANK``'s,
when that is set).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from featlt.errors import FeatltError, StoreError
from featlt.extract.decode_loader import (
    MAX_RESOLUTION,
    Collate,
    SplitImages,
    check_batch_memory,
    worker_init,
)
from featlt.extract.device_decode import (
    DeviceDecoder,
    EncodedImages,
    choose_decode_path,
    collate_encoded,
)
from featlt.extract.distributed import World, current_world, shard_path, shard_rows
from featlt.extract.shards import (
    check_outputs,
    combined_splits,
    shard_plan,
    shard_provenance,
)
from featlt.extract.thread_policy import fixed_threads, measured_threads
from featlt.output_lock import output_lock
from featlt.runtime import Runtime, log, refuse_output_onto_inputs
from featlt.store.files import partial_path
from featlt.store.writer import FLOAT16_MAX, StoreWriter, WriteMode

FAULT_ENV = "FEATLT_FAULT_AFTER_BATCHES"
FAULT_RANK_ENV = "FEATLT_FAULT_RANK"
# Images of the first batch the forward path is checked on against eager and the thread count is
# timed on (a few forwards of them before the run; a compiled path still compiles for the full
# batch size, as it pads).
CHECK_ROWS = 8


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``featlt extract`` needs; echoed into the store's provenance."""

    model: str  # timm "arch[.tag]", a zoo name, or pixels[_S]
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
    views: int = 0  # V augmented views per image in /<split>/views (N, V, D); 0: none
    augment: str = "mild"  # the views' policy (featlt.extract.augment.policy_names())
    # inner layer as the feature (featlt.extractors.feature_module); None: pre-logits
    layer: str | None = None
    # auto | eager | channels_last | compile (featlt.extractors.fast_forward)
    forward_path: str = "auto"
    amp: bool = True  # autocast on CUDA; CPU always runs float32
    # float16: ~10x closer to float32 than bfloat16 at the same speed (measured on an H100);
    # it overflows where activations pass 65504, which is refused with the fix.
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    # An index view (featlt.data.protocol.Protocol): extract only the rows it reads, at every
    # seed of view_seeds (None: the run's --seed) and every extra imbalance factor; None or a
    # view of whole splits: every row (as --limit and --skip-bad leave them).
    protocol: Any = None
    view_seeds: tuple[int, ...] | None = None
    also_imbalance_factors: tuple[float, ...] = ()
    # keep a complete output of the same provenance, resume an incomplete one
    skip_existing: bool = False
    # auto | cpu | device: where JPEGs are decoded (featlt.extract.device_decode); auto: on
    # the GPU under CUDA when the source holds JPEG files
    decode: str = "auto"


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
    splits: list[SplitResult]  # under torchrun: every rank's rows summed per split
    dim: int
    provenance: dict[str, Any]
    world_size: int = 1
    rank: int = 0
    shards: list[list[SplitResult]] = field(default_factory=list)  # per rank, torchrun only
    join: Any = None  # featlt.store.join_writer.JoinResult, torchrun only


def default_workers(device: str = "cpu", cores: int | None = None) -> int:
    """DataLoader decode workers for a forward pass on ``device``.

    CPU: a quarter of the cores (at least 1, at most 4); the forward pass needs the rest.
    CUDA: every core but one, since decoding is the limit there (H100 with 16 cores,
    ``tf_efficientnet_lite0`` at 160 px on CIFAR-10 JPEGs: 38k img/s float16 forward; end to end
    1.7k img/s with 4 workers, 3.7k-7.8k img/s with 15; results/gpu_extract.json).

    Args:
        cores: the cores this process may use (None: all of them; under torchrun its share).
    """
    cores = cores or os.cpu_count() or 1
    return max(1, cores - 1) if device == "cuda" else max(1, min(4, cores // 4))


def check_output(path: Path, mode: WriteMode) -> None:
    """Refuse an existing output without resume/overwrite, or an unwritable one, before any work."""
    if path.is_dir():
        raise StoreError(f"output {path}: is a folder; pass a file path such as {path}/features.h5")
    if path.exists() and mode == "create":
        raise StoreError(
            f"output {path}: already exists; pass --resume to continue it or --overwrite to "
            "replace it"
        )
    if partial_path(path).exists() and mode == "create":
        raise StoreError(
            f"output {path}: an interrupted run left {partial_path(path).name}; pass --resume "
            "to continue it or --overwrite to start again"
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


def _one_writer(extract: Any) -> Any:
    """Hold ``config.output``'s lock (:mod:`featlt.output_lock`) for the whole extraction, taken
    before any check of the output: a second run writing the same store (``--overwrite`` too,
    which would delete the first run's ``.partial``) stops at once, naming the first run's PID.
    Where the lock file cannot be created, the output's own checks say why.

    Under torchrun rank 0 holds the output's lock and every rank its own shard's; a lock refused
    to any rank stops every rank (:meth:`World.agree`)."""

    @functools.wraps(extract)
    def locked(config: ExtractConfig, runtime: Runtime) -> ExtractResult:
        from featlt.runtime import resolve_torch_device

        world = current_world(resolve_torch_device(runtime.device))
        with ExitStack() as held:
            def take_locks() -> None:
                if world.rank == 0:
                    held.enter_context(output_lock(config.output, "output", unwritable="skip"))
                if world.distributed:
                    held.enter_context(output_lock(shard_path(config.output, world.rank),
                                                   "shard", unwritable="skip"))

            world.agree(take_locks)
            return extract(config, runtime, world)

    return locked


@_one_writer
def extract_features(config: ExtractConfig, runtime: Runtime,
                     world: World | None = None) -> ExtractResult:
    """Extract ``config.splits`` of ``config.data`` with ``config.model`` into ``config.output``.

    With ``config.protocol`` only the rows that index view reads; with ``config.skip_existing`` a
    complete output of the same provenance is kept and an incomplete one resumed. Under torchrun
    (``world``, set by the lock wrapper) each rank writes its shard and rank 0 joins them.
    """
    import torch

    from featlt.data.sources import open_source
    from featlt.runtime import resolve_torch_device

    world = world or World()
    _check_config(config)
    mode = "resume" if config.skip_existing else config.mode
    world.agree(lambda: check_outputs(config.output, mode, world, check_output))
    source = open_source(config.data)
    weights_file = ([] if config.weights in (None, "hub", "random")
                    else [config.weights.removeprefix("local-dir:")])
    refuse_output_onto_inputs(config.output, [*source.input_paths(), *weights_file])
    device = resolve_torch_device(runtime.device)
    # processes on one machine share its cores
    cores = max(1, (os.cpu_count() or 1) // world.local_size)
    workers = default_workers(device, cores) if config.workers is None else config.workers
    fixed = fixed_threads(runtime.threads, device, cores, workers)
    torch.set_num_threads(fixed.threads if fixed else cores)
    plan = world.on_rank0(lambda: plan_rows(config, source, runtime.seed, workers))
    backbone, view_transform = _load_backbone(config, runtime.seed, device)
    provenance = _feature_provenance(config, source, plan, backbone, view_transform,
                                     runtime.seed)
    first = next(((s, int(plan.rows[s][0])) for s in plan.splits if plan.rows[s].size), None)
    device_transform, provenance["decode_path"] = choose_decode_path(
        config.decode, device, source, first, backbone.transform, config.views)
    target, write_plan, store_provenance = config, plan, provenance
    if world.distributed:
        bounds = shard_rows(plan.rows, config.batch_size, world)
        target = replace(config, output=shard_path(config.output, world.rank))
        write_plan = shard_plan(plan, bounds)
        store_provenance = shard_provenance(provenance, world, bounds)
    _refuse_other_decode_rule(target, store_provenance)
    mode = _write_mode(target, store_provenance)
    if mode == "keep" and not world.distributed:
        log.info("kept %s: complete, same provenance (--skip-existing)", config.output)
        return _kept(config.output, backbone.dim)
    # before the first image is decoded and forwarded at this size; a batch holds at most a
    # split's rows
    largest = max((int(r.size) for r in plan.rows.values()), default=1)
    check_batch_memory(min(config.batch_size, max(largest, 1)),
                       tuple(backbone.data_config["input_size"]), config.views, workers, device,
                       amp=backbone.amp_dtype is not None)
    # the whole run's plan: every rank picks the path a one-process run would
    forward, forward_record, threads = _choose_forward(config, source, plan, backbone, fixed,
                                                       cores, workers)
    forward_check = forward_record.pop("check")
    run = {**_run_record(backbone, threads, workers, forward_check), "world_size": world.size}
    provenance = {**provenance, "forward": forward_record, "run": run}
    log.info("forward path %s (%s); %d torch threads (%s)", forward_record["name"],
             forward_record["reason"], threads.threads, threads.reason)
    if mode == "keep":  # a complete shard of the same provenance (--skip-existing)
        results = _kept(target.output, backbone.dim).splits
    else:
        loop = _Loop(target, backbone, forward, view_transform, runtime.seed, workers,
                     device_transform)
        with StoreWriter(target.output, {**store_provenance, "forward": forward_record,
                                         "run": run}, mode=mode) as writer:
            results = _write_splits(target, writer, source, write_plan, loop, backbone)
            writer.mark_complete()
    if not world.distributed:
        return ExtractResult(config.output, results, backbone.dim, provenance)
    return _join(config.output, world, results, provenance, backbone.dim)


def _join(output: Path, world: World, results: list[SplitResult],
          provenance: dict[str, Any], dim: int) -> ExtractResult:
    """Once every rank's shard is complete, rank 0 joins them into ``output``."""
    from featlt.store.join_writer import join_shards

    shards = world.gather(results)  # also the barrier: every shard is closed and renamed
    joined = world.on_rank0(lambda: join_shards(
        output, [shard_path(output, rank) for rank in range(world.size)], provenance,
        world.size, world.backend))
    log.info("rank 0 joined %d shards into %s in %.3f s (%d feature bytes copied)",
             world.size, output, joined.seconds, joined.feature_bytes_copied)
    return ExtractResult(output, combined_splits(shards, SplitResult), dim, provenance,
                         world_size=world.size, rank=world.rank, shards=shards, join=joined)


@dataclass(frozen=True)
class RowPlan:
    """Which source rows each split's extraction writes."""

    splits: tuple[str, ...]
    rows: dict[str, np.ndarray]  # {split: (n,) sorted source positions}
    skipped: dict[str, np.ndarray | None]  # {split: (S,) unreadable positions} with --skip-bad
    limits: dict[str, int | None]  # {split: --limit}
    # {split: (M,) labels of the whole source split}; only for a view's rows
    source_labels: dict[str, np.ndarray]
    view: dict[str, Any] | None  # the view extracted, for provenance; None: whole splits


def plan_rows(config: ExtractConfig, source: Any, seed: int, workers: int) -> RowPlan:
    """The rows to extract: whole splits (minus unreadable ones, then the --limit subset), or
    with a view protocol every row that view reads at ``config.view_seeds`` and
    ``config.also_imbalance_factors``."""
    splits = config.splits or source.split_names()
    for split in splits:
        source.check_split(split)
    limits = {s: config.limit.get(s) if isinstance(config.limit, dict) else config.limit
              for s in splits}
    protocol = config.protocol
    if protocol is None or protocol.reads_whole_splits():
        skipped = {s: _unreadable(source, s, workers) if config.skip_bad else None
                   for s in splits}
        rows = {s: _select_rows(len(source.labels(s)), skipped[s], limits[s], seed, s)
                for s in splits}
        return RowPlan(tuple(splits), rows, skipped, limits, {}, None)
    return _view_rows(config, protocol, source, tuple(splits), seed, limits)


def _view_rows(config: ExtractConfig, protocol: Any, source: Any, splits: tuple[str, ...],
               seed: int, limits: dict[str, int | None]) -> RowPlan:
    """:func:`plan_rows` for an index view: the union of the rows it reads at every seed and
    imbalance factor asked for."""
    from featlt.data.protocol import covering_positions, expand_protocols

    if config.limit is not None or config.skip_bad:
        raise FeatltError(
            f"{'--limit' if config.limit is not None else '--skip-bad'} with view options "
            f"({protocol.options_text()}): not supported together; drop it, or extract whole "
            "splits without view options"
        )
    seeds = config.view_seeds or (seed,)
    protocols = expand_protocols(protocol, seeds, config.also_imbalance_factors)
    rows = covering_positions(source.labels, splits, len(source.class_names), protocols,
                              f"dataset {config.data}")
    kept = tuple(s for s in splits if s in rows)
    view = {
        "protocol": {k: v for k, v in asdict(protocol).items() if k != "seed"},
        "seeds": [int(s) for s in dict.fromkeys(seeds)],
        "imbalance_factors": sorted({float(p.imbalance_factor) for p in protocols}),
        "rows": {s: int(rows[s].size) for s in kept},
    }
    return RowPlan(kept, {s: rows[s] for s in kept}, dict.fromkeys(kept),
                   {s: limits[s] for s in kept},
                   {s: np.asarray(source.labels(s), np.int64) for s in kept}, view)


def _load_backbone(config: ExtractConfig, seed: int, device: str) -> tuple[Any, Any]:
    """The backbone on ``device`` and the --views transform (None without views)."""
    from featlt.extract.augment import make_view_transform
    from featlt.extractors.backbones import create_backbone, resolve_spec

    spec = resolve_spec(config.model, config.weights, config.resolution, seed,
                        layer=config.layer)
    backbone = create_backbone(spec, device=device, amp=config.amp, amp_dtype=config.amp_dtype)
    if config.store_logits and backbone.num_classes == 0:
        raise FeatltError(
            f"--store-logits: backbone {backbone.provenance['model']} has no classifier in its "
            "weights; drop --store-logits"
        )
    view_transform = (make_view_transform(config.augment, backbone.data_config)
                      if config.views else None)
    return backbone, view_transform


def _feature_provenance(
    config: ExtractConfig, source: Any, plan: RowPlan, backbone: Any, view_transform: Any,
    seed: int,
) -> dict[str, Any]:
    """What the stored features are (backbone, data, rows, storage, views); the forward path
    and the run's record are added once chosen."""
    from featlt.data.decode import decode_record

    data = {
        **source.describe(),
        # how pixels were decoded: a store of another rule is not resumed or kept as this one
        "decode": decode_record(),
        "extracted_splits": list(plan.splits),
        "skip_bad": config.skip_bad,
        "limit": None if config.limit is None else {
            "per_split": plan.limits, "seed": seed,
            "method": "uniform random subset per split, sorted"},
    }
    if plan.view is not None:
        data["view"] = plan.view
    return {
        "backbone": backbone.provenance,
        "data": data,
        "store": {
            "dtype": config.dtype,
            "batch_size": config.batch_size,
            "store_logits": config.store_logits,
            "features": "clean eval-transform " + (
                "pooled pre-logits" if config.layer is None else f"pooled layer {config.layer}"),
        },
        "views": {"n_views": config.views} if view_transform is None else {
            "n_views": config.views, "seed": seed, "augment": view_transform.describe(),
        },
    }


def _refuse_other_decode_rule(config: ExtractConfig, provenance: dict[str, Any]) -> None:
    """Refuse to resume or keep an output whose pixels were decoded under another rule
    (``data.decode``, :mod:`featlt.data.decode`), naming both rules and the fix; the general
    provenance check would only say "use matching settings", which no option can match."""
    from featlt.data.decode import DECODE_RULE
    from featlt.store.feature_store import FeatureStore

    if config.mode != "resume" and not config.skip_existing:
        return
    partial = partial_path(config.output)
    existing = partial if partial.exists() else config.output
    if not existing.exists():
        return
    try:
        with FeatureStore(existing, allow_incomplete=True) as store:
            stored = (store.provenance.get("data") or {}).get("decode")
    except StoreError:
        return  # not a feature store: the writer says so
    if stored == provenance["data"]["decode"]:
        return
    old = (f"rule '{stored.get('rule')}'" if isinstance(stored, dict) else
           "featlt-decode-1 (no 'data.decode' recorded: 16-bit images clipped to white, EXIF "
           "orientation ignored, alpha dropped)")
    raise StoreError(
        f"{'resuming' if config.mode == 'resume' else '--skip-existing'} {existing}: its rows "
        f"were decoded under {old}, but images now decode under rule '{DECODE_RULE}' "
        "(provenance key 'data.decode' differs), so old and new rows would not be the same "
        "pixels; pass --overwrite to extract it again (or write to a new -o)"
    )


def _write_mode(config: ExtractConfig, provenance: dict[str, Any]) -> str:
    """The store mode; with --skip-existing ``keep`` for a complete file of the same
    provenance (the forward path and the run record aside), ``resume`` for an incomplete one."""
    if not config.skip_existing or not config.output.exists():
        # resume: continues an interrupted OUT.h5.partial, or creates the store
        return "resume" if config.skip_existing else config.mode
    from featlt.store.feature_store import FeatureStore
    from featlt.store.provenance import require_same_provenance

    with FeatureStore(config.output, allow_incomplete=True) as store:
        stored, complete = store.provenance, store.complete
    if not complete:
        return "resume"  # the writer checks the whole provenance, forward path included
    require_same_provenance(stored, provenance, f"--skip-existing {config.output}",
                            keys=tuple(provenance))
    return "keep"


def _kept(path: Path, dim: int) -> ExtractResult:
    """The result of a complete file kept as it is (its own provenance, nothing extracted)."""
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(path) as store:
        splits = [SplitResult(name=s, rows=store.info(s).n_rows, resumed_from=store.info(s).n_rows,
                              seconds=0.0, images_per_second=None) for s in store.splits]
        return ExtractResult(path, splits, dim, store.provenance)


def _choose_forward(
    config: ExtractConfig, source: Any, plan: RowPlan, backbone: Any, fixed: Any, cores: int,
    workers: int,
) -> tuple[Any, dict[str, Any], Any]:
    """The forward path (checked against eager on the run's first images) and the torch thread
    count (fixed, or timed on those images)."""
    import torch

    # The whole run's forward images, not the remainder: a resumed run picks the same path.
    n_images = sum(int(r.size) for r in plan.rows.values()) * (1 + config.views)
    example, decode_s = _example_batch(source, plan.splits, plan.rows, backbone,
                                       min(config.batch_size, CHECK_ROWS))
    forward, forward_record = backbone.prepare_forward(
        example, config.forward_path, n_images=n_images, batch_size=config.batch_size,
        logits=config.store_logits,
    )
    computed = config.batch_size if forward_record["compiled"] else int(example.shape[0])
    threads = fixed or measured_threads(forward, example, computed, decode_s, cores, workers)
    torch.set_num_threads(threads.threads)
    return forward, forward_record, threads


def _run_record(backbone: Any, threads: Any, workers: int,
                forward_check: Any) -> dict[str, Any]:
    """How this run went (may differ on resume)."""
    from featlt.extractors.backbones import package_versions

    return {
        "versions": package_versions(),
        "weights_file": backbone.weights_file,
        "threads": threads.threads,
        "threads_choice": {"reason": threads.reason, "decode_ms": threads.decode_ms,
                           "forward_ms": threads.forward_ms},
        "workers": workers,
        "forward_check": forward_check,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write_splits(
    config: ExtractConfig, writer: StoreWriter, source: Any, plan: RowPlan, loop: _Loop,
    backbone: Any,
) -> list[SplitResult]:
    """Forward every planned row batch by batch into ``writer``, from where each split stopped."""
    fault_after = int(os.environ.get(FAULT_ENV, "0") or 0)
    if os.environ.get(FAULT_RANK_ENV, os.environ.get("RANK", "0")) != os.environ.get("RANK", "0"):
        fault_after = 0  # another rank is the one to kill
    results: list[SplitResult] = []
    batches = 0
    for split in plan.splits:
        rows = plan.rows[split]
        labels = source.labels(split)[rows]
        start = writer.begin_split(
            split, labels, rows, source.class_names, backbone.dim, config.dtype,
            n_views=config.views, n_logits=backbone.num_classes if config.store_logits else 0,
            skipped=plan.skipped[split], source_labels=plan.source_labels.get(split),
        )
        if start % config.batch_size and start != labels.size:
            raise StoreError(
                f"resuming {config.output}: split '{split}' holds {start} rows, not a "
                f"multiple of --batch-size {config.batch_size}; pass --overwrite"
            )
        began = time.perf_counter()
        for first, outputs in loop.batches(source, split, rows, start):
            writer.write_rows(split, first, **outputs)
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
        log.info("split %s: %d rows (%d resumed) in %.1f s", split, labels.size, start, seconds)
    return results


def _check_config(config: ExtractConfig) -> None:
    """Refuse option values that cannot work, before any model or data is touched."""
    from featlt.extract.augment import get_policy
    from featlt.extractors.fast_forward import FORWARD_PATHS, check_amp_dtype

    if config.batch_size < 1:
        raise FeatltError(f"--batch-size {config.batch_size}: must be at least 1")
    if config.resolution is not None and not 1 <= config.resolution <= MAX_RESOLUTION:
        raise FeatltError(
            f"--resolution {config.resolution}: must lie in 1..{MAX_RESOLUTION}; e.g. 224"
        )
    if config.dtype not in ("float16", "float32"):
        raise FeatltError(f"--dtype {config.dtype}: use float16 or float32")
    if config.views < 0:
        raise FeatltError(f"--views {config.views}: must be 0 (no views) or more; e.g. 2")
    if config.workers is not None and config.workers < 0:
        raise FeatltError(
            f"--workers {config.workers}: must be 0 (decode in the main process) or more"
        )
    if config.forward_path not in FORWARD_PATHS:
        raise FeatltError(
            f"--forward-path {config.forward_path}: unknown; choose one of "
            f"{', '.join(FORWARD_PATHS)}"
        )
    get_policy(config.augment)
    check_amp_dtype(config.amp_dtype)


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


def _example_batch(
    source: Any, splits: tuple[str, ...], rows: dict[str, np.ndarray], backbone: Any,
    n: int,
) -> tuple[Any, float]:
    """(n, 3, H, W) float32: the run's first ``n`` images (clean transform), to check the forward
    on, and a decode worker's seconds per image: the shortest time to load and transform one
    (noise and the first load, which may open the dataset, only add time) plus the batch
    normalisation's share.

    Zeros of the model's input size (and 0 s) when no split has rows.
    """
    import torch

    from featlt.extract.batch_normalize import split_transform

    per_image, normalize = split_transform(backbone.transform)
    for split in splits:
        if rows[split].size:
            images, seconds = [], []
            for i in rows[split][:n]:
                began = time.perf_counter()
                images.append(per_image(source.load_image(split, int(i))))
                seconds.append(time.perf_counter() - began)
            began = time.perf_counter()
            batch = normalize(torch.stack(images))
            normalise_s = (time.perf_counter() - began) / len(images)
            return batch, min(seconds) + normalise_s
    return torch.zeros((1, *backbone.data_config["input_size"])), 0.0


class _Loop:
    """Batches of one split: decode in DataLoader workers, forward, check the outputs.

    On CPU the workers send normalised float32 batches; under CUDA uint8 pixels that the main
    process normalises on the GPU (:mod:`featlt.extract.batch_normalize`, bit-identical to the
    per-image transform either way). On the device decode path (``device_transform``) the
    workers send JPEG bytes that the main process decodes, resizes and crops on the device
    (:mod:`featlt.extract.device_decode`), then normalises there.
    """

    def __init__(
        self, config: ExtractConfig, backbone: Any, forward: Any, view_transform: Any,
        seed: int, workers: int, device_transform: Any = None,
    ):
        import torch

        from featlt.extract.batch_normalize import BatchNormalize, split_transform

        self.config, self.backbone, self.forward = config, backbone, forward
        self.view_transform, self.seed, self.workers = view_transform, seed, workers
        self.image_transform, self.normalize = split_transform(backbone.transform)
        self.normalize_views = (None if view_transform is None
                                else BatchNormalize(view_transform.mean, view_transform.std))
        # On CPU the decode workers normalise (they have spare time while the forward runs);
        # to the GPU a uint8 batch is a 4x smaller copy, normalised there.
        channels_last = forward is not None and forward.memory_format == torch.channels_last
        self.device_transform = device_transform
        self.collate: Any = Collate()
        if device_transform is not None:
            self.collate = collate_encoded
        elif backbone.device == "cpu":
            self.collate = Collate(self.normalize, self.normalize_views, channels_last)
        self.normalised_by_workers = getattr(self.collate, "normalize", None) is not None

    def batches(
        self, source: Any, split: str, rows: np.ndarray, start: int
    ) -> Any:
        """Yield (first row, {"features": (b, D), "views": (b, V, D) | None, "logits": (b, K) |
        None}) float32 arrays from row ``start`` on."""
        from torch.utils.data import DataLoader

        from featlt.progress import Progress

        decoder = None
        if self.device_transform is None:
            dataset: Any = SplitImages(source, split, rows[start:], self.image_transform,
                                       self.view_transform, self.config.views, self.seed)
        else:
            dataset = EncodedImages(source, split, rows[start:], self.image_transform)
            decoder = DeviceDecoder(
                self.device_transform, self.backbone.device,
                lambda index: self.image_transform(source.load_image(split, index)))
        loader = DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=self.collate,
            worker_init_fn=worker_init if self.workers else None,
            pin_memory=self.backbone.device == "cuda",
        )
        first = start
        with Progress(rows.size, f"extract {split}", "img", initial=start) as bar:
            for images, views, error in loader:
                if error is not None:
                    raise FeatltError(error)
                if decoder is not None:
                    images = decoder(images)
                outputs = self._outputs(images, views)
                self._check(outputs, split, first)
                yield first, outputs
                first += int(images.shape[0])
                bar.update(int(images.shape[0]))
        if decoder is not None and decoder.fallbacks:
            log.info("split %s: %d JPEG(s) the device decoder refused were decoded on the CPU",
                     split, decoder.fallbacks)

    def _run(self, x: Any) -> tuple[Any, Any]:
        """(features (b, D), logits (b, K) or None) of a (b, 3, H, W) batch, on the device."""
        from featlt.extractors.backbones import check_features

        out = self.forward(x)
        feats, logits = out if self.config.store_logits else (out, None)
        check_features(feats, self.backbone.dim, self.backbone.provenance["model"])
        return feats, logits

    def _outputs(self, images: Any, views: Any) -> dict[str, np.ndarray | None]:
        """Forward a batch (b, 3, H, W) and its views (b, V, 3, H, W) in batch-size chunks.

        The batch is uint8 (normalised here, on the device) or float32 already normalised by
        the decode workers (:class:`~featlt.extract.decode_loader.Collate`).
        """
        import torch

        def place(x: Any, normalize: Any) -> Any:
            # CPU: already normalised in the path's layout (a no-op); CUDA: the layout is made
            # on uint8, 4x less to copy than after normalising, and the float operations keep it
            x = x.to(self.backbone.device, non_blocking=True,
                     memory_format=self.forward.memory_format)
            return x if self.normalised_by_workers else normalize(x)

        feats, logits = self._run(place(images, self.normalize))
        view_feats = None
        if views is not None:
            chunks = views.flatten(0, 1).split(self.config.batch_size)
            view_feats = torch.cat([self._run(place(chunk, self.normalize_views))[0]
                                    for chunk in chunks])
            view_feats = view_feats.reshape(views.shape[0], views.shape[1], -1)
        return {
            "features": feats.cpu().numpy(),
            "views": None if view_feats is None else view_feats.cpu().numpy(),
            "logits": None if logits is None else logits.cpu().numpy(),
        }

    def _check(self, outputs: dict[str, np.ndarray | None], split: str, first: int) -> None:
        """Refuse AMP overflow and float16 storage beyond float16's range, naming the fix."""
        config = self.config
        for name, array in outputs.items():
            if array is None:
                continue
            if self.backbone.amp_dtype is not None and not np.isfinite(array).all():
                raise StoreError(
                    f"output {config.output}: split '{split}' rows from {first}: {name} hold "
                    f"NaN/inf under {self.backbone.amp_dtype} autocast (activations overflowed "
                    "its range); re-run with --amp-dtype bfloat16 or --no-amp, and --overwrite"
                )
            if config.dtype == "float16" and name != "logits":
                peak = float(np.abs(array).max(initial=0.0))
                if peak > FLOAT16_MAX:
                    raise StoreError(
                        f"output {config.output}: split '{split}' rows from {first}: {name} "
                        f"reach {peak:.3g}, beyond float16's range ({FLOAT16_MAX:.0f}); re-run "
                        "with --dtype float32 --overwrite"
                    )
