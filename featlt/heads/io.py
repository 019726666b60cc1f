"""Saving and loading fitted heads: tensors in safetensors, configuration in JSON.

A head directory holds ``head.safetensors`` (float64 state, exactly as fitted) and ``head.json``
(class, parameters, fitted scalars, the sha256 of head.safetensors and whatever the caller adds:
provenance, selection, metrics). Both are written atomically (temporary name + rename); a
reloaded head predicts identically, and a changed, truncated or non-finite one is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from featlt import __version__
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256
from featlt.heads.base import BaseHead
from featlt.runtime import atomic_output, to_jsonable, write_json_atomic

FORMAT = "featlt-head"
FORMAT_VERSION = 2  # 2: head.json records the tensors' sha256
TENSORS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"
ARRAY_ATTRS = ("class_counts_", "log_prior_", "scales_", "sub_to_class_")
DICT_ATTRS = ("state_", "preprocess_state_", "router_state_")
SCALAR_ATTRS = ("n_features_in_", "best_epoch_", "n_epochs_", "val_score_", "device_", "history_",
                "split_plan_", "mapping_val_", "reassigned_", "stages_", "views_source_")


def _export(head: BaseHead, prefix: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Collect ``head``'s fitted arrays into ``tensors``; return its JSON description."""
    params = head.get_params(deep=False)
    config: dict[str, Any] = {
        "class": type(head).__name__,
        "params": to_jsonable({k: v for k, v in params.items() if k != "base"}),
        "classes": to_jsonable(np.asarray(head.classes_)),
        "fitted": {k: to_jsonable(getattr(head, k)) for k in SCALAR_ATTRS if hasattr(head, k)},
        "dicts": [attr for attr in DICT_ATTRS if hasattr(head, attr)],
    }
    for attr in ARRAY_ATTRS:
        if hasattr(head, attr):
            tensors[f"{prefix}{attr}"] = np.ascontiguousarray(getattr(head, attr))
    for attr in DICT_ATTRS:
        for key, value in getattr(head, attr, {}).items():
            tensors[f"{prefix}{attr}.{key}"] = np.ascontiguousarray(value)
    if "base" in params:
        config["base"] = _export(head.base_, f"{prefix}base.", tensors)  # type: ignore[attr-defined]
    if hasattr(head, "sub_heads_"):  # composite heads (DLSA stages): one nested head each
        config["sub_heads"] = [_export(sub, f"{prefix}sub{i}.", tensors)
                               for i, sub in enumerate(head.sub_heads_)]  # type: ignore[attr-defined]
    return config


def _restore(config: dict[str, Any], prefix: str, tensors: dict[str, np.ndarray]) -> BaseHead:
    from featlt.heads.registry import HEAD_CLASSES

    cls = HEAD_CLASSES.get(config.get("class", ""))
    if cls is None:
        raise FeatltError(
            f"saved head class {config.get('class')!r}: unknown to featlt {__version__}; "
            "re-fit the head with this version"
        )
    params = dict(config["params"])
    base = _restore(config["base"], f"{prefix}base.", tensors) if "base" in config else None
    if "base" in config:
        params["base"] = base
    try:
        head = cls(**params)
    except TypeError as err:
        raise FeatltError(
            f"saved head class {config['class']}: its parameters do not match featlt "
            f"{__version__} ({err}); re-fit the head with this version"
        ) from err
    head.classes_ = np.asarray(config["classes"])
    for key, value in config["fitted"].items():
        setattr(head, key, value)
    for attr in ARRAY_ATTRS:
        if f"{prefix}{attr}" in tensors:
            setattr(head, attr, tensors[f"{prefix}{attr}"])
    for attr in config["dicts"]:
        start = f"{prefix}{attr}."
        setattr(head, attr, {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)})
    if base is not None:
        head.base_ = base
    if "sub_heads" in config:
        head.sub_heads_ = [_restore(sub, f"{prefix}sub{i}.", tensors)  # type: ignore[attr-defined]
                           for i, sub in enumerate(config["sub_heads"])]
    return head


