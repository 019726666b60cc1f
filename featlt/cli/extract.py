"""``featlt extract`` (images -> feature store); ``featlt zoo`` and ``featlt weights`` live in
:mod:`featlt.cli.weights`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import POSITIVE, WORKERS_RANGE, OutputPath, finite_float
from featlt.cli.view_options import build_protocol, view_options
from featlt.errors import FeatltError
from featlt.extract.augment import DEFAULT_POLICY, policy_names
from featlt.extract.decode_loader import MAX_RESOLUTION
from featlt.extract.device_decode import DECODE_PATHS
from featlt.extractors.fast_forward import AMP_DTYPES, DEFAULT_AMP_DTYPE, FORWARD_PATHS
from featlt.runtime import Runtime


def _splits(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    if not names:
        raise FeatltError(f"--splits '{value}': empty; pass e.g. train,test")
    return names


def _limit(value: str | None) -> int | dict[str, int] | None:
    """``--limit``: ``N`` or ``train=N,test=M``."""
    if value is None:
        return None
    try:
        if "=" not in value:
            limit: int | dict[str, int] = int(value)
        else:
            pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
            limit = {split.strip(): int(n) for split, n in pairs}
    except ValueError as err:
        raise FeatltError(
            f"--limit '{value}': not N or split=N[,split=N]; pass e.g. 500 or train=500,test=200"
        ) from err
    if min(limit.values() if isinstance(limit, dict) else [limit], default=1) < 1:
        raise FeatltError(
            f"--limit '{value}': image counts must be at least 1; pass e.g. 500 or "
            "train=500,test=200"
        )
    return limit


def _seeds(value: str | None) -> tuple[int, ...] | None:
    """``--view-seeds``: ``0,1,2`` or a range ``0-4``."""
    if value is None:
        return None
    try:
        if "-" in value.strip().lstrip("-"):
            low, high = value.split("-", 1)
            return tuple(range(int(low), int(high) + 1))
        return tuple(int(item) for item in value.split(",") if item.strip())
    except ValueError as err:
        raise FeatltError(f"--view-seeds '{value}': not a list or range; pass e.g. 0-4 or 0,3"
                          ) from err


@main.command("extract")
@click.option("--model", "-m", required=True, multiple=True,
              help="timm ARCH[.TAG] (the tag fixes preprocessing), a zoo name (featlt zoo list), "
                   "or pixels[_SIZE] (raw-pixel baseline). Repeat for a sweep (one file each, "
                   "named by the -o template).")
@click.option("--weights", "-w", default=None,
              help="FILE.safetensors|FILE.pth, local-dir:FOLDER, hub, or random. Not with zoo "
                   "names.")
@click.option("--data", "-d", required=True,
              help="Dataset: folder:PATH, npz:FILE, jpeg-npz:FILE, digits, mnist5k, ... "
                   "(docs/data-formats.md).")
@click.option("--splits", default=None, help="Comma-separated splits [default: all the data has].")
@click.option("--resolution", type=click.IntRange(1, MAX_RESOLUTION), default=None,
              help=f"Square input size, at most {MAX_RESOLUTION} [default: the model tag's].")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True,
              help="Rows per forward pass and per write (resume needs the same).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16",
              show_default=True, help="Stored feature dtype (float16 overflow is refused).")
@click.option("--workers", type=WORKERS_RANGE, default=None,
              help="DataLoader decode workers [default: CPU cores/4 (1..4); CUDA cores-1].")
@click.option("--limit", default=None,
              help="At most N images per split (a seeded random subset): N, or per split as "
                   "train=N,test=M.")
@click.option("--store-logits", is_flag=True, help="Also store the backbone's classifier logits.")
@click.option("--skip-bad", is_flag=True,
              help="Leave out unreadable images (recorded in the store) instead of stopping.")
@click.option("--views", type=int, default=0, show_default=True,
              help="Also store V train-time-augmented views per image (/<split>/views).")
@click.option("--augment", type=click.Choice(policy_names()), default=DEFAULT_POLICY,
              show_default=True, help="Augmentation policy of --views (docs/extract.md).")
@click.option("--layer", default=None,
              help="An inner layer as the feature, spatially averaged (e.g. blocks.4); an "
                   "unknown name lists the model's layers [default: pooled pre-logits].")
@click.option("--forward-path", type=click.Choice(FORWARD_PATHS), default="auto",
              show_default=True,
              help="eager, channels_last, folded (channels_last + BatchNorm folded), or "
                   "torch.compile; auto: folded on CPU (compiled for long runs), channels_last "
                   "on CUDA.")
@click.option("--amp-dtype", type=click.Choice(AMP_DTYPES), default=DEFAULT_AMP_DTYPE,
              show_default=True, help="CUDA autocast dtype (bfloat16 cannot overflow).")
@click.option("--no-amp", is_flag=True, help="On CUDA, run float32 instead of autocast.")
@click.option("--decode", type=click.Choice(DECODE_PATHS), default="auto", show_default=True,
              help="Where JPEGs are decoded: device (torchvision decode_jpeg, nvJPEG on CUDA, "
                   "batched; other formats on the CPU), cpu (Pillow in the workers); auto: "
                   "device on CUDA for JPEG sources without --views.")
@view_options
@click.option("--view-seeds", default=None,
              help="With view options: also extract the validation rows the view draws at these "
                   "seeds, e.g. 0-4 [default: --seed].")
@click.option("--also-imbalance-factor", type=finite_float(min=1.0), multiple=True,
              help="With a long-tail --profile: also cover the view at this imbalance factor "
                   "(its outside validation rows); repeatable.")
# The store's lock is taken by the extraction itself, per backbone of a sweep, and its inputs
# (--data, --weights) are checked against it there (featlt.extract.pipeline).
@click.option("-o", "--output", required=True, type=OutputPath("features.h5", lock=False),
              help="The feature store to write (.h5); for a sweep a template with {model}, "
                   "{weights}, {layer}, {resolution}.")
@click.option("--resume", is_flag=True, help="Continue an interrupted output (same settings).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--skip-existing", is_flag=True,
              help="Keep a complete output of the same provenance, resume an incomplete one, "
                   "refuse one of other provenance.")
@featlt_command
def extract_command(
    runtime: Runtime,
    model: tuple[str, ...],
    weights: str | None,
    data: str,
    splits: str | None,
    resolution: int | None,
    batch_size: int,
    dtype: str,
    workers: int | None,
    limit: str | None,
    store_logits: bool,
    skip_bad: bool,
    views: int,
    augment: str,
    layer: str | None,
    forward_path: str,
    amp_dtype: str,
    no_amp: bool,
    decode: str,
    protocol_options: dict,
    view_seeds: str | None,
    also_imbalance_factor: tuple[float, ...],
    output: Path,
    resume: bool,
    overwrite: bool,
    skip_existing: bool,
) -> None:
    """Write frozen-backbone features of a dataset into a crash-safe feature store.

    With view options (--profile, --test-per-class, ...) only the rows that view reads. Under
    `torchrun --nproc-per-node N -m featlt extract ...` each process extracts a shard and rank 0
    joins them into the output (docs/scaling.md); only rank 0 prints.
    """
    from featlt.extract.pipeline import ExtractConfig, extract_features
    from featlt.extract.sweep import output_paths, run_sweep

    if sum((resume, overwrite, skip_existing)) > 1:
        raise FeatltError("--resume, --overwrite and --skip-existing: pick one")
    outputs = output_paths(output, model, weights, layer, resolution)
    config = ExtractConfig(
        model=model[0],
        data=data,
        output=outputs[0],
        weights=weights,
        splits=_splits(splits),
        resolution=resolution,
        batch_size=batch_size,
        dtype=dtype,  # type: ignore[arg-type]
        workers=workers,
        limit=_limit(limit),
        mode="resume" if resume else "overwrite" if overwrite else "create",
        store_logits=store_logits,
        skip_bad=skip_bad,
        views=views,
        augment=augment,
        layer=layer,
        forward_path=forward_path,
        amp=not no_amp,
        amp_dtype=amp_dtype,  # type: ignore[arg-type]
        protocol=build_protocol(protocol_options, runtime.seed),
        view_seeds=_seeds(view_seeds),
        also_imbalance_factors=also_imbalance_factor,
        skip_existing=skip_existing,
        decode=decode,
    )
    if len(model) == 1:
        result = extract_features(config, runtime)
        if result.rank == 0:
            emit(runtime, result, _summary(result))
        return
    results, failures = run_sweep(config, model, outputs,
                                  lambda run: extract_features(run, runtime))
    if any(result.rank for result in results):
        return
    emit(runtime, {"results": results, "failed": failures},
         "\n".join([*map(_summary, results),
                    *(f"FAILED --model {f.model} ({f.output}): {f.error}" for f in failures)]))
    if failures:
        raise FeatltError(
            f"sweep: {len(failures)} of {len(model)} backbones failed: "
            + "; ".join(f"--model {f.model} ({f.output}): {f.error}" for f in failures)
        )


def _summary(result: Any) -> str:
    """One extraction's file, backbone and per-split rows and speed, as text."""
    backbone = result.provenance["backbone"]
    lines = [f"wrote {result.output}  ({backbone['model']}, {backbone['weights']['source']} "
             f"weights, {backbone['feature']['layer']} dim {result.dim}, {backbone['device']} "
             f"{backbone['precision']}, {result.provenance['forward']['name']} forward)"]
    for split in result.splits:
        speed = (f"{split.images_per_second:.1f} img/s" if split.images_per_second
                 else "kept" if split.resumed_from == split.rows else "nothing left")
        resumed = f", resumed at {split.resumed_from}" if split.resumed_from else ""
        lines.append(f"  {split.name:<6} {split.rows} rows in {split.seconds:.1f} s "
                     f"({speed}{resumed})")
    if result.join is not None:
        lines.append(f"  joined {result.world_size} shards (torchrun world size "
                     f"{result.world_size}) in {result.join.seconds:.3f} s, "
                     f"{result.join.feature_bytes_copied} feature bytes copied")
    return "\n".join(lines)

