"""What ``featlt fit-classifier`` and ``featlt predict`` do, as library functions.

:func:`fit_classifiers` reads a feature store through an index view, selects every requested
head on validation, evaluates each on the test split once at the end, saves each head
(safetensors + JSON with config, provenance, selection and metrics) and a ``summary.json``.
:func:`predict_features` applies a saved head to a feature file of the same backbone.
"""

from __future__ import annotations

import csv
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featlt.errors import FeatltError
from featlt.heads.io import load_head, save_head, seal
from featlt.heads.registry import head_spec, list_heads
from featlt.runtime import atomic_output, to_jsonable, write_json_atomic

if TYPE_CHECKING:
    from featlt.store.feature_store import FeatureStore

SUMMARY_FILE = "summary.json"
#: summary.json's seal: the sha256 of its canonical JSON without this key
#: (:func:`featlt.heads.io.canonical_sha256`); each head's row also records its
#: ``test_predictions_sha256``, so ``featlt rank --full`` reuses neither edited.
SUMMARY_SEAL_KEY = "summary_sha256"
# Per head: one row per test image (row, label, prediction, confidence), so that intervals over
# test images can be bootstrapped later (featlt rank pairs backbones on these rows).
TEST_PREDICTIONS_FILE = "test_predictions.csv"


def expand_head_names(names: tuple[str, ...] | list[str]) -> list[str]:
    """``all`` -> every registered head; duplicates dropped, order kept; unknown names refused."""
    out: list[str] = []
    for name in names or ("all",):
        for item in list_heads() if name == "all" else [name]:
            head_spec(item)
            if item not in out:
                out.append(item)
    return out


def fit_classifiers(
    feature_file: str | Path,
    heads: list[str] | tuple[str, ...],
    out_dir: str | Path,
    protocol: Any = None,
    device: str = "auto",
    seed: int = 0,
    n_bootstrap: int = 1000,
    overrides: dict[str, Any] | None = None,
    memory_budget_mb: float | None = None,
) -> dict[str, Any]:
    """Fit, select (validation only), evaluate (test, once) and save the named heads.

    Args:
        feature_file: a complete feature store.
        heads: registry names or ``all``.
        out_dir: receives ``<head>/head.safetensors``, ``<head>/head.json``,
            ``<head>/test_predictions.csv`` and ``summary.json``.
        protocol: :class:`featlt.data.protocol.Protocol` (profile, imbalance factor, validation
        source).
        overrides: fixed constructor parameters for every head that takes them (e.g. max_epochs).
        memory_budget_mb: keep resident memory above the level after imports under this many
            MB: features are streamed by chunks (:mod:`featlt.heads.budget`); None: the view
            is read into memory.
    Returns:
        The summary document (also written to ``out_dir/summary.json``).
    """
    from featlt.data.protocol import Protocol
    from featlt.heads.selection import select_heads
    from featlt.progress import Progress
    from featlt.runtime import resolve_torch_device
    from featlt.store.feature_store import FeatureStore

    names = expand_head_names(list(heads))
    protocol = protocol or Protocol(seed=seed)
    device = resolve_torch_device(device)  # type: ignore[arg-type]
    out_dir = Path(out_dir)
    config = {"feature_file": str(feature_file), "heads": names, "device": device, "seed": seed,
              "n_bootstrap": n_bootstrap, "overrides": overrides or {}}
    with ExitStack() as stack:  # a streamed run keeps the store open until the test is scored
        if memory_budget_mb is None:
            arrays, data = load_head_data(feature_file, protocol, with_views="cibl" in names)
        else:
            store = stack.enter_context(FeatureStore(feature_file))
            arrays, data, plan = budget_head_data(store, protocol, names, memory_budget_mb)
            config["memory_budget"] = {"mb": memory_budget_mb, "chunk_rows": plan.chunk_rows,
                                       "estimate_mb": round(plan.need_mb, 1)}
        start = time.perf_counter()
        with Progress(len(names), "fit-classifier", "head") as progress:
            selected = select_heads(names, data, device=device, seed=seed, overrides=overrides,
                                    on_selected=lambda _name: progress.update())
        total_fit = time.perf_counter() - start
        summary: dict[str, Any] = {"config": config, "provenance": arrays.provenance,
                                   "class_names": arrays.class_names, "heads": {}}
        # The test split is scored here, once per head, after all selection is done.
        for name, result in selected.items():
            summary["heads"][name] = evaluate_and_save(name, result, arrays, config,
                                                       out_dir / name, n_bootstrap, seed)
    summary["total_fit_seconds"] = total_fit
    summary = seal(summary, SUMMARY_SEAL_KEY)
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def load_head_data(feature_file: str | Path, protocol: Any, with_views: bool) -> tuple[Any, Any]:
    """Read the view's arrays and refuse what heads cannot be fitted or scored on.

    Returns:
        ``(arrays, data)``: the :func:`featlt.data.protocol.load_arrays` result (train, val,
        test, provenance) and its :class:`featlt.heads.selection.SelectionData`.
    """
    from featlt.data.protocol import load_arrays
    from featlt.store.feature_store import FeatureStore

    with FeatureStore(feature_file) as store:
        arrays = load_arrays(store, protocol, with_views=with_views)
    return arrays, check_head_data(arrays, feature_file, protocol)


