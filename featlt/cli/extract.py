"""``featlt extract`` (images -> feature store) and ``featlt weights`` (convert, list)."""

from __future__ import annotations

from pathlib import Path

import click

from featlt.cli import emit, featlt_command, main
from featlt.errors import FeatltError
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
              help="timm ARCH[.TAG] (the tag fixes preprocessing) or a zoo name (featlt weights "
                   "list).")
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
              help="DataLoader decode workers [default: cores/4, 1..4].")
@click.option("--limit", default=None,
              help="At most N images per split (a seeded random subset): N, or per split as "
                   "train=N,test=M.")
@click.option("--store-logits", is_flag=True, help="Also store the backbone's classifier logits.")
@click.option("--skip-bad", is_flag=True,
              help="Leave out unreadable images (recorded in the store) instead of stopping.")
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
    no_amp: bool,
    output: Path,
    resume: bool,
    overwrite: bool,
) -> None:
    """Write frozen-backbone features of a dataset into a crash-safe feature store."""
    from featlt.extract import ExtractConfig, extract_features

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
        amp=not no_amp,
        skip_bad=skip_bad,
    )
    result = extract_features(config, runtime)
    backbone = result.provenance["backbone"]
    lines = [f"wrote {result.output}  ({backbone['model']}, {backbone['weights']['source']} "
             f"weights, dim {result.dim}, {backbone['device']} {backbone['precision']})"]
    for split in result.splits:
        speed = (f"{split.images_per_second:.1f} img/s" if split.images_per_second
                 else "nothing left")
        resumed = f", resumed at {split.resumed_from}" if split.resumed_from else ""
        lines.append(f"  {split.name:<6} {split.rows} rows in {split.seconds:.1f} s "
                     f"({speed}{resumed})")
    emit(runtime, result, "\n".join(lines))


@main.group("weights")
def weights_group() -> None:
    """Backbone weights: convert foreign checkpoints, list the zoo."""


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
    from featlt.weights import convert_positional

    result = convert_positional(source, model, output, num_classes)
    emit(runtime, result,
         f"wrote {result.output}\n  {result.n_tensors} tensors of {result.model} from "
         f"{result.source} (positional, every shape checked, strict load verified)\n"
         f"  use: featlt extract --model {result.model} --weights {result.output} ...")


@weights_group.command("list")
@featlt_command
def list_command(runtime: Runtime) -> None:
    """The backbone zoo: names for --model and where their weights come from."""
    from featlt.extractors import ENTRIES

    lines = []
    for entry in ENTRIES:
        source = entry.requirement if entry.weights == "package" else "random init (seeded)"
        lines.append(f"{entry.name:<28} {entry.model:<30} {source}\n    {entry.description}")
    emit(runtime, list(ENTRIES), "\n".join(lines))
