"""What ``featlt report`` read: one dataclass per kind of result, and the files it could not use.

A leaf of :mod:`featlt.report`: every other module of the package imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Dataset:
    """The data a result was computed on: the source and the index view (profile, imbalance
    factor) read from it. Results of different datasets are never put in one table."""

    key: str  # what makes two results comparable: the data fingerprint and the view's protocol
    name: str  # the source in words, e.g. "digits" or "cifar10:/data/cifar"
    view: str  # the view in words, e.g. "cao2019, IF 10"


def dataset_of(features: dict[str, Any], view: dict[str, Any] | None) -> Dataset:
    """The :class:`Dataset` of a result from its features' provenance and its view record."""
    data = features.get("data") or features.get("dataset") or {}  # "dataset": synthetic stores
    protocol = (view or {}).get("protocol") or {}
    fingerprint = data.get("sha256") or json.dumps(data, sort_keys=True, default=str)
    key = json.dumps([fingerprint, protocol], sort_keys=True, default=str)
    name = str(data.get("uri") or data.get("name") or data.get("scheme") or data.get("origin")
               or "unknown data")
    parts = [str(protocol["profile"])] if protocol.get("profile") else []
    if protocol.get("imbalance_factor") is not None:
        parts.append(f"IF {protocol['imbalance_factor']:g}")
    return Dataset(key=key, name=name, view=", ".join(parts) or "as stored")


@dataclass
class RankResult:
    """A ``featlt rank`` JSON document (kind ``featlt.rank``)."""

    path: Path
    dataset: Dataset
    document: dict[str, Any] = field(repr=False)


@dataclass
class HeadsResult:
    """A ``fit-classifier`` output folder: its ``summary.json`` and head folders."""

    path: Path  # the summary.json
    dataset: Dataset
    backbone: str  # the feature file's stem, as ``featlt rank`` labels it
    summary: dict[str, Any] = field(repr=False)

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.summary.get("class_names") or []]

    @property
    def train_counts(self) -> list[int]:
        """(C,) training count of each class in the view the heads were fitted on."""
        view = (self.summary.get("provenance") or {}).get("view") or {}
        return [int(c) for c in view.get("train_class_counts") or []]

    @property
    def heads(self) -> dict[str, dict[str, Any]]:
        """head name -> its row of summary.json (test metrics, validation, paths)."""
        return self.summary.get("heads") or {}

    def head_dir(self, name: str) -> Path:
        """The folder of head ``name``: beside summary.json when it is there (a moved output
        folder), else the path summary.json records."""
        local = self.path.parent / name
        return local if local.is_dir() else Path(self.heads[name].get("dir") or local)

    def best_head(self) -> str | None:
        """The head with the best validation balanced accuracy (first in order on ties), the
        rule ``featlt rank`` uses to pick a backbone's head."""
        best, best_value = None, float("-inf")
        for name, row in self.heads.items():
            value = row.get("val_balanced_accuracy")
            if isinstance(value, (int, float)) and value > best_value:
                best, best_value = name, float(value)
        return best


@dataclass
class SeparabilityResult:
    """One backbone's ``evaluate-separability`` report (kind ``featlt.separability.evaluate``),
    from a report file or embedded in a rank document."""

    path: Path
    dataset: Dataset
    backbone: str
    report: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class NotShown:
    """A result file (or part of one) the page leaves out, and why."""

    path: Path
    reason: str


@dataclass
class DatasetResults:
    """Every result of one dataset, in the order the page shows them."""

    dataset: Dataset
    ranks: list[RankResult] = field(default_factory=list)
    heads: dict[str, HeadsResult] = field(default_factory=dict)  # backbone -> its heads
    separability: dict[str, SeparabilityResult] = field(default_factory=dict)

    def backbones(self) -> list[str]:
        """Every backbone of the dataset: in the ranking's order first, then as found."""
        order: list[str] = []
        for rank in self.ranks:
            order += [str(row["label"]) for row in rank.document.get("rows") or []]
        order += list(self.separability) + list(self.heads)
        return list(dict.fromkeys(order))


@dataclass
class Results:
    """Everything ``featlt report`` found, by dataset, and what it could not use."""

    datasets: list[DatasetResults] = field(default_factory=list)
    not_shown: list[NotShown] = field(default_factory=list)

    def usable(self) -> bool:
        return any(d.ranks or d.heads or d.separability for d in self.datasets)
