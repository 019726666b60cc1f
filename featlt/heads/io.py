"""Saving and loading fitted heads: tensors in safetensors, configuration in JSON, one seal.

A head directory holds ``head.safetensors`` and ``head.json``:

- ``head.safetensors``: the fitted float64 state exactly as fitted, and every numeric array of
  the document with more than :data:`INLINE_MAX` numbers (per-class counts, recalls, shot groups,
  the confusion matrix, numeric class labels ...) under ``document/<JSON pointer>``; head.json
  holds ``{"$tensor": "document/<JSON pointer>"}`` in its place, so a 10,000-class head's
  head.json stays small. Class names stay in JSON.
- ``head.json``: class, parameters (preprocessing, temperature, wrapper settings), classes,
  fitted scalars, whatever the caller adds (provenance, selection, metrics), ``tensors_sha256``
  (the sha256 of head.safetensors) and ``head_sha256``: the sha256 of the canonical JSON of
  every other field of head.json, ``tensors_sha256`` included. So the seal covers everything
  that shapes a prediction, in both files.

Both files are written atomically (temporary name + rename). :func:`load_head` refuses, naming
the file and the fix: a head of another format version, a missing seal, an edited head.json,
changed tensors, NaN weights and tensors that do not fit together. The seal detects accidents
and edits; it is not a signature (anyone can recompute it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from featlt import __version__
from featlt.errors import FeatltError
from featlt.file_hash import file_sha256
from featlt.heads.base import BaseHead
from featlt.runtime import atomic_output, to_jsonable, write_json_atomic

FORMAT = "featlt-head"
# 2: head.json records the tensors' sha256.
# 3: head.json is sealed (head_sha256 over its canonical JSON and the tensors' sha256); numeric
#    arrays of more than INLINE_MAX numbers live in head.safetensors.
FORMAT_VERSION = 3
TENSORS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"
SEAL_KEY = "head_sha256"
TENSORS_KEY = "tensors_sha256"
#: Numeric arrays of head.json with more numbers than this are stored in head.safetensors.
INLINE_MAX = 32
DOCUMENT_PREFIX = "document"
REFERENCE = "$tensor"
ARRAY_ATTRS = ("class_counts_", "log_prior_", "scales_", "sub_to_class_")
DICT_ATTRS = ("state_", "preprocess_state_", "router_state_")
SCALAR_ATTRS = ("n_features_in_", "best_epoch_", "n_epochs_", "val_score_", "device_", "history_",
                "split_plan_", "mapping_val_", "reassigned_", "stages_", "views_source_")
REFIT = "re-fit the head with this featlt (`featlt fit-classifier`)"


def canonical_sha256(document: dict[str, Any], exclude: str) -> str:
    """sha256 of ``document``'s canonical JSON (sorted keys, no spaces), without key ``exclude``.

    The same value before writing and after a JSON round trip (floats are written by repr).
    """
    body = {k: v for k, v in document.items() if k != exclude}
    text = json.dumps(to_jsonable(body), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(document: dict[str, Any], key: str) -> dict[str, Any]:
    """``document`` with ``key`` set to the sha256 of its canonical JSON (``key`` left out)."""
    plain = to_jsonable(document)
    plain[key] = canonical_sha256(plain, key)
    return plain


def seal_problem(document: dict[str, Any], key: str) -> str | None:
    """Why ``document``'s seal ``key`` does not hold (None when it does)."""
    if key not in document:
        return f"it records no {key}: the file was edited or not written by featlt"
    if document[key] != canonical_sha256(document, key):
        return "it was changed after it was written (its content no longer matches its " \
               f"{key})"
    return None


def _pointer(path: tuple[str, ...]) -> str:
    """A JSON-pointer-like tensor name: ``document/metrics/test/confusion_matrix``."""
    return "/".join([DOCUMENT_PREFIX, *(p.replace("~", "~0").replace("/", "~1") for p in path)])


def _numeric_array(value: list[Any]) -> np.ndarray | None:
    """``value`` as an int64 or float64 array (None -> NaN) when it is a rectangular list of
    numbers (bools and strings excluded), else None."""
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):  # ragged, or an int beyond int64
        return None
    if array.dtype == object and array.ndim == 1 and any(v is None for v in value):
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                   for v in value):
            return None
        array = np.array([np.nan if v is None else v for v in value], dtype=np.float64)
    if array.dtype.kind == "i":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        return array.astype(np.float64)
    return None


