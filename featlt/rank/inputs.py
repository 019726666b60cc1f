"""The feature files a ranking compares: opened, checked to be comparable, deduplicated.

Files must hold the same dataset (their ``data`` provenance agrees, machine-specific paths
aside) so that one index view selects the same rows in each; a file whose backbone and settings
repeat an earlier file's is said once and ranked once; full mode needs a test split holding the
same images in every file, because the backbones are compared image by image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.store.feature_store import FeatureStore, backbone_identity, require_same_provenance

# Data provenance keys that say where a dataset sits on this machine or how a run read it,
# not which images it holds.
MACHINE_DATA_KEYS = frozenset({"path", "uri", "extracted_splits", "layouts", "skip_bad"})


@dataclass(frozen=True)
class RankInput:
    """One feature file to rank."""

    path: Path
    label: str  # short unique name (the file stem)
    provenance: dict[str, Any] = field(repr=False)
    identity: str  # JSON of what makes two files' features the same (backbone + store settings)
    backbone: dict[str, Any] = field(repr=False)  # the provenance's backbone record
    test_index: np.ndarray | None = field(repr=False)  # (n_test,) source positions; None: no test

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


def _identity(provenance: dict[str, Any]) -> str:
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
            test split, or test splits of different images.
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
            test_index = (store.source_index(test_split) if test_split in store.splits
                          else None)
        entry = RankInput(path=path, label=label, provenance=provenance,
                          identity=_identity(provenance),
                          backbone=provenance.get("backbone") or {}, test_index=test_index)
        if need_test and test_index is None:
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
            if need_test:
                _require_same_test_images(first, entry, test_split)
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


def _require_same_test_images(first: RankInput, other: RankInput, test_split: str) -> None:
    a, b = first.test_index, other.test_index
    if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
        raise FeatltError(
            f"feature files {first.path} and {other.path}: their '{test_split}' splits hold "
            "different images, so the backbones cannot be compared image by image; extract "
            "both from the same test rows"
        )
