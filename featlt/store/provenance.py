"""Provenance records compared: which attribute of two records differs, and backbone identity."""

from __future__ import annotations

import json
from typing import Any

from featlt.errors import ProvenanceMismatchError

# Provenance keys that describe the run rather than the features; they may differ on resume.
VOLATILE_PROVENANCE_KEYS = frozenset({"run"})
# Values added to provenance later, that a record written before them lacks: the feature
# extractor's parameter count (derived from the rest of the record) and where JPEGs were decoded
# (before it was recorded always on the CPU). A record that lacks one still matches a record
# that has it.
DERIVED_PROVENANCE_KEYS = frozenset({"backbone.feature.params", "decode_path"})


def provenance_diff(
    a: dict[str, Any], b: dict[str, Any], ignore: frozenset[str] = VOLATILE_PROVENANCE_KEYS
) -> list[str]:
    """Dotted keys whose values differ between two provenance records (ignored keys skipped)."""
    diffs: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if not prefix and key in ignore:
                    continue
                walk(x.get(key), y.get(key), f"{prefix}.{key}" if prefix else key)
        elif x != y and not (prefix in DERIVED_PROVENANCE_KEYS and None in (x, y)):
            diffs.append(prefix)

    walk(json.loads(json.dumps(a)), json.loads(json.dumps(b)), "")
    return diffs


def require_same_provenance(
    a: dict[str, Any], b: dict[str, Any], what: str, keys: tuple[str, ...] | None = None
) -> None:
    """Raise :class:`ProvenanceMismatchError` naming the first differing attribute.

    Args:
        keys: compare only these top-level keys (e.g. ``("backbone",)``); all but volatile if None.
    """
    if keys is not None:
        a = {k: a.get(k) for k in keys}
        b = {k: b.get(k) for k in keys}
    diffs = provenance_diff(a, b)
    if diffs:
        key = diffs[0]
        raise ProvenanceMismatchError(
            f"{what}: provenance differs at '{key}' ({_lookup(a, key)!r} vs {_lookup(b, key)!r})"
            + (f" and {len(diffs) - 1} more attribute(s)" if len(diffs) > 1 else "")
            + "; use matching settings or write a new file"
        )


# Backbone provenance fields that say where and how a backbone ran, not what it computes.
RUN_DEPENDENT_BACKBONE_KEYS = frozenset({"device", "precision", "channels_last", "forward", "zoo"})


def backbone_identity(provenance: dict[str, Any]) -> dict[str, Any]:
    """What makes features of two runs the same kind of features.

    The backbone record without where or at which precision it ran, and its weights identified
    by their tensors' hash alone (the same tensors from a zoo package or a file are the same
    weights). Heads trained on CPU features apply to CUDA features of the same backbone. A
    combined store's record (:mod:`featlt.store.members`) keeps its recipe and each member's
    identity, store settings and digest.
    """
    record = provenance.get("backbone") or {}
    if isinstance(record.get("members"), list):
        return {**record, "members": [
            {**member, "backbone": backbone_identity({"backbone": member.get("backbone")})}
            for member in record["members"]]}
    backbone = {k: v for k, v in record.items() if k not in RUN_DEPENDENT_BACKBONE_KEYS}
    weights = backbone.get("weights")
    if isinstance(weights, dict) and "tensors_sha256" in weights:
        backbone["weights"] = {"tensors_sha256": weights["tensors_sha256"]}
    return backbone


# Data provenance keys that say where a dataset sits on this machine, how a run read it, or which
# of its rows a file holds (a full extraction and a view extraction of one dataset compare),
# not which dataset it is.
MACHINE_DATA_KEYS = frozenset({"path", "uri", "extracted_splits", "layouts", "skip_bad",
                               "limit", "view"})


def dataset_record(provenance: dict[str, Any]) -> dict[str, Any]:
    """The part of the data provenance that identifies the images and labels."""
    data = provenance.get("data") or {}
    return {k: v for k, v in data.items() if k not in MACHINE_DATA_KEYS}


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
