"""The feature files a ranking compares: opened, checked to be comparable, deduplicated.

Files must hold the same dataset (their ``data`` provenance agrees, machine-specific paths and
which rows a file holds aside), so that one index view selects the same images in each (a view
needing rows a file lacks is refused when it is resolved); a file whose backbone and settings
repeat an earlier file's is said once and ranked once; full mode needs a test split in every
file (the images the heads are scored on are checked to be the same in
:mod:`featlt.rank.validate_rows`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore, backbone_identity, require_same_provenance

# Data provenance keys that say where a dataset sits on this machine, how a run read it, or which
# of its rows a file holds (a full extraction and a view extraction of one dataset compare),
# not which dataset it is.
MACHINE_DATA_KEYS = frozenset({"path", "uri", "extracted_splits", "layouts", "skip_bad",
                               "limit", "view"})


@dataclass(frozen=True)
class RankInput:
    """One feature file to rank."""

    path: Path
    label: str  # short unique name (the file stem)
    provenance: dict[str, Any] = field(repr=False)
    identity: str  # JSON of what makes two files' features the same (backbone + store settings)
    backbone: dict[str, Any] = field(repr=False)  # the provenance's backbone record
    has_test: bool = False  # the file holds the test split

    @property
    def pretrained(self) -> bool:
        """Whether the features come from trained weights (not random init, not raw pixels)."""
        weights = self.backbone.get("weights") or {}
        source = weights.get("source") if isinstance(weights, dict) else weights
        return source not in (None, "random", "none") and not str(
            self.backbone.get("model", "")).startswith("pixels")

    def describe(self) -> str:
        """The backbone in words: zoo name or timm model, resolution, inner layer."""
        name = self.backbone.get("zoo") or self.backbone.get("model") or self.label
        parts = [str(name)]
        if self.backbone.get("resolution"):
            parts.append(f"{self.backbone['resolution']} px")
        layer = (self.backbone.get("feature") or {}).get("layer")
        if layer and layer != "pre_logits":
            parts.append(f"layer {layer}")
        return ", ".join(parts)


def dataset_record(provenance: dict[str, Any]) -> dict[str, Any]:
    """The part of the data provenance that identifies the images and labels."""
    data = provenance.get("data") or {}
    return {k: v for k, v in data.items() if k not in MACHINE_DATA_KEYS}


def feature_identity(provenance: dict[str, Any]) -> str:
    """JSON of what makes two stores' features the same: backbone identity and store settings."""
    store = provenance.get("store") or {}
    record = {"backbone": backbone_identity(provenance), "dtype": store.get("dtype"),
              "features": store.get("features")}
    return json.dumps(record, sort_keys=True, default=str)


def _unique_labels(paths: list[Path]) -> list[str]:
    labels: list[str] = []
    for path in paths:
        label = path.stem
        while label in labels:
            label = f"{path.parent.name}/{label}"
        labels.append(label)
    return labels


def open_inputs(paths: list[Path], test_split: str, need_test: bool) -> tuple[
    list[RankInput], list[str]
]:
    """Open and check every file; returns the distinct inputs (file order) and notes.

    Raises:
        FeatltError: a file is missing, incomplete or not a feature store; two files hold
            different datasets (the message names the attribute); full mode and a file has no
            test split.
    """
    if not paths:
        raise FeatltError("featlt rank: no feature files given; pass one or more FEATURES.h5")
    inputs: list[RankInput] = []
    notes: list[str] = []
    first: RankInput | None = None
    seen: dict[str, RankInput] = {}
    for path, label in zip(paths, _unique_labels(paths), strict=True):
        with FeatureStore(path) as store:
            provenance = store.provenance
            has_test = test_split in store.splits
        entry = RankInput(path=path, label=label, provenance=provenance,
                          identity=feature_identity(provenance),
                          backbone=provenance.get("backbone") or {}, has_test=has_test)
        if need_test and not has_test:
            raise FeatltError(
                f"feature file {path}: no '{test_split}' split, and --full measures every "
                f"backbone's heads on it; extract the test split (featlt extract --splits "
                f"train,{test_split}) or rank without --full"
            )
        if first is None:
            first = entry
        else:
            require_same_provenance(
                {"data": dataset_record(first.provenance)},
                {"data": dataset_record(provenance)},
                f"feature files {first.path} and {path} hold different datasets, so their "
                "rankings are not comparable",
            )
        if entry.identity in seen:
            notes.append(f"{path} holds the same backbone and settings as "
                         f"{seen[entry.identity].path}: ranked once, as "
                         f"{seen[entry.identity].label}")
            continue
        seen[entry.identity] = entry
        inputs.append(entry)
    if len(inputs) == 1:
        notes.append("a single backbone: there is nothing to compare it with, so the ranking "
                     "only reports its scores")
    return inputs, notes
