"""``featlt rank FEATURES.h5 ...``: rank backbones for long-tailed data and check the ranking."""

from __future__ import annotations

import glob
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.heads import head_folder_writes
from featlt.cli.option_types import (
    BOOTSTRAP_RANGE,
    InputPath,
    OutputFolder,
    OutputPath,
    Params,
    memory_budget_option,
)
from featlt.cli.view_options import build_protocol, view_options
from featlt.rank.model import OPTIONAL_SCORES, SCORE_COLUMNS
from featlt.runtime import Runtime

SCORES = (*SCORE_COLUMNS, "measured")


def rank_heads_writes(params: Params) -> list[str]:
    """What ``rank --full`` writes inside ``--heads-dir``: one ``<stem>-<settings key>`` folder
    of ``fit-classifier`` output per feature file, with its ``crossval-<K>folds.json``; with
    ``--pairs`` also the combined stores (``combined/*.h5``) and their folders (``<stem>+<stem>
    ...-<key>-<settings key>``) (glob patterns)."""
    from featlt.rank.combined import COMBINED_DIR
    from featlt.rank.crossval import CV_FILE_PATTERN

    patterns = [*head_folder_writes(params), CV_FILE_PATTERN]
    stems = [glob.escape(Path(path).stem) for path in params["feature_files"]]
    writes = [f"{stem}-*/{pattern}" for stem in stems for pattern in patterns]
    if params.get("pairs"):
        writes += [f"{COMBINED_DIR}/*.h5", *(f"*+*-*/{pattern}" for pattern in patterns)]
    return writes


@main.command("rank")
@click.argument("feature_files", nargs=-1, required=True, type=InputPath())
@view_options
@click.option("--by", type=click.Choice(SCORES), default="featlt", show_default=True,
              help="The score that sorts the table (measured: the best head's balanced "
                   "accuracy, with --full).")
@click.option("--with", "optional", multiple=True, type=click.Choice(tuple(OPTIONAL_SCORES)),
              help="Add an opt-in candidate score (repeatable): ridge (the class-balanced ridge "
                   "probe, adds ridge and ridge_tail) or cv_la (5-fold cross-validated "
                   "logit-adjusted head).")
@click.option("-o", "--output", type=OutputPath("ranking.csv"), default=None,
              help="Write the ranking as CSV (one row per feature file).")
@click.option("--plot", "plot_file", type=OutputPath("ranking.png"), default=None,
              help="Write a PNG: each score against measured balanced accuracy (--full), else "
                   "the scores as bars.")
@click.option("--json-output", "json_file", type=OutputPath("ranking.json"), default=None,
              help="Write the JSON document that --json prints (kind featlt.rank, version 5: "
                   "every score, the measured, validation and combination fields when "
                   "computed), atomically.")
@click.option("--full", is_flag=True,
              help="Also fit the established heads on each file (selection on validation, "
                   "test scored once) and report the best one's accuracy.")
@click.option("--validate", is_flag=True,
              help="With --full: Kendall tau-b, weighted tau, intervals and top-1 regret of "
                   "every score against the measured ranking.")
@click.option("--head", "heads", multiple=True, default=("all",), show_default=True,
              help="Heads fitted in --full mode (repeatable, or 'all').")
@click.option("--heads-dir", default=Path("featlt-rank-heads"),
              type=OutputFolder(writes=rank_heads_writes, active=lambda params: params["full"]),
              show_default=True, help="Where --full keeps its heads; equal settings are reused.")
@click.option("--max-epochs", type=int, default=None,
              help="Cap the epochs of every trainable head in --full mode.")
@click.option("--cv-folds", type=click.IntRange(min=0), default=5, show_default=True,
              help="--full picks the backbone and head by K-fold cross-validated balanced "
                   "accuracy over the training view (each class needs K training rows); 0: by "
                   "validation balanced accuracy only.")
@click.option("--bootstrap", type=BOOTSTRAP_RANGE, default=1000, show_default=True,
              help="Bootstrap resamples of every interval and probability.")
