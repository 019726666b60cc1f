"""LDAM-DRW (Cao et al. 2019 [paper, code]) on frozen features.

A cosine classifier (``f_c(z) = s * cos(w_c, h(z))``, s = 30) trained with the label-distribution
aware margin loss: the target class's cosine loses ``m_y ∝ n_y^(-1/4)`` (largest margin 0.5).
Deferred re-weighting: for the last ``1 - drw_start`` of the epochs (the authors: epochs 160-200
of 200) samples are weighted by ``(1 - beta) / (1 - beta^n_c)``, beta = 0.9999. Early stopping
only considers epochs after the switch, so the kept parameters are always re-weighted ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featlt.heads.cosine import cosine_init, cosine_logits
from featlt.heads.losses import LossFn, ldam_drw
from featlt.heads.trainable import TorchHead, param_error


class LDAMDRWHead(TorchHead):
    """LDAM loss with deferred re-weighting. Parameters beyond TorchHead's: ``s``,
    ``max_margin``, ``beta``, ``drw_start`` (fraction of ``max_epochs`` before re-weighting).
    """

    def __init__(
        self,
        s: float = 30.0,
        max_margin: float = 0.5,
        beta: float = 0.9999,
        drw_start: float = 0.8,
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
        self.max_margin = max_margin
        self.beta = beta
        self.drw_start = drw_start
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

    def _drw_epoch(self) -> int:
        if not isinstance(self.drw_start, (int, float)) or not 0 <= self.drw_start <= 1:
            raise param_error(self, "drw_start", "a float in [0, 1]", self.drw_start)
        return min(int(self.max_epochs) - 1, round(self.drw_start * int(self.max_epochs)))

    def _config_extra(self) -> dict[str, Any]:
        return {"first_eligible_epoch": self._drw_epoch()}

    def _init_params(self, rng: np.random.Generator, dim: int, n_out: int) -> dict[str, np.ndarray]:
        for name, ok, rule in (
            ("s", isinstance(self.s, (int, float)) and self.s > 0, "a float > 0"),
            ("max_margin", isinstance(self.max_margin, (int, float)) and self.max_margin >= 0,
             "a float >= 0"),
            ("beta", isinstance(self.beta, (int, float)) and 0 <= self.beta < 1,
             "a float in [0, 1)"),
        ):
            if not ok:
                raise param_error(self, name, rule, getattr(self, name))
        return cosine_init(rng, int(self.hidden), dim, n_out)

    def _forward(self, params: dict[str, torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
        return cosine_logits(params, Z, float(self.s))

    def _make_loss(self, target_counts: np.ndarray, max_epochs: int) -> LossFn:
        return ldam_drw(target_counts, float(self.s), float(self.max_margin), float(self.beta),
                        self._drw_epoch())
