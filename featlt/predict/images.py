"""``featlt predict --images``: a saved head applied end to end to a folder of images.

It rebuilds the backbone that produced the head's training features (from their provenance),
checks it against that record, extracts features in memory and applies the head. It sits above
both :mod:`featlt.heads` and :mod:`featlt.extractors`, which is why it is a package of its own.

Layer: predict (may import everything below it: errors, runtime, store, data, evaluation,
cluster, featlt.extractors, extract and heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featlt.errors import FeatltError
from featlt.heads.io import load_head
from featlt.heads.workflow import write_predictions_csv


def backbone_spec_from_provenance(features: dict[str, Any], weights: str | None,
                                  option: str = "--weights FILE", what: str | None = None) -> Any:
    """The :class:`featlt.extractors.backbones.BackboneSpec` that produced a store's features.

    Zoo and random backbones are rebuilt from the record alone; file, local-dir and hub weights
    come from ``weights`` when given, else from the path recorded at extraction time. The
    recorded inner layer (``--layer``) is the spec's feature.

    Args:
        features: a store's provenance (``backbone`` and ``run.weights_file`` are read).
        option: how the fix names the weights option (``--weights 2=FILE`` for a member).
        what: how the message names the backbone (default: ``backbone MODEL``).
    """
    from featlt.extractors.backbones import BackboneSpec, resolve_spec

    backbone = features.get("backbone") or {}
    record = backbone.get("weights") or {}
    resolution = backbone.get("resolution")
    layer = (backbone.get("feature") or {}).get("layer")
    layer = None if layer in (None, "pre_logits") else layer
    if backbone.get("zoo") and weights is None:
        return resolve_spec(backbone["zoo"], None, resolution, layer=layer)
    if record.get("source") == "none":  # the pixels pseudo-backbone has no weights
        return resolve_spec(backbone["model"], None, resolution, layer=layer)
    if record.get("source") == "random" and weights is None:
        return BackboneSpec(model=backbone["model"], weights="random", resolution=resolution,
                            seed=int(record.get("seed", 0)), layer=layer)
    if weights is None and record.get("source") == "hub":
        weights = "hub"
    if weights is None:
        recorded = ((features.get("run") or {}).get("weights_file") or {}).get("path")
        if not recorded or not Path(recorded).exists():
            raise FeatltError(
                f"{what or 'backbone ' + str(backbone.get('model'))}: its weights file "
                f"({recorded}) is not on this machine and the zoo does not hold these weights; "
                f"pass the same weights with {option}"
            )
        weights = (f"local-dir:{Path(recorded).parent}" if record.get("source") == "local-dir"
                   else recorded)
    return BackboneSpec(model=backbone["model"], weights=weights, resolution=resolution,
                        layer=layer)


def display_name(text: str) -> str:
    """``text`` (a file name as Python decoded it) safe to write as UTF-8.

    A name whose bytes are not UTF-8 reaches Python with each bad byte as a lone surrogate
    (``surrogateescape``), which no UTF-8 file can hold; such bytes are written as ``\\xNN``
    escapes (``b"\\xff.png"`` -> ``\\xff.png``). Valid names are returned unchanged.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursive, sorted, hidden files skipped)."""
    from featlt.data.sources.folder import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise FeatltError(f"--images {folder}: not a folder; pass a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in
                   IMAGE_EXTENSIONS and not any(part.startswith(".") for part in
                                                p.relative_to(folder).parts))
    if not files:
        raise FeatltError(
            f"--images {folder}: holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return files


def folder_labels(folder: Path, files: list[Path], class_names: list[str]) -> np.ndarray | None:
    """Labels from class subfolders, when every image sits under one named after a class."""
    index = {name: c for c, name in enumerate(class_names)}
    parents = [f.relative_to(folder).parts[0] if len(f.relative_to(folder).parts) > 1 else None
               for f in files]
    if all(p in index for p in parents):
        return np.asarray([index[p] for p in parents], dtype=np.int64)
    return None


def predict_images(
    head_dir: str | Path,
    folder: str | Path,
    output: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    weights: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Classify every image under ``folder`` end to end: the head's own backbone(s), then the head.

    Every backbone is rebuilt from the provenance of the head's training features and checked
    against it (weights hash, data config, layer ...): a mismatch is refused, naming the
    attribute. Each image is decoded once; a head fitted on a combined store runs every member
    (members of one network share one forward) and combines their features by the recipe
    (:mod:`featlt.predict.members`). Features are rounded as the head saw them in training.
    When every image sits in a subfolder named after a class, metrics are computed as well.
    File names that are not UTF-8 are written escaped (:func:`display_name`).

    Args:
        weights: ``--weights`` values: FILE for a single backbone, MEMBER=FILE per member of a
            combined head whose weights are neither in the zoo nor at the recorded path.
    """
    from featlt.data.decode import decode_image  # the rule every source decodes by
    from featlt.evaluation.metrics import evaluate
    from featlt.predict.members import build_forward
    from featlt.runtime import resolve_torch_device

    if batch_size < 1:
        raise FeatltError(f"--batch-size {batch_size}: must be at least 1")
    head_dir, folder = Path(head_dir), Path(folder)
    head, document = load_head(head_dir)
    features = document.get("provenance", {}).get("features", {})
    files = image_files(folder)
    forward = build_forward(features, weights, resolve_torch_device(device),
                            f"head {head_dir}")
    parts = []
    for start in range(0, len(files), batch_size):
        parts.append(forward.features([decode_image(f, f"image {f}")
                                       for f in files[start : start + batch_size]]))
    proba = head.predict_proba(np.concatenate(parts))
    pred = proba.argmax(axis=1)
    names = document["class_names"]
    if output is not None:
        write_predictions_csv(Path(output), {
            "file": [display_name(str(f.relative_to(folder))) for f in files],
            "prediction": pred,
            "prediction_name": [names[i] for i in pred], "confidence": proba.max(axis=1),
        })
    labels = folder_labels(folder, files, names)
    train_counts = document["provenance"]["view"]["train_class_counts"]
    return {
        "head": document.get("name"), "head_dir": display_name(str(head_dir)),
        "source": display_name(str(folder)), "n": len(files),
        "output": None if output is None else display_name(str(output)),
        "backbone": " + ".join(r.name for r in forward.records),
        "members": len(forward.records), "forwards_per_batch": forward.forwards,
        "metrics": None if labels is None else evaluate(labels, proba, train_counts, seed=seed,
                                                        class_names=names),
        "predicted_counts": np.bincount(pred, minlength=len(names)).tolist(),
    }
