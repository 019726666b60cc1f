"""``featlt combine A.h5 B.h5 [C.h5 ...] -o AB.h5``: one combined feature set of several stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import CappedInt, InputPath, OutputPath
from featlt.errors import FeatltError
from featlt.runtime import Runtime
from featlt.store.members import DEFAULT_MAX_WIDTH


@main.command("combine")
@click.argument("feature_files", nargs=-1, required=True, type=InputPath())
# The output's lock is taken by the combination itself (featlt.combine.write), as extract does.
@click.option("-o", "--output", required=True, type=OutputPath("combined.h5", lock=False),
              help="The combined feature store to write (.h5).")
@click.option("--max-width", type=CappedInt(1), default=DEFAULT_MAX_WIDTH, show_default=True,
              help="The widest combined feature accepted (the sum of the members' widths).")
@click.option("--resume", is_flag=True, help="Continue an interrupted combination.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@featlt_command
def combine_command(runtime: Runtime, feature_files: tuple[Path, ...], output: Path,
                    max_width: int, resume: bool, overwrite: bool) -> None:
    """Concatenate the L2-normalised features of several stores of one dataset, image by image.

    Images are matched on their source positions; the output holds the images every input
    holds, with the recipe and every member recorded in its provenance.
    """
    from featlt.combine.write import combine_stores

    if resume and overwrite:
        raise FeatltError("--resume and --overwrite: pick one")
    result = combine_stores(list(feature_files), output,
                            mode="resume" if resume else "overwrite" if overwrite else "create",
                            max_width=max_width)
    emit(runtime, result, _summary(result))


def _summary(result: Any) -> str:
    """What was written, as text."""
    members = " + ".join(f"{name} ({dim})" for name, dim in
                         zip(result.members, result.dims, strict=True))
    lines = [f"wrote {result.output}  ({members} = dim {result.dim}, {result.dtype}, "
             f"{result.seconds:.1f} s)"]
    lines += [f"  {split:<6} {n} rows" for split, n in result.rows.items()]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)
