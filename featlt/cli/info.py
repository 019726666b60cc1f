"""``featlt info FILE.h5``: splits, counts, dtype, views, provenance and completeness."""

from __future__ import annotations

import json
from pathlib import Path

import click

from featlt.cli import emit, featlt_command, main
from featlt.runtime import Runtime


@main.command("info")
@click.argument("feature_file", type=click.Path(path_type=Path))
@featlt_command
def info_command(runtime: Runtime, feature_file: Path) -> None:
    """Describe a feature store (incomplete files too, marked as such)."""
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(feature_file, allow_incomplete=True) as store:
        splits = {name: store.info(name) for name in store.splits}
        document = {
            "file": str(feature_file),
            "complete": store.complete,
            "featlt_version": store.featlt_version,
            "created": store.created,
            "splits": splits,
            "provenance": store.provenance,
        }
    lines = [f"{feature_file}  ({'complete' if store.complete else 'INCOMPLETE'})"]
    for info in splits.values():
        lines.append(
            f"  {info.name:<6} rows {info.n_written}/{info.n_rows}  dim {info.dim}  {info.dtype}"
            f"  views {info.n_views}  logits {info.n_logits}  skipped {info.n_skipped}"
        )
        lines.append(f"         classes {len(info.class_names)}  counts {info.class_counts}")
    lines.append("  provenance: " + json.dumps(store.provenance, indent=2).replace("\n", "\n  "))
    emit(runtime, document, "\n".join(lines))
