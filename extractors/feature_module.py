"""What a frozen backbone computes for the store: pooled pre-logits or a pooled inner layer.

:class:`FeatureModule` wraps a timm model (or the ``pixels`` pseudo-backbone) as one
``nn.Module`` whose ``forward`` maps a (B, 3, H, W) batch to (B, D) features, or to
``(features, logits)`` when logits are kept; :mod:`featlt.extractors.fast_forward` runs it on
the fastest checked path.

- Default feature: ``forward_head(forward_features(x), pre_logits=True)``, D = the model's
  ``head_hidden_size`` (its own pooling and pre-logits layers).
- ``--layer NAME``: the output of an inner layer through timm's ``forward_intermediates``
  (NCHW maps: conv stages, or a ViT's patch tokens as a grid without the class token), averaged
  over its spatial positions, D = that layer's channels. ``NAME`` is one of the model's
  ``feature_info`` modules (:func:`layer_names`, e.g. ``blocks.4`` of an EfficientNet,
  ``layer3`` of a ResNet, ``blocks.7`` of a ViT). With logits kept, the same pass also runs to
  the end and the logits are the model's own classifier outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from featlt.errors import FeatltError

LAYER_POOLING = "mean over spatial positions of forward_intermediates (NCHW)"


def layer_names(model: Any) -> list[str]:
    """The ``--layer`` names of ``model``: its ``feature_info`` modules, shallow to deep.

    Empty when the model has no ``forward_intermediates`` (e.g. ``pixels``).
    """
    if not callable(getattr(model, "forward_intermediates", None)):
        return []
    info = getattr(model, "feature_info", None) or []
    return [str(entry["module"]) for entry in info]


def resolve_layer(model: Any, layer: str, backbone: str) -> tuple[int, int]:
    """(index for ``forward_intermediates(indices=[index])``, channels D) of layer ``layer``."""
    names = layer_names(model)
    if not names:
        raise FeatltError(
            f"--layer {layer}: backbone {backbone} has no forward_intermediates, so no inner "
            "layer can be taken; drop --layer (the pooled pre-logits feature is used)"
        )
    if layer not in names:
        raise FeatltError(
            f"--layer {layer}: backbone {backbone} has no such layer; its layers are "
            f"{', '.join(names)} (shallow to deep)"
        )
    index = names.index(layer)
    return index, int(model.feature_info[index]["num_chs"])


class FeatureModule(nn.Module):
    """x: (B, 3, H, W) -> features (B, D) float, or (features, logits (B, K)) when ``logits``.

    Args:
        model: frozen timm model (or pixels pseudo-backbone) in eval mode.
        layer_index: None for the pooled pre-logits feature, else a ``forward_intermediates``
            index (:func:`resolve_layer`).
        logits: also return the classifier outputs.
    """

    def __init__(self, model: nn.Module, layer_index: int | None = None, logits: bool = False):
        super().__init__()
        self.model = model
        self.layer_index = layer_index
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.layer_index is None:
            hidden = self.model.forward_features(x)
            features = self.model.forward_head(hidden, pre_logits=True)
            if self.logits:
                return features, self.model.forward_head(hidden)
            return features
        indices = [self.layer_index]
        if self.logits:
            final, maps = self.model.forward_intermediates(x, indices=indices)
            return maps[0].mean((2, 3)), self.model.forward_head(final)
        maps = self.model.forward_intermediates(
            x, indices=indices, intermediates_only=True, stop_early=True
        )
        return maps[0].mean((2, 3))