def budget_head_data(
    store: FeatureStore, protocol: Any, names: list[str], budget_mb: float
) -> tuple[Any, Any, Any]:
    """The view of ``store`` for heads ``names`` under ``budget_mb``: streamed by chunks when
    every head streams, else in memory when the budget holds it; else refused
    (:func:`featlt.heads.budget.plan_memory`).

    Returns:
        ``(arrays, data, plan)``: arrays and :class:`featlt.heads.selection.SelectionData`
        whose features are :class:`featlt.heads.streaming.StreamedFeatures` (in memory when
        ``plan.chunk_rows`` is None), and the :class:`featlt.heads.budget.MemoryPlan`.
    """
    from featlt.data.protocol import FeatureArrays, resolve_view
    from featlt.heads.budget import plan_memory, view_sizes
    from featlt.heads.streaming import StreamedFeatures
    from featlt.store.memory import return_freed_memory

    return_freed_memory()
    view = resolve_view(store, protocol)
    sizes = view_sizes(store, view)
    plan = plan_memory(names, sizes, budget_mb, f"feature file {store.path}")
    if plan.chunk_rows is None:
        arrays, data = load_head_data(store.path, protocol, with_views="cibl" in names)
        return arrays, data, plan

    def streamed(split: str | None, rows: np.ndarray | None) -> tuple[Any, Any]:
        if split is None or rows is None:
            return None, None
        return (StreamedFeatures(store, split, rows, plan.chunk_rows, sizes.dim),
                store.labels(split)[rows])

    X_train, y_train = streamed(view.train_split, view.train_rows)
    X_val, y_val = streamed(view.val_split, view.val_rows)
    X_test, y_test = streamed(view.test_split, view.test_rows)
    arrays = FeatureArrays(
        X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test,
        y_test=y_test, class_names=view.class_names, train_counts=view.train_counts, view=view,
        provenance={"store": str(store.path), "features": store.provenance,
                    "view": view.record()},
    )
    return arrays, check_head_data(arrays, store.path, protocol), plan


def check_head_data(arrays: Any, feature_file: str | Path, protocol: Any) -> Any:
    """Refuse a view that heads cannot be fitted or scored on; return its
    :class:`featlt.heads.selection.SelectionData`."""
    from featlt.heads.selection import SelectionData, check_selection_data

    if arrays.X_test is None:
        raise FeatltError(
            f"feature file {feature_file}: no '{protocol.test_split}' split to evaluate on; "
            "extract a test split"
        )
    if np.count_nonzero(arrays.train_counts) < 2:
        raise FeatltError(
            f"feature file {feature_file}: its training rows hold "
            f"{np.count_nonzero(arrays.train_counts)} class ({', '.join(arrays.class_names)}); a "
            "classifier needs at least 2; extract a dataset with two or more classes"
        )
    data = SelectionData(arrays.X_train, arrays.y_train, arrays.X_val, arrays.y_val,
                         arrays.train_counts, arrays.views_train)
    check_selection_data(data, arrays.class_names)
    if arrays.y_test.shape[0] == 0:
        raise FeatltError(f"feature file {feature_file}: the test split is empty")
    n_classes = len(arrays.class_names)
    if arrays.y_test.min() < 0 or arrays.y_test.max() >= n_classes:
        raise FeatltError(
            f"feature file {feature_file}: test labels outside 0..{n_classes - 1}; re-extract"
        )
    return data


