"""Cosine head ``f_c(z) = s * cos(w_c, h(z))`` (docs/methods.md, "Classifier heads" [paper]).

Class vectors are normalised, so no class wins by a larger weight norm; ``s`` (16, 25 or 30)
sets the sharpness. The loss is plain CE by default; ``la`` / ``balanced_softmax`` add the
prior as in :mod:`featlt.heads.linear`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from featlt.heads.linear import prior_loss
from featlt.heads.losses import LossFn
from featlt.heads.trainable import TorchHead, mlp_embed, param_error, uniform_init


def cosine_logits(params: dict[str, torch.Tensor], Z: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * normalize(h(Z)) @ normalize(W)^T``: (n, K)."""
    h = F.normalize(mlp_embed(params, Z), dim=1, eps=1e-12)
    return scale * h @ F.normalize(params["weight"], dim=1, eps=1e-12).T


def cosine_init(
    rng: np.random.Generator, hidden: int, dim: int, n_out: int
) -> dict[str, np.ndarray]:
    """Class vectors (n_out, H) and an optional projection (H, dim), torch-style uniform."""
    params: dict[str, np.ndarray] = {}
    width = dim
    if hidden:
        params["proj_weight"] = uniform_init(rng, hidden, dim)
        params["proj_bias"] = np.zeros(hidden)
        width = hidden
    params["weight"] = uniform_init(rng, n_out, width)
    return params


class CosineHead(TorchHead):
    """Cosine classifier. Parameters beyond TorchHead's: ``s`` (scale), ``loss``, ``tau``.

    Fitted ``state_``: ``weight`` (C, H) (normalised at use), with ``hidden > 0`` also
    ``proj_weight`` (H, D) and ``proj_bias`` (H,).
    """

    def __init__(
        self,
        s: float = 16.0,
        loss: str = "ce",
        tau: float = 1.0,
        preprocess: str = "standardize",
        hidden: int = 0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 512,
        max_epochs: int = 30,
        patience: int | None = 8,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        class_counts: Any = None,
        temperature: float = 1.0,
        device: str = "auto",
        random_state: int | None = 0,
    ):
        self.s = s
        self.loss = loss
        self.tau = tau
        self.preprocess = preprocess
        self.hidden = hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.class_counts = class_counts
        self.temperature = temperature
        self.device = device
        self.random_state = random_state

    def _init_params(self, rng: np.random.Generator, dim: int, n_out: int) -> dict[str, np.ndarray]:
        if not isinstance(self.s, (int, float)) or self.s <= 0:
            raise param_error(self, "s", "a float > 0", self.s)
        return cosine_init(rng, int(self.hidden), dim, n_out)

    def _forward(self, params: dict[str, torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
        return cosine_logits(params, Z, float(self.s))

    def _make_loss(self, target_counts: np.ndarray, max_epochs: int) -> LossFn:
        return prior_loss(self, self.loss, self.tau, target_counts)