def _narrow_int(array: np.ndarray) -> np.ndarray:
    """The smallest signed integer dtype that holds ``array`` exactly."""
    if array.size == 0:
        return array.astype(np.int8)
    low, high = int(array.min()), int(array.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return array.astype(dtype)
    return array


def _externalize(value: Any, path: tuple[str, ...], tensors: dict[str, np.ndarray]) -> Any:
    """``value`` (plain JSON) with every numeric array of more than :data:`INLINE_MAX` numbers
    moved into ``tensors`` and replaced by a reference.

    Integer matrices (2-D) are stored as coordinates and counts of their non-zero entries
    (``.rows``, ``.cols``, ``.values``): a C x C confusion matrix holds at most one non-zero per
    test image, so it stays small at 10,000 classes.
    """
    if isinstance(value, dict):
        return {k: _externalize(v, (*path, str(k)), tensors) for k, v in value.items()}
    if not isinstance(value, list):
        return value
    array = _numeric_array(value) if value else None
    if array is None or array.size <= INLINE_MAX or array.ndim == 0:
        return [_externalize(v, (*path, str(i)), tensors) for i, v in enumerate(value)]
    name = _pointer(path)
    if array.dtype.kind == "i" and array.ndim == 2:
        rows, cols = np.nonzero(array)
        tensors[f"{name}.rows"] = _narrow_int(rows.astype(np.int64))
        tensors[f"{name}.cols"] = _narrow_int(cols.astype(np.int64))
        tensors[f"{name}.values"] = _narrow_int(array[rows, cols])
        return {REFERENCE: name, "layout": "coo", "shape": list(array.shape)}
    tensors[name] = _narrow_int(array) if array.dtype.kind == "i" else array
    return {REFERENCE: name}


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(REFERENCE), str)


def _resolve(value: Any, tensors: dict[str, np.ndarray], plain: bool) -> Any:
    """``value`` with every reference replaced by its array.

    Args:
        plain: give the JSON value back (lists, NaN as None), as the head configuration needs;
            otherwise numpy arrays (int64 or float64), and a ``scipy.sparse.coo_array`` for an
            integer matrix (``.toarray()`` for dense).
    Raises:
        KeyError: a reference names a tensor the file lacks.
    """
    if isinstance(value, list):
        return [_resolve(v, tensors, plain) for v in value]
    if not isinstance(value, dict):
        return value
    if not _is_reference(value):
        return {k: _resolve(v, tensors, plain) for k, v in value.items()}
    name = value[REFERENCE]
    if value.get("layout") == "coo":
        from scipy.sparse import coo_array

        shape = tuple(int(n) for n in value["shape"])
        matrix = coo_array((tensors[f"{name}.values"].astype(np.int64),
                            (tensors[f"{name}.rows"].astype(np.int64),
                             tensors[f"{name}.cols"].astype(np.int64))), shape=shape)
        return matrix.toarray().tolist() if plain else matrix
    array = tensors[name]
    array = array.astype(np.int64) if array.dtype.kind == "i" else array
    return to_jsonable(array) if plain else array


def _describe(estimator: BaseHead) -> dict[str, Any]:
    """The JSON description of an unfitted estimator parameter (DLSA's ``stage_head``):
    ``{"class", "params"}``, estimator-valued parameters nested under ``"estimators"``."""
    params = estimator.get_params(deep=False)
    nested = {k: _describe(v) for k, v in params.items() if isinstance(v, BaseHead)}
    description: dict[str, Any] = {
        "class": type(estimator).__name__,
        "params": to_jsonable({k: v for k, v in params.items() if k not in nested}),
    }
    if nested:
        description["estimators"] = nested
    return description


def _build(description: dict[str, Any]) -> BaseHead:
    """The unfitted estimator :func:`_describe` described."""
    cls = _head_class(description)
    params = dict(description["params"])
    params.update({k: _build(v) for k, v in description.get("estimators", {}).items()})
    return _construct(cls, description["class"], params)


def _head_class(config: dict[str, Any]) -> Any:
    from featlt.heads.registry import HEAD_CLASSES

    cls = HEAD_CLASSES.get(config.get("class", ""))
    if cls is None:
        raise FeatltError(
            f"saved head class {config.get('class')!r}: unknown to featlt {__version__}; "
            "re-fit the head with this version"
        )
    return cls


