"""The ranking's static baselines: what a backbone is worth before looking at the target data.

Two numbers that never read the target data (issue 12's comparators):

- ``params``: the parameter count of the feature extractor (:func:`feature_params`): every
  parameter the feature passes through, i.e. the whole model minus its classifier for the
  pooled pre-logits feature, and only the layers up to the chosen one for ``--layer``. Recorded
  in the backbone provenance as ``feature.params``.
- ``imagenet_top1``: the published ImageNet-1k top-1 (%) of the weights, kept in the zoo spec
  with its source (:class:`featlt.extractors.zoo.ZooEntry`); None for raw pixels, random init,
  self-supervised weights and anything not in the zoo, which then rank last.

A combined feature set (``featlt combine``) counts the parameters of its members' networks, a
network shared by several members (a backbone and its inner layer) once, and has no top-1.

:func:`static_baselines` reads both from a feature store's provenance.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from featlt.errors import FeatltError


@dataclass(frozen=True)
class StaticBaselines:
    """A store's static baselines (see the module docstring)."""

    params: int  # parameters of the feature extractor
    imagenet_top1: float | None  # published ImageNet-1k top-1 in %, None when there is none
    source: str  # where the top-1 comes from, or why there is none


def feature_params(model: Any, layer_index: int | None = None) -> int:
    """Parameters of ``model`` that the feature passes through.

    Args:
        model: a timm model (or the pixels pseudo-backbone).
        layer_index: None for the pooled pre-logits feature (all parameters but the
            classifier's); else a ``forward_intermediates`` index, counted on a copy pruned
            after that layer with timm's ``prune_intermediate_layers`` (head and final norm
            dropped).
    """
    if layer_index is None:
        classifier = model.get_classifier() if callable(
            getattr(model, "get_classifier", None)) else None
        head = sum(p.numel() for p in classifier.parameters()) if classifier is not None else 0
        return int(sum(p.numel() for p in model.parameters()) - head)
    pruned = copy.deepcopy(model)
    pruned.prune_intermediate_layers(indices=[layer_index], prune_norm=True, prune_head=True)
    return int(sum(p.numel() for p in pruned.parameters()))


def static_baselines(provenance: dict[str, Any]) -> StaticBaselines:
    """(params, published ImageNet top-1 or None, its source) of a feature store.

    ``provenance`` is a store's provenance (``FeatureStore.provenance``, with a ``backbone``
    record). Stores written before ``feature.params`` was recorded get it recomputed from the
    architecture, resolution and layer (a randomly initialised copy: the count does not depend
    on the weights).
    """
    backbone = provenance.get("backbone")
    if isinstance(backbone, dict) and isinstance(backbone.get("members"), list):
        return _combined_baselines(backbone["members"])
    if not isinstance(backbone, dict) or "feature" not in backbone:
        raise FeatltError(
            "feature store provenance has no backbone record; pass a store written by "
            "`featlt extract`"
        )
    params = backbone["feature"].get("params")
    if params is None:
        params = _recount_params(backbone)
    top1, source = published_top1(backbone)
    return StaticBaselines(params=int(params), imagenet_top1=top1, source=source)


def _combined_baselines(members: list[dict[str, Any]]) -> StaticBaselines:
    """A combined feature set's baselines: the parameters of every distinct network its members
    run, a shared trunk counted once (the largest feature extractor of one model and weights,
    e.g. a backbone and its own inner layer); no published top-1."""
    trunks: dict[str, int] = {}
    for member in members:
        record = member.get("backbone") or {}
        params = static_baselines({"backbone": record}).params
        key = json.dumps([record.get("model"),
                          (record.get("weights") or {}).get("tensors_sha256")], default=str)
        trunks[key] = max(trunks.get(key, 0), params)
    return StaticBaselines(params=sum(trunks.values()), imagenet_top1=None,
                           source="a combination of backbones: no published top-1")


def published_top1(backbone: dict[str, Any]) -> tuple[float | None, str]:
    """(top-1 %, source) from the zoo entry the backbone record names, or (None, why not)."""
    from featlt.extractors.zoo import get_zoo_entry, zoo_names

    weights = backbone.get("weights") or {}
    if weights.get("source") == "none":
        return None, "raw pixels: no weights"
    if weights.get("source") == "random":
        return None, "random init: no published top-1"
    zoo = backbone.get("zoo")
    if zoo not in zoo_names():
        return None, "not a zoo entry: no published top-1 recorded for these weights"
    entry = get_zoo_entry(zoo)
    return entry.imagenet_top1, entry.top1_source or "no published top-1"


def _recount_params(backbone: dict[str, Any]) -> int:
    """``feature.params`` of an older backbone record, from a random-init copy of its model."""
    from featlt.extractors.backbones import random_model
    from featlt.extractors.input_size import size_kwargs
    from featlt.extractors.pixels import create_pixels_model, is_pixels_name

    model_name = str(backbone["model"])
    if is_pixels_name(model_name):
        return feature_params(create_pixels_model(model_name))
    model = random_model(model_name, 0, size_kwargs(model_name, backbone.get("resolution")))
    return feature_params(model, backbone["feature"].get("index"))