def evaluate_and_save(name: str, result: Any, arrays: Any, config: dict[str, Any],
                      head_dir: Path, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Score a selected head on the test split once; save it, its document and its per-image
    test predictions in ``head_dir``.

    Args:
        result: the :class:`featlt.heads.selection.SelectedHead` of ``name``.
        arrays: the view's arrays (:func:`load_head_data`).
    Returns:
        The head's row of ``summary.json`` (test metrics, validation score, selection, paths).
    """
    from featlt.evaluation.metrics import evaluate

    spec = head_spec(name)
    proba = result.head.predict_proba(arrays.X_test)
    metrics = evaluate(arrays.y_test, proba, arrays.train_counts, n_bootstrap=n_bootstrap,
                       seed=seed, class_names=arrays.class_names)
    document = {
        "name": name, "description": spec.description, "source": spec.source,
        "class_names": arrays.class_names, "config": config,
        "provenance": arrays.provenance, "selection": {
            "selected": result.selected, "val": result.val, "candidates": result.candidates,
            "grid": spec.grid, "fit_seconds": result.fit_seconds,
        },
        "metrics": {"test": metrics},
    }
    if hasattr(result.head, "stage_report"):  # DLSA: rows routed to each stage on test
        document["stages_test"] = result.head.stage_report(arrays.X_test, arrays.y_test)
    save_head(result.head, head_dir, document)
    predictions = head_dir / TEST_PREDICTIONS_FILE
    predictions_sha256 = write_csv_sha256(predictions, {
        "row": arrays.view.test_rows, "label": arrays.y_test,
        "prediction": proba.argmax(axis=1), "confidence": proba.max(axis=1),
    }, "test predictions file")
    return {
        **{k: metrics[k] for k in ("accuracy", "balanced_accuracy", "head_third", "mid_third",
                                   "tail_third", "many", "medium", "few",
                                   "worst_class_accuracy", "macro_f1", "nll", "ece")},
        "balanced_accuracy_ci": metrics.get("balanced_accuracy_ci"),
        "val_balanced_accuracy": result.val["balanced_accuracy"],
        "fit_seconds": result.fit_seconds,
        "selected": result.selected,
        "dir": str(head_dir),
        "test_predictions": str(predictions),
        "test_predictions_sha256": predictions_sha256,
    }


def _check_compatible(document: dict[str, Any], store: Any, split: str, head_dir: Path) -> None:
    from featlt.store.provenance import backbone_identity, require_same_provenance

    stored = document.get("provenance", {}).get("features", {})
    require_same_provenance(
        {"backbone": backbone_identity(stored)},
        {"backbone": backbone_identity(store.provenance)},
        f"head {head_dir} (trained on {document.get('provenance', {}).get('store')}) applied "
        f"to {store.path}",
    )
    names = store.class_names(split)
    if names != document.get("class_names"):
        raise FeatltError(
            f"feature file {store.path}: split '{split}' has classes {names[:5]}... but head "
            f"{head_dir} predicts {document.get('class_names', [])[:5]}...; use a file of the "
            "same dataset"
        )


def predict_features(
    head_dir: str | Path,
    feature_file: str | Path,
    split: str = "test",
    output: str | Path | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Apply a saved head to every row of ``split`` in a feature file of the same backbone.

    Refuses a file whose ``backbone`` provenance differs from the head's training features.
    With ``output`` (a .csv) writes one row per sample: row, source_index, label, prediction,
    prediction_name, confidence. Returns a summary with the metrics against the stored labels.
    Predictions are computed in float64 on the CPU whatever ``device`` says, but ``device`` is
    checked as in every command: ``cuda`` without a GPU is an error, not a silent CPU run.
    """
    from featlt.evaluation.metrics import evaluate
    from featlt.runtime import resolve_torch_device
    from featlt.store.feature_store import FeatureStore

    resolve_torch_device(device)  # type: ignore[arg-type]
    head_dir = Path(head_dir)
    head, document = load_head(head_dir)
    with FeatureStore(feature_file) as store:
        _check_compatible(document, store, split, head_dir)
        labels = store.labels(split)
        source_index = store.source_index(split)
        if labels.shape[0] == 0:
            raise FeatltError(f"feature file {feature_file}: split '{split}' is empty")
        # Stream the split block by block (the store's memory budget); keep only (n, C).
        proba = np.concatenate([head.predict_proba(block) for _, block in store.iter_rows(split)])
    pred = proba.argmax(axis=1)
    names = document["class_names"]
    if output is not None:
        write_predictions_csv(Path(output), {
            "row": np.arange(labels.shape[0]), "source_index": source_index, "label": labels,
            "prediction": pred, "prediction_name": [names[i] for i in pred],
            "confidence": proba.max(axis=1),
        })
    train_counts = document["provenance"]["view"]["train_class_counts"]
    return {
        "head": document.get("name"), "head_dir": str(head_dir), "feature_file": str(feature_file),
        "split": split, "source": f"{feature_file}:{split}", "n": int(labels.shape[0]),
        "output": None if output is None else str(output),
        "metrics": evaluate(labels, proba, train_counts, n_bootstrap=n_bootstrap, seed=seed,
                            class_names=names),
        "predicted_counts": np.bincount(pred, minlength=len(names)).tolist(),
    }


def write_predictions_csv(path: Path, columns: dict[str, Any],
                          what: str = "predictions file") -> Path:
    """Write equal-length columns as CSV, atomically (temporary file + rename).

    Args:
        what: the file in words, for the message when it cannot be written.
    """
    write_csv_sha256(path, columns, what)
    return path


def write_csv_sha256(path: Path, columns: dict[str, Any], what: str = "predictions file") -> str:
    """:func:`write_predictions_csv`, returning the sha256 of the bytes written (known before
    the file is renamed into place, which inside :func:`featlt.runtime.atomic_outputs` happens
    only at the end of the run). Text is UTF-8."""
    import hashlib
    import io

    keys = list(columns)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(keys)
    for row in zip(*(columns[k] for k in keys), strict=True):
        writer.writerow([to_jsonable(v) for v in row])
    data = buffer.getvalue().encode("utf-8")
    with atomic_output(path, what) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
