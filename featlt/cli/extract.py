"""``featlt extract`` (images -> feature store), ``featlt zoo list`` and ``featlt weights``
(convert; ``list`` is an alias of ``zoo list``)."""

from __future__ import annotations

from pathlib import Path

import click

from featlt.cli import emit, featlt_command, main
from featlt.errors import FeatltError
from featlt.extract.augment import DEFAULT_POLICY, policy_names
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
            return int(value)
        pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
        return {split.strip(): int(n) for split, n in pairs}
    except ValueError as err:
        raise FeatltError(
            f"--limit '{value}': not N or split=N[,split=N]; pass e.g. 500 or train=500,test=200"
        ) from err


@main.command("extract")
@click.option("--model", "-m", required=True,
              help="timm ARCH[.TAG] (the tag fixes preprocessing), a zoo name (featlt zoo list), "
                   "or pixels[_SIZE] (raw-pixel baseline).")
@click.option("--weights", "-w", default=None,
              help="FILE.safetensors|FILE.pth, local-dir:FOLDER, hub, or random. Not with zoo "
                   "names.")
@click.option("--data", "-d", required=True,
              help="Dataset: folder:PATH, npz:FILE, jpeg-npz:FILE, digits, mnist5k, ... "
                   "(docs/data-formats.md).")
@click.option("--splits", default=None, help="Comma-separated splits [default: all the data has].")
@click.option("--resolution", type=int, default=None,
              help="Square input size [default: the model tag's].")
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Rows per forward pass and per write (resume needs the same).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16",
              show_default=True, help="Stored feature dtype (float16 overflow is refused).")
@click.option("--workers", type=int, default=None,
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
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The feature store to write (.h5).")
@click.option("--resume", is_flag=True, help="Continue an interrupted output (same settings).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@featlt_command
def extract_command(
    runtime: Runtime,
    model: str,
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
    output: Path,
    resume: bool,
    overwrite: bool,
) -> None:
    """Write frozen-backbone features of a dataset into a crash-safe feature store."""
    from featlt.extract.pipeline import ExtractConfig, extract_features

    if resume and overwrite:
        raise FeatltError("--resume and --overwrite: pick one")
    config = ExtractConfig(
        model=model,
        data=data,
        output=output,
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
    )
    result = extract_features(config, runtime)
    backbone = result.provenance["backbone"]
    lines = [f"wrote {result.output}  ({backbone['model']}, {backbone['weights']['source']} "
             f"weights, {backbone['feature']['layer']} dim {result.dim}, {backbone['device']} "
             f"{backbone['precision']}, {result.provenance['forward']['name']} forward)"]
    for split in result.splits:
        speed = (f"{split.images_per_second:.1f} img/s" if split.images_per_second
                 else "nothing left")
        resumed = f", resumed at {split.resumed_from}" if split.resumed_from else ""
        lines.append(f"  {split.name:<6} {split.rows} rows in {split.seconds:.1f} s "
                     f"({speed}{resumed})")
    emit(runtime, result, "\n".join(lines))


@main.group("zoo")
def zoo_group() -> None:
    """The backbone zoo: named backbones for --model and their weights."""


@zoo_group.command("list")
@featlt_command
def zoo_list_command(runtime: Runtime) -> None:
    """Each zoo entry's timm model, weight source and whether its weights are here."""
    from featlt.extractors import zoo_status

    statuses = zoo_status()
    lines = []
    for status in statuses:
        mark = "present" if status.present else "MISSING"
        lines.append(f"{status.name:<27} {status.model:<29} {status.source}\n"
                     f"    {mark}: {status.note}" + (f"\n    {status.path}" if status.path
                                                       else "")
                     + f"\n    {status.description}")
    lines.append(f"{'pixels, pixels_<SIZE>':<57} no weights (raw pixels)\n    raw pixels at "
                 "SIZE x SIZE (default 16): the floor every backbone should beat")
    emit(runtime, statuses, "\n".join(lines))


@main.group("weights")
def weights_group() -> None:
    """Backbone weights: convert foreign checkpoints, list the zoo (= featlt zoo list)."""


weights_group.add_command(zoo_list_command, "list")


@weights_group.command("convert")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, help="Target timm ARCH[.TAG].")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The .safetensors to write [default: <cache>/weights/<model>-<sha>"
                   ".safetensors].")
@click.option("--num-classes", type=int, default=None,
              help="Classifier width of the target [default: timm's]; 0 for headless sources.")
@featlt_command
def convert_command(
    runtime: Runtime, source: Path, model: str, output: Path | None, num_classes: int | None
) -> None:
    """Map SOURCE's tensors onto a timm model by position (shapes checked), save as safetensors."""
    from featlt.extractors.weights import convert_positional

    result = convert_positional(source, model, output, num_classes)
    emit(runtime, result,
         f"wrote {result.output}\n  {result.n_tensors} tensors of {result.model} from "
         f"{result.source} (positional, every shape checked, strict load verified)\n"
         f"  use: featlt extract --model {result.model} --weights {result.output} ...")
