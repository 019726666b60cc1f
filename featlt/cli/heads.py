"""``featlt fit-classifier`` and ``featlt predict``: heads on stored features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import (
    BOOTSTRAP_RANGE,
    POSITIVE,
    InputPath,
    OutputFolder,
    OutputPath,
    Params,
    memory_budget_option,
)
from featlt.cli.view_options import build_protocol, view_options
from featlt.runtime import Runtime, atomic_outputs


def head_folder_writes(params: Params) -> list[str]:
    """What ``fit-classifier`` writes inside its output folder (glob patterns)."""
    from featlt.heads.io import CONFIG_FILE, TENSORS_FILE
    from featlt.heads.workflow import SUMMARY_FILE, TEST_PREDICTIONS_FILE

    return [SUMMARY_FILE, *(f"*/{name}" for name in (CONFIG_FILE, TENSORS_FILE,
                                                       TEST_PREDICTIONS_FILE))]


def head_files() -> tuple[str, ...]:
    """The files ``predict`` reads inside a head folder."""
    from featlt.heads.io import CONFIG_FILE, TENSORS_FILE

    return CONFIG_FILE, TENSORS_FILE


def default_heads_dir(params: Params) -> Path:
    """``fit-classifier``'s folder when ``-o`` is not given: ``<FEATURE_FILE stem>-heads``."""
    return Path(f"{Path(params['feature_file']).stem}-heads")


@main.command("fit-classifier")
@click.argument("feature_file", type=InputPath())
@click.option("--head", "heads", multiple=True, default=("all",), show_default=True,
              help="Head name (repeatable) or 'all'; an unknown name lists the names.")
@view_options
@click.option("-o", "--output", "out_dir", default=None,
              type=OutputFolder(writes=head_folder_writes, default=default_heads_dir),
              help="Output folder (default: <FEATURE_FILE stem>-heads in the current folder).")
@click.option("--max-epochs", type=POSITIVE, default=None,
              help="Cap the epochs of every trainable head (default: each head's own).")
@click.option("--bootstrap", type=BOOTSTRAP_RANGE, default=1000, show_default=True,
              help="Bootstrap resamples for the test intervals (0: none).")
@memory_budget_option("Read the features chunk by chunk (heads that cannot stream run in "
                      "memory when the budget holds their features)")
@featlt_command
def fit_classifier_command(
    runtime: Runtime, feature_file: Path, heads: tuple[str, ...],
    protocol_options: dict[str, Any], out_dir: Path | None, max_epochs: int | None, bootstrap: int,
    memory_budget: float | None,
) -> None:
    """Fit, select on validation, evaluate on test and save classifier heads."""
    from featlt.heads.report import comparison_table
    from featlt.heads.workflow import fit_classifiers
    protocol = build_protocol(protocol_options, runtime.seed)
    out_dir = out_dir or default_heads_dir({"feature_file": feature_file})  # set by the guard
    with atomic_outputs("fit-classifier output"):  # every head, CSV and summary, or none
        summary = fit_classifiers(
            feature_file, heads, out_dir, protocol,
            device=runtime.device, seed=runtime.seed, n_bootstrap=bootstrap,
            overrides=None if max_epochs is None else {"max_epochs": max_epochs},
            memory_budget_mb=memory_budget,
        )
    emit(runtime, summary, comparison_table(summary))


@main.command("predict")
@click.argument("head_dir", type=InputPath(folder=True, reads=head_files))
@click.argument("feature_file", type=InputPath(), required=False)
@click.option("--images", type=InputPath(folder=True), default=None,
              help="Classify an image folder end to end (backbone + head) instead.")
@click.option("--split", default="test", show_default=True,
              help="Split of FEATURE_FILE to classify.")
@click.option("-o", "--output", type=OutputPath("predictions.csv"), default=None,
              help="Write one CSV row per prediction.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True,
              help="Images per backbone batch (--images).")
@click.option("--weights", multiple=True,
              help="Backbone weights (--images) when the recorded weights file is not on this "
                   "machine and not in the zoo; must be the same weights (checked by hash). A "
                   "head on a combined store: MEMBER=FILE (member number or name), repeatable.")
@featlt_command
def predict_command(
    runtime: Runtime, head_dir: Path, feature_file: Path | None, images: Path | None,
    split: str, output: Path | None, batch_size: int, weights: tuple[str, ...],
) -> None:
    """Apply a saved head to a feature file of the same backbone, or to an image folder."""
    from featlt.heads.report import prediction_text
    from featlt.heads.workflow import predict_features
    from featlt.predict.images import predict_images

    if (feature_file is None) == (images is None):
        raise click.UsageError("give either FEATURE_FILE or --images FOLDER (not both)")
    if feature_file is not None:
        result = predict_features(head_dir, feature_file, split=split, output=output,
                                  seed=runtime.seed, device=runtime.device)
    else:
        result = predict_images(head_dir, images, output=output, device=runtime.device,
                                batch_size=batch_size, weights=weights, seed=runtime.seed)
    emit(runtime, result, prediction_text(result))
