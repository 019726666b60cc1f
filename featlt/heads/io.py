"""Saving and loading fitted heads: tensors in safetensors, configuration in JSON.

A head directory holds ``head.safetensors`` (float64 state, exactly as fitted) and ``head.json``
(class, parameters, fitted scalars and whatever the caller adds: provenance, selection,
metrics). Both are written atomically; a reloaded head predicts identically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from featlt import __version__
from featlt.errors import FeatltError
from featlt.heads.base import BaseHead
from featlt.runtime import to_jsonable, write_json_atomic

FORMAT = "featlt-head"
FORMAT_VERSION = 1
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
    """Write a fitted head to ``directory`` (created); ``document`` is merged into head.json."""
    from safetensors.numpy import save_file
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(head)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    config = _export(head, "", tensors)
    target = directory / TENSORS_FILE
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "featlt_version": __version__,
               "head": config, **(document or {})}
    write_json_atomic(directory / CONFIG_FILE, payload)
    return directory


def load_head(directory: str | Path) -> tuple[BaseHead, dict[str, Any]]:
    """Read a head written by :func:`save_head`: ``(head, the head.json document)``."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    config_path, tensor_path = directory / CONFIG_FILE, directory / TENSORS_FILE
    if not config_path.is_file() or not tensor_path.is_file():
        raise FeatltError(
            f"head directory {directory}: needs {CONFIG_FILE} and {TENSORS_FILE}; pass a "
            "directory written by `featlt fit-classifier`"
        )
    try:
        document = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise FeatltError(
            f"head file {config_path}: not valid JSON ({err}); re-fit the head"
        ) from err
    if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
        raise FeatltError(
            f"head file {config_path}: not a featlt head (format {document.get('format')!r}, "
            f"version {document.get('format_version')!r}); re-fit the head"
        )
    return _restore(document["head"], "", load_file(str(tensor_path))), document