def save_head(
    head: BaseHead, directory: str | Path, document: dict[str, Any] | None = None
) -> Path:
    """Write a fitted head to ``directory`` (created); ``document`` is merged into head.json.

    head.json, written last, records the sha256 of head.safetensors, so a head whose tensors
    were changed after saving (or whose save did not finish) is refused on load.
    """
    from safetensors.numpy import save_file
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(head)
    directory = Path(directory)
    tensors: dict[str, np.ndarray] = {}
    config = _export(head, "", tensors)
    with atomic_output(directory / TENSORS_FILE, "head file") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        digest = file_sha256(tmp, cached=False)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "featlt_version": __version__,
               "tensors_sha256": digest, "head": config, **(document or {})}
    write_json_atomic(directory / CONFIG_FILE, payload)
    return directory


def load_head(directory: str | Path) -> tuple[BaseHead, dict[str, Any]]:
    """Read a head written by :func:`save_head`: ``(head, the head.json document)``.

    Refuses, naming the file and the fix: a missing, empty, truncated or corrupted file, tensors
    whose sha256 differs from head.json's record, NaN/inf weights, and tensors whose shapes do
    not fit together (checked by scoring one zero row).
    """
    directory = Path(directory)
    config_path, tensor_path = directory / CONFIG_FILE, directory / TENSORS_FILE
    if not config_path.is_file() or not tensor_path.is_file():
        raise FeatltError(
            f"head directory {directory}: needs {CONFIG_FILE} and {TENSORS_FILE}; pass a "
            "directory written by `featlt fit-classifier`"
        )
    document = _read_document(config_path)
    tensors = _read_tensors(tensor_path, document.get("tensors_sha256"))
    try:
        head = _restore(document["head"], "", tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise FeatltError(
            f"head file {config_path}: malformed head description ({err!r}); re-fit the head"
        ) from err
    _check_scores(head, directory)
    return head, document


def _read_document(config_path: Path) -> dict[str, Any]:
    """head.json, checked for format, version and a recorded tensor hash."""
    try:
        document = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FeatltError(
            f"head file {config_path}: not valid JSON ({err}); re-fit the head"
        ) from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise FeatltError(
            f"head file {config_path}: not a featlt head (no format '{FORMAT}'); pass a "
            "directory written by `featlt fit-classifier`"
        )
    if document.get("format_version") != FORMAT_VERSION or "tensors_sha256" not in document:
        raise FeatltError(
            f"head file {config_path}: head format version {document.get('format_version')!r} "
            f"(this featlt reads {FORMAT_VERSION}, which records the tensors' sha256); re-fit "
            "the head with this version"
        )
    return document


def _read_tensors(tensor_path: Path, expected_sha256: str) -> dict[str, np.ndarray]:
    """The tensors of head.safetensors after checking size, sha256, format and finiteness."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if tensor_path.stat().st_size == 0:
        raise FeatltError(
            f"head file {tensor_path}: empty (0 bytes; its save did not finish); re-fit the head"
        )
    if file_sha256(tensor_path, cached=False) != expected_sha256:
        raise FeatltError(
            f"head file {tensor_path}: its sha256 differs from the one recorded in "
            f"{CONFIG_FILE} (changed, truncated or corrupted after saving); restore the file "
            "or re-fit the head"
        )
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise FeatltError(
            f"head file {tensor_path}: not a readable safetensors file ({err}); re-fit the head"
        ) from err
    for name, values in tensors.items():
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            raise FeatltError(
                f"head file {tensor_path}: tensor '{name}' holds NaN or inf values; re-fit the "
                "head (check the features for NaN/inf first)"
            )
    return tensors


def _check_scores(head: BaseHead, directory: Path) -> None:
    """Score one zero row: the tensors must fit together and give (1, C) scores (their values
    are not judged: a zero row may be degenerate for a head; NaN weights are refused before)."""
    n_features = getattr(head, "n_features_in_", None)
    if n_features is None:
        return
    try:
        proba = head.predict_proba(np.zeros((1, int(n_features))))
    except (ValueError, RuntimeError, IndexError, KeyError, TypeError) as err:
        raise FeatltError(
            f"head directory {directory}: its tensors do not fit together ({err}); re-fit "
            "the head"
        ) from err
    if proba.shape != (1, len(head.classes_)):
        raise FeatltError(
            f"head directory {directory}: scores of shape {proba.shape}, not one per class of "
            f"{len(head.classes_)}; re-fit the head"
        )
