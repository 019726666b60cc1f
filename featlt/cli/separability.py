"""``featlt evaluate-separability FEATURES.h5 [...]``: head/tail separability report."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import (
    POSITIVE,
    InputPath,
    OutputFolder,
    OutputPath,
    Params,
    finite_float,
    memory_budget_option,
)
from featlt.cli.view_options import build_protocol, view_options
from featlt.runtime import Runtime, atomic_outputs


def plot_writes(params: Params) -> list[str]:
    """What ``--plots`` gets: ``<stem>[_<n>]_per_class.png`` and ``..._bins.png`` per file."""
    return [f"{glob.escape(Path(path).stem)}*_{kind}.png"
            for path in params["feature_files"] for kind in ("per_class", "bins")]


@main.command("evaluate-separability")
@click.argument("feature_files", nargs=-1, required=True, type=InputPath())
@view_options
@click.option("-o", "--output", type=OutputPath("report.json"), default=None,
              help="Write the full report (JSON) here.")
@click.option("--plots", "plots_dir", type=OutputFolder(writes=plot_writes), default=None,
              help="Write PNG plots into this folder.")
@click.option("--knn-queries", type=POSITIVE, default=2000, show_default=True,
              help="Stratified training queries for kNN (every few-shot sample included).")
@click.option("--knn-k", type=POSITIVE, default=10, show_default=True, help="kNN neighbours.")
@click.option("--knn-metric", type=click.Choice(["cosine", "l2"]), default="cosine",
              show_default=True, help="cosine: centred, L2-normalised features; l2: raw.")
@click.option("--pca-dim", type=POSITIVE, default=64, show_default=True,
              help="PCA dimensions for GBC and the Bhattacharyya matrix.")
@click.option("--gbc-gaussian", type=click.Choice(["spherical", "diagonal"]),
              default="spherical", show_default=True, help="GBC class Gaussians.")
@click.option("--density-clusters", type=POSITIVE, default=None,
              help="Clusters of the density mixture (default: max(C, min(256, N // 500))).")
@click.option("--dense-fraction", type=finite_float(0.0, 1.0, min_open=True), default=0.3,
              show_default=True,
              help="Densest share of training samples whose make-up is reported (DLSA's rho).")
@click.option("--split-ref", type=finite_float(min=0.0, min_open=True), default=None,
              help="CWS target sub-class size n_ref (default: median class size).")
@click.option("--min-subclass-size", type=POSITIVE, default=20, show_default=True,
              help="CWS fewest samples per planned sub-class (m_min).")
@click.option("--exact", is_flag=True,
              help="The exact computation: exact float32 kNN search, the density mixture and "
                   "the split on every row (slower; the default's tolerances: docs/scaling.md).")
@memory_budget_option("Read the training rows chunk by chunk")
@featlt_command
def evaluate_separability_command(
    runtime: Runtime,
    feature_files: tuple[Path, ...],
    protocol_options: dict[str, Any],
    output: Path | None,
    plots_dir: Path | None,
    knn_queries: int,
    knn_k: int,
    knn_metric: str,
    pca_dim: int,
    gbc_gaussian: str,
    density_clusters: int | None,
    dense_fraction: float,
    split_ref: float | None,
    min_subclass_size: int,
    exact: bool,
    memory_budget: float | None,
) -> None:
    """How well each feature file keeps rare classes apart: scores, bin matrices, split plan.

    Several FEATURE_FILES give one comparison table. Scores are computed on the training rows of
    the chosen view (and its validation rows for kNN/NCM); the test split is never read.
    """
    from featlt.separability.evaluate import SeparabilityConfig
    from featlt.separability.report import format_document, run_separability
    protocol = build_protocol(protocol_options, runtime.seed)
    config = SeparabilityConfig(
        knn_k=knn_k, knn_queries=knn_queries, knn_metric=knn_metric, pca_dim=pca_dim,
        gbc_gaussian=gbc_gaussian, density_clusters=density_clusters,
        dense_fraction=dense_fraction, split_n_ref=split_ref, split_min_size=min_subclass_size,
        seed=runtime.seed, exact=exact,
    )
    with atomic_outputs("separability output"):  # the report and every plot, or none
        document = run_separability(list(feature_files), protocol, config, runtime.device,
                                    runtime.threads, output, plots_dir, memory_budget)
    emit(runtime, document, format_document(document))