def _construct(cls: Any, name: str, params: dict[str, Any]) -> BaseHead:
    try:
        return cls(**params)
    except TypeError as err:
        raise FeatltError(
            f"saved head class {name}: its parameters do not match featlt "
            f"{__version__} ({err}); re-fit the head with this version"
        ) from err


def _upgrade_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters saved by an older featlt in today's form.

    A DLSAHead saved before issue 17 named its stage family (``final_head``, a registry name,
    with ``head_params``); it now takes the head itself (``stage_head``), built here from the
    name as the registry builds it. The fitted stage heads are
    saved in full, so predictions do not depend on this; ``stage_head`` only matters to a re-fit.
    """
    if name != "DLSAHead" or "final_head" not in params:
        return params
    from featlt.heads.registry import head_spec

    params = dict(params)
    family = params.pop("final_head")
    params["stage_head"] = head_spec(family).build(**(params.pop("head_params", None) or {}))
    return params


def _export(head: BaseHead, prefix: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Collect ``head``'s fitted arrays into ``tensors``; return its JSON description.

    An unfitted estimator parameter (DLSA's ``stage_head``) is described under
    ``"estimators"``; a fitted ``base`` (post-hoc wrappers) is exported in full under ``"base"``.
    """
    params = head.get_params(deep=False)
    estimators = {k: _describe(v) for k, v in params.items()
                  if k != "base" and isinstance(v, BaseHead)}
    config: dict[str, Any] = {
        "class": type(head).__name__,
        "params": to_jsonable({k: v for k, v in params.items()
                               if k != "base" and k not in estimators}),
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
    if estimators:
        config["estimators"] = estimators
    if "base" in params:
        config["base"] = _export(head.base_, f"{prefix}base.", tensors)  # type: ignore[attr-defined]
    if hasattr(head, "sub_heads_"):  # composite heads (DLSA stages): one nested head each
        config["sub_heads"] = [_export(sub, f"{prefix}sub{i}.", tensors)
                               for i, sub in enumerate(head.sub_heads_)]  # type: ignore[attr-defined]
    return config


def _restore(config: dict[str, Any], prefix: str, tensors: dict[str, np.ndarray]) -> BaseHead:
    cls = _head_class(config)
    params = _upgrade_params(config["class"], dict(config["params"]))
    params.update({k: _build(v) for k, v in config.get("estimators", {}).items()})
    base = _restore(config["base"], f"{prefix}base.", tensors) if "base" in config else None
    if "base" in config:
        params["base"] = base
    head = _construct(cls, config["class"], params)
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

    Numeric arrays of the configuration and the document with more than :data:`INLINE_MAX`
    numbers go into head.safetensors. head.json, written last, records ``tensors_sha256`` and
    ``head_sha256`` (module docstring), so a head whose files were changed after saving, or whose
    save did not finish, is refused on load.

    Raises:
        FeatltError: a file cannot be written (disk full, permissions ...), naming it, the cause
            and the fix; nothing is left half-written.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(head)
    directory = Path(directory)
    tensors: dict[str, np.ndarray] = {}
    config = _export(head, "", tensors)
    payload = to_jsonable({"format": FORMAT, "format_version": FORMAT_VERSION,
                           "featlt_version": __version__, "head": config, **(document or {})})
    payload = {k: (v if k in ("format", "format_version", "featlt_version")
                   else _externalize(v, (k,), tensors)) for k, v in payload.items()}
    with atomic_output(directory / TENSORS_FILE, "head file") as tmp:
        _save_tensors(tensors, tmp)
        payload[TENSORS_KEY] = file_sha256(tmp, cached=False)
    write_json_atomic(directory / CONFIG_FILE, seal(payload, SEAL_KEY))
    return directory


def _save_tensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """safetensors' ``save_file``, its I/O errors raised as the ``OSError`` they are.

    safetensors reports a failed write (a full disk, a file-size limit) as ``SafetensorError(
    "... I/O error: No space left on device (os error 28)")``; as an ``OSError`` with that errno
    and the file's name, :func:`featlt.runtime.atomic_output` turns it into the clear write
    error (the file, the cause, the fix) and removes the unfinished file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    try:
        save_file(tensors, str(path), metadata={"format": FORMAT})
    except SafetensorError as err:
        found = re.search(r"os error (\d+)|code: (\d+)", str(err))
        if found is None:
            raise
        code = int(found.group(1) or found.group(2))
        raise OSError(code, os.strerror(code), str(path)) from err


def load_head(directory: str | Path) -> tuple[BaseHead, dict[str, Any]]:
    """Read a head written by :func:`save_head`: ``(head, the head.json document)``.

    In the returned document every array stored in head.safetensors is back in its place, as a
    numpy array (int64 or float64, NaN where head.json had null) or, for an integer matrix such
    as ``metrics.test.confusion_matrix``, a ``scipy.sparse.coo_array`` (``.toarray()``).

    Refuses, naming the file and the fix: a missing, empty, truncated or corrupted file; a
    head.json of another format version, without its seal, or edited after saving; tensors whose
    sha256 differs from head.json's record; NaN/inf weights; tensors whose shapes do not fit
    together (checked by scoring one zero row).
    """
    directory = Path(directory)
    config_path, tensor_path = directory / CONFIG_FILE, directory / TENSORS_FILE
    if not config_path.is_file() or not tensor_path.is_file():
        raise FeatltError(
            f"head directory {directory}: needs {CONFIG_FILE} and {TENSORS_FILE}; pass a "
            "directory written by `featlt fit-classifier`"
        )
    document = _read_document(config_path)
    tensors = _read_tensors(tensor_path, document[TENSORS_KEY])
    try:
        config = _resolve(document["head"], tensors, plain=True)
        resolved = {k: (config if k == "head" else _resolve(v, tensors, plain=False))
                    for k, v in document.items()}
        head = _restore(config, "", tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise FeatltError(
            f"head file {config_path}: malformed head description ({err!r}); {REFIT}"
        ) from err
    _check_scores(head, directory)
    return head, resolved


def _read_document(config_path: Path) -> dict[str, Any]:
    """head.json, checked for format, version and an intact seal."""
    try:
        document = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FeatltError(
            f"head file {config_path}: not valid JSON ({err}); {REFIT}"
        ) from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise FeatltError(
            f"head file {config_path}: not a featlt head (no format '{FORMAT}'); pass a "
            "directory written by `featlt fit-classifier`"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        older = isinstance(version, int) and version < FORMAT_VERSION
        raise FeatltError(
            f"head file {config_path}: head format version {version!r}, written by "
            + ("an older featlt whose head.json is not sealed (edits to its preprocessing, "
               "temperature or classes would go unnoticed)" if older else
               f"another featlt ({document.get('featlt_version')})")
            + f"; this featlt ({__version__}) reads version {FORMAT_VERSION}; {REFIT}"
        )
    for key in (TENSORS_KEY, SEAL_KEY):
        if not isinstance(document.get(key), str):
            raise FeatltError(
                f"head file {config_path}: it records no {key}: the file was edited or not "
                f"written by featlt, so its content cannot be checked; {REFIT}"
            )
    problem = seal_problem(document, SEAL_KEY)
    if problem is not None:
        raise FeatltError(
            f"head file {config_path}: {CONFIG_FILE} was edited after saving ({problem}); "
            "its preprocessing, temperature, classes and settings shape every prediction, so "
            f"an edited head is not applied; restore the file or {REFIT}"
        )
    return document


def _read_tensors(tensor_path: Path, expected_sha256: str) -> dict[str, np.ndarray]:
    """The tensors of head.safetensors after checking size, sha256, format and finiteness."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if tensor_path.stat().st_size == 0:
        raise FeatltError(
            f"head file {tensor_path}: empty (0 bytes; its save did not finish); {REFIT}"
        )
    if file_sha256(tensor_path, cached=False) != expected_sha256:
        raise FeatltError(
            f"head file {tensor_path}: its sha256 differs from the one recorded in "
            f"{CONFIG_FILE} (changed, truncated or corrupted after saving); restore the file "
            f"or {REFIT}"
        )
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise FeatltError(
            f"head file {tensor_path}: not a readable safetensors file ({err}); {REFIT}"
        ) from err
    for name, values in tensors.items():
        if name.startswith(f"{DOCUMENT_PREFIX}/"):  # metrics may hold NaN (an absent class)
            continue
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
