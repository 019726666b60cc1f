"""``featlt info FILE.h5``: splits, counts, dtype, views, provenance, completeness, the sources
of a joined store (and the shards its join recorded), the members of a combined store and
(``--verify``) whether every block digest matches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from featlt.cli import emit, featlt_command, main
from featlt.cli.option_types import InputPath
from featlt.errors import FeatltError
from featlt.runtime import Runtime


@main.command("info")
@click.argument("feature_file", type=InputPath())
@click.option("--verify", "verify_all", is_flag=True,
              help="Check the digest of every block of every array (reads the whole file).")
@featlt_command
def info_command(runtime: Runtime, feature_file: Path, verify_all: bool) -> None:
    """Describe a feature store (incomplete files too, marked as such)."""
    from featlt.store import verification
    from featlt.store.feature_store import FeatureStore
    from featlt.store.joined import recorded_shards

    if verify_all and not verification.default():
        raise FeatltError("info --verify --no-verify: the options contradict each other; "
                          "pass one of them")
    with FeatureStore(feature_file, allow_incomplete=True) as store:
        splits = {name: store.info(name) for name in store.splits}
        sources = {name: [{"rows": [m.start, m.stop], "file": str(m.file),
                           "file_as_stored": m.file_name, "dataset": m.dataset,
                           "source_rows": [m.source_start, m.source_start + m.stop - m.start]}
                          for m in mappings]
                   for name, mappings in store.sources().items()}
        began = time.perf_counter()
        checks = store.verify_all() if verify_all else None
        seconds = time.perf_counter() - began
        verification_record = _verification(store.schema_version, store.verify, checks, seconds)
        document = {
            "file": str(feature_file),
            "complete": store.complete,
            "featlt_version": store.featlt_version,
            "schema_version": store.schema_version,
            "created": store.created,
            "splits": splits,
            "virtual_sources": sources,
            "members": _members(store.provenance),
            "verification": verification_record,
            "provenance": store.provenance,
        }
    lines = [f"{feature_file}  ({'complete' if store.complete else 'INCOMPLETE'})  schema "
             f"{store.schema_version}"]
    for info in splits.values():
        lines.append(
            f"  {info.name:<6} rows {info.n_written}/{info.n_rows}  dim {info.dim}  {info.dtype}"
            f"  views {info.n_views}  logits {info.n_logits}  skipped {info.n_skipped}"
        )
        lines.append(f"         classes {len(info.class_names)}  counts {info.class_counts}")
    if document["members"]:
        lines.append(f"  combined store of {len(document['members'])} members: " + " + ".join(
            _describe_member(m) for m in document["members"]))
    if sources:
        lines.append("  virtual arrays, read from these source stores:")
        for name, mappings in store.sources().items():
            lines += [f"    {name} {m.describe()}" for m in mappings]
    shards = recorded_shards(store.provenance)
    if shards:
        lines.append(f"  joined from {len(shards)} shards (" + ", ".join(
            f"rank {s['rank']} {s['file']}" for s in shards) + "); every source's digest "
            "tables match the join record")
    lines.append("  " + verification_record["text"])
    lines.append("  provenance: " + json.dumps(store.provenance, indent=2).replace("\n", "\n  "))
    emit(runtime, document, "\n".join(lines))


def _verification(schema: int, verify: bool, checks: list[Any] | None,
                  seconds: float) -> dict[str, Any]:
    """What was verified, as a record with a one-line ``text``."""
    if schema < 2:
        return {"digests": False, "checked": False,
                "text": "digests: none (schema 1: written before featlt kept block digests), "
                        "nothing can be verified; re-extract with `featlt extract ... "
                        "--overwrite` to get them"}
    if checks is None:
        text = ("digests: present, checked as blocks are read; --verify checks them all"
                if verify else "digests: present, not checked (--no-verify)")
        return {"digests": True, "checked": False, "text": text}
    blocks = sum(c.blocks for c in checks)
    size = sum(c.bytes for c in checks)
    unchecked = sum(c.unchecked_rows for c in checks)
    joined = sum(1 for c in checks if c.sources)
    text = (f"verified: every block digest matches ({blocks} blocks of {len(checks)} arrays, "
            f"{size / 2**20:.1f} MiB, {seconds:.2f} s"
            + (f"; {joined} virtual arrays checked in their source stores" if joined else "")
            + (f"; {unchecked} rows of blocks still being written not checked" if unchecked
               else "") + ")")
    return {"digests": True, "checked": True, "blocks": blocks, "bytes": size,
            "seconds": round(seconds, 3), "unchecked_rows": unchecked,
            "arrays": checks, "text": text}


def _members(provenance: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Each member of a combined store (backbone, resolution, layer, width), or None for a
    store of one backbone."""
    from featlt.store.members import is_combined, members_of

    if not is_combined(provenance):
        return None
    out = []
    for member in members_of(provenance):
        backbone = member["backbone"]
        feature = backbone.get("feature") or {}
        out.append({"backbone": backbone.get("zoo") or backbone.get("model"),
                    "resolution": backbone.get("resolution"), "layer": feature.get("layer"),
                    "width": feature.get("dim")})
    return out


def _describe_member(member: dict[str, Any]) -> str:
    """``name, R px, layer L, width D`` (parts not recorded left out)."""
    parts = [str(member["backbone"])]
    if member["resolution"]:
        parts.append(f"{member['resolution']} px")
    if member["layer"]:
        parts.append(f"layer {member['layer']}")
    if member["width"] is not None:
        parts.append(f"width {member['width']}")
    return ", ".join(parts)
