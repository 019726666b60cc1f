"""Linear heads ``f(z) = W h(z) + b`` (Kang et al. 2020 [code]; Menon et al. 2021, Ren et al.
2020 [paper, code]); ``h`` is the identity or an MLP projection.

One class, four established recipes (see :mod:`featlt.heads.registry`):

- ``linear``: cross-entropy with instance-balanced sampling.
- ``crt``: classifier re-training — a freshly initialised linear head trained with class-balanced
  sampling. On frozen pretrained features the "first stage" is the pretrained backbone.
- ``la_loss``: logit-adjusted loss ``CE(f(z) + tau * log pi)``; predictions use ``f(z)``.
- ``balanced_softmax``: ``CE(f(z) + log n_c)`` — the same as ``la_loss`` with ``tau = 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featlt.heads.losses import LossFn, cross_entropy, logit_adjusted
from featlt.heads.trainable import TorchHead, mlp_embed, param_error, uniform_init
from featlt.heads.training import SAMPLING

LOSSES = ("ce", "la", "balanced_softmax")


def prior_loss(owner: Any, loss: str, tau: float, counts: np.ndarray) -> LossFn:
    """The CE / logit-adjusted / Balanced Softmax loss for per-target ``counts`` (K,)."""
    if loss not in LOSSES:
        raise param_error(owner, "loss", f"one of {', '.join(LOSSES)}", loss)
    if loss == "ce":
        return cross_entropy()
    if loss == "balanced_softmax":
        return logit_adjusted(np.log(counts))
    if not isinstance(tau, (int, float)) or tau < 0:
        raise param_error(owner, "tau", "a float >= 0", tau)
    return logit_adjusted(tau * np.log(counts / counts.sum()))


def prior_removed(head: Any) -> float:
    """How much of its training label prior a head's logits have removed (``tau_eff``): 1 for
    Balanced Softmax or class-balanced sampling, ``tau`` for the logit-adjusted loss, 0 for plain
    cross-entropy (the logits then estimate the training posterior). ``head``: any head whose
    ``loss`` is one of :data:`LOSSES`."""
    params = head.get_params()
    if params.get("sampling") == "class_balanced" or params["loss"] == "balanced_softmax":
        return 1.0
    return float(params["tau"]) if params["loss"] == "la" else 0.0


class LinearHead(TorchHead):
    """A linear classifier on (optionally projected) frozen features.

    Parameters (beyond :class:`~featlt.heads.trainable.TorchHead`'s):
        loss: ce | la | balanced_softmax.
        tau: logit-adjustment strength of ``loss="la"``.
        sampling: instance | class_balanced (``crt``).

    Fitted ``state_``: ``weight`` (C, H), ``bias`` (C,), and with ``hidden > 0``
    ``proj_weight`` (H, D), ``proj_bias`` (H,).
    """

    def __init__(
        self,
        loss: str = "ce",
        tau: float = 1.0,
        sampling: str = "instance",
        preprocess: str = "standardize",
        hidden: int = 0,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
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
        self.loss = loss
        self.tau = tau
        self.sampling = sampling
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

    def _config_extra(self) -> dict[str, Any]:
        if self.sampling not in SAMPLING:
            raise param_error(self, "sampling", f"one of {', '.join(SAMPLING)}", self.sampling)
        return {"sampling": self.sampling}

    def _init_params(self, rng: np.random.Generator, dim: int, n_out: int) -> dict[str, np.ndarray]:
        params: dict[str, np.ndarray] = {}
        width = dim
        if self.hidden:
            params["proj_weight"] = uniform_init(rng, int(self.hidden), dim)
            params["proj_bias"] = np.zeros(int(self.hidden))
            width = int(self.hidden)
        params["weight"] = uniform_init(rng, n_out, width)
        params["bias"] = np.zeros(n_out)
        return params

    def _forward(self, params: dict[str, torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
        return mlp_embed(params, Z) @ params["weight"].T + params["bias"]

    def _make_loss(self, target_counts: np.ndarray, max_epochs: int) -> LossFn:
        return prior_loss(self, self.loss, self.tau, target_counts)
