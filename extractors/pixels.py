"""The ``pixels`` pseudo-backbone: raw pixels at a fixed size, a floor for backbone ranking.

A backbone that cannot beat its own input pixels on a head has learned nothing useful for the
task, so ``pixels`` is ranked beside real backbones. It speaks the protocol of a frozen timm
feature model created with ``num_classes=0``:

- ``model(x)`` and ``model.forward_head(model.forward_features(x), pre_logits=True)`` return
  ``(B, 3 * size * size)`` float32 features;
- ``num_features`` / ``head_hidden_size`` give the feature dimension D (768 at the default 16 px);
- ``pretrained_cfg`` holds a timm data config (mean 0, std 1, crop 1.0), so timm's
  ``resolve_model_data_config(model)`` and eval transform feed it RGB values in [0, 1].

An input at another resolution (e.g. ``--resolution 160``) is resized to ``size`` inside
``forward_features`` with antialiased bilinear interpolation, so the feature is always the
``size x size`` image. Names: ``pixels`` (16 px) or ``pixels_<size>`` (e.g. ``pixels_32``).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from featlt.errors import FeatltError

DEFAULT_SIZE = 16  # 16 x 16 x 3 = 768 dims: as wide as a ViT-B feature, cheap for every head
_NAME = re.compile(r"pixels(?:_(\d+))?")


def is_pixels_name(name: str) -> bool:
    """True when ``name`` names the pixels pseudo-backbone (``pixels`` or ``pixels_<size>``)."""
    return _NAME.fullmatch(name) is not None


def pixels_size(name: str) -> int:
    """The side length encoded in a pixels model name (``pixels`` -> 16, ``pixels_32`` -> 32)."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise FeatltError(
            f"model '{name}': not a pixels pseudo-backbone; use 'pixels' or 'pixels_<size>', "
            "e.g. 'pixels_32'"
        )
    size = int(match.group(1)) if match.group(1) else DEFAULT_SIZE
    if not 1 <= size <= 512:
        raise FeatltError(f"model '{name}': size {size} must be in [1, 512]; e.g. 'pixels_32'")
    return size


class PixelsBackbone(nn.Module):
    """Flattened RGB pixels at ``size x size``: a parameter-free stand-in for a timm backbone.

    Args:
        size: side length S of the feature image; D = 3 * S * S.
    """

    def __init__(self, size: int = DEFAULT_SIZE):
        super().__init__()
        self.size = int(size)
        self.num_features = 3 * self.size * self.size
        self.head_hidden_size = self.num_features
        self.num_classes = 0  # no classifier: there are no logits to store
        self.pretrained_cfg: dict[str, Any] = {
            "architecture": f"pixels_{self.size}",
            "input_size": (3, self.size, self.size),
            "interpolation": "bilinear",  # PIL's bilinear resize is antialiased when shrinking
            "mean": (0.0, 0.0, 0.0),  # with std 1: the model sees RGB in [0, 1]
            "std": (1.0, 1.0, 1.0),
            "crop_pct": 1.0,  # keep the whole image
            "crop_mode": "center",
            "num_classes": 0,
        }
        self.default_cfg = self.pretrained_cfg
        self.eval()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float -> (B, 3, S, S), resized with antialiasing when H, W != S."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise FeatltError(
                f"pixels backbone: expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}; "
                "feed RGB images through the model's data config"
            )
        if x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(
                x.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                align_corners=False,
            )
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, D) float32, D = 3 * S * S (``pre_logits`` changes nothing)."""
        return x.float().flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) normalised images -> (B, D) float32 features."""
        return self.forward_head(self.forward_features(x), pre_logits=True)


def create_pixels_model(name: str = "pixels") -> PixelsBackbone:
    """Build the pixels pseudo-backbone named ``pixels`` or ``pixels_<size>``."""
    return PixelsBackbone(pixels_size(name))