@click.option("--pairs", is_flag=True,
              help="Also rank every pair of the files as a combined feature set (scored in "
                   "memory, no file written: featlt's score, LogME, kNN, NCM, ridge probe); "
                   "with --full the top --pairs-top are combined, fitted and measured.")
@click.option("--pairs-max-k", type=click.IntRange(min=2), default=2, show_default=True,
              help="With --pairs: grow combinations greedily up to K members (the top "
                   "--pairs-top of each size extended by one file).")
@click.option("--pairs-top", type=click.IntRange(min=1), default=3, show_default=True,
              help="With --pairs: combinations fitted by --full (and grown by --pairs-max-k), "
                   "best by featlt's score.")
@click.option("--max-width", type=click.IntRange(min=1), default=8192, show_default=True,
              help="With --pairs: the widest combined feature scored (wider ones are skipped "
                   "with a note).")
@memory_budget_option("Score each file from training rows read chunk by chunk (cheap mode)")
@featlt_command
def rank_command(
    runtime: Runtime, feature_files: tuple[Path, ...], protocol_options: dict[str, Any],
    by: str, optional: tuple[str, ...], output: Path | None, plot_file: Path | None,
    json_file: Path | None, full: bool, validate: bool,
    heads: tuple[str, ...], heads_dir: Path, max_epochs: int | None, cv_folds: int,
    bootstrap: int, pairs: bool, pairs_max_k: int, pairs_top: int, max_width: int,
    memory_budget: float | None,
) -> None:
    """Rank FEATURE_FILES (one backbone each, same dataset) for long-tailed data.

    Cheap mode scores each file from its training rows (seconds per file); --full also fits the
    heads and measures each backbone on the test split. Ends with the backbone and head to use.
    --pairs ranks every pair of the files (combined features) beside them.
    """
    from featlt.errors import FeatltError
    from featlt.heads.workflow import expand_head_names
    from featlt.rank.model import HeadSettings, PairSettings, RankConfig
    from featlt.rank.ranking import rank_files
    from featlt.rank.table import ranking_text, write_csv
    from featlt.runtime import to_jsonable, write_json_atomic

    if not pairs and (pairs_max_k, pairs_top, max_width) != (2, 3, 8192):
        raise FeatltError("--pairs-max-k, --pairs-top and --max-width: apply to combinations "
                          "only; add --pairs")
    config = RankConfig(
        pairs=PairSettings(max_k=pairs_max_k, top=pairs_top, max_width=max_width)
        if pairs else None,
        by=by, full=full, validate=validate, heads_dir=heads_dir, n_bootstrap=bootstrap,
        seed=runtime.seed, cv_folds=cv_folds, optional=tuple(dict.fromkeys(optional)),
        heads=HeadSettings(heads=tuple(expand_head_names(heads)), seed=runtime.seed,
                           n_bootstrap=bootstrap, max_epochs=max_epochs),
    )
    def progress(line: str) -> None:
        click.echo(line, err=True)

    document = rank_files(list(feature_files), build_protocol(protocol_options, runtime.seed),
                          config, device=runtime.device, threads=runtime.threads, log=progress,
                          memory_budget_mb=memory_budget)
    # the command as typed (``featlt rank ...``), for a reader of the document
    document["run"]["command"] = shlex.join(["featlt", *sys.argv[1:]])
    document["outputs"] = {"csv": None, "plot": None,
                           "json": None if json_file is None else str(json_file)}
    if output is not None:
        document["outputs"]["csv"] = str(write_csv(output, document))
        progress(f"ranking written to {output}")
    if plot_file is not None:
        from featlt.rank.plots import write_ranking_plot

        document["outputs"]["plot"] = str(write_ranking_plot(document, plot_file))
        progress(f"plot written to {plot_file}")
    document = to_jsonable(document)
    if json_file is not None:  # last, so it holds every output; the same document --json prints
        write_json_atomic(json_file, document)
        progress(f"JSON written to {json_file}")
    emit(runtime, document, ranking_text(document))
