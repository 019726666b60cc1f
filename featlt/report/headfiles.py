"""The parts of a head folder the page shows: per-image test predictions and ``head.json``.

Both are checked before use: ``test_predictions.csv`` against the sha256 that summary.json
records for it, ``head.safetensors`` (which holds head.json's long arrays) against the sha256
head.json records. A file that fails is named in the page's "not shown" box.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.file_hash import file_sha256
from featlt.report.model import HeadsResult

PREDICTIONS_FILE = "test_predictions.csv"
HEAD_FILE = "head.json"
TENSORS_FILE = "head.safetensors"


class UnusableFileError(FeatltError):
    """A file of a head folder that cannot be shown: ``path`` and the ``reason``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Predictions:
    """One head's per-image test predictions (``test_predictions.csv``)."""

    labels: np.ndarray  # (n,) int64 true class ids
    predictions: np.ndarray  # (n,) int64 predicted class ids
    confidence: np.ndarray  # (n,) float64 probability of the predicted class


def read_predictions(heads: HeadsResult, name: str) -> Predictions:
    """Head ``name``'s test predictions, checked against summary.json's sha256.

    Raises:
        UnusableFileError: the file is missing, changed since it was written, or malformed.
    """
    path = heads.head_dir(name) / PREDICTIONS_FILE
    if not path.is_file():
        path = Path(str(heads.heads[name].get("test_predictions") or path))
    if not path.is_file():
        raise UnusableFileError(path, f"missing (head {name}'s test predictions)")
    expected = heads.heads[name].get("test_predictions_sha256")
    if expected is not None and file_sha256(path, cached=False) != expected:
        raise UnusableFileError(path, "changed after it was written (its sha256 differs from "
                                      "the one summary.json records); run `featlt "
                                      "fit-classifier` again")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
        predictions = np.array([int(row["prediction"]) for row in rows], dtype=np.int64)
        confidence = np.array([float(row["confidence"]) for row in rows], dtype=np.float64)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as err:
        raise UnusableFileError(path, "not a test predictions file with columns label, "
                                      f"prediction, confidence ({err!r}); run `featlt "
                                      "fit-classifier` again") from err
    return Predictions(labels, predictions, confidence)


def read_head_fields(heads: HeadsResult, name: str) -> dict[str, Any]:
    """Head ``name``'s ``head.json`` with every ``{"$tensor": key}`` reference replaced by the
    array stored in ``head.safetensors`` (as a list).

    Raises:
        UnusableFileError: a file is missing, unreadable or changed since it was written.
    """
    folder = heads.head_dir(name)
    path = folder / HEAD_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnusableFileError(path, f"unreadable or not valid JSON ({err})") from err
    if not isinstance(document, dict):
        raise UnusableFileError(path, "not a featlt head file")
    if "$tensor" not in json.dumps(document):
        return document
    tensors_path = folder / TENSORS_FILE
    if not tensors_path.is_file() or file_sha256(tensors_path, cached=False) != document.get(
            "tensors_sha256"):
        raise UnusableFileError(tensors_path, "missing or changed after it was written (its "
                                              f"sha256 differs from the one {HEAD_FILE} records)")
    from safetensors.numpy import load_file

    tensors = load_file(str(tensors_path))
    return _resolved(document, tensors)


def _resolved(value: Any, tensors: dict[str, np.ndarray]) -> Any:
    """``value`` with dense tensor references replaced by lists, NaN by None (sparse ones left
    as they are: the page shows none of them)."""
    if isinstance(value, dict):
        key = value.get("$tensor")
        if isinstance(key, str) and "layout" not in value and key in tensors:
            array = tensors[key]
            if array.dtype.kind != "f":
                return array.tolist()
            listed = array.astype(object)
            listed[np.isnan(array)] = None
            return listed.tolist()
        return {k: _resolved(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, tensors) for v in value]
    return value
