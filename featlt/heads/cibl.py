"""CIBL head: projection MLP + cosine classifier trained with a class-instance-balanced mix of
logit-adjusted cross-entropy and supervised contrast (docs/methods.md, "CIBL").

[featlt's reconstruction of Lavoie & Waslander 2023; no public code] For a minibatch of ``b``
rows, row ``i`` of a class with ``b_i`` instances in the batch contributes

    L_i = CE(s * cos(w, h(z_i)) + tau * log pi)  +  lambda * (1 - 1/b_i) * SupCon_i

where ``h`` is the projection ``relu(P z + p)``, ``SupCon_i`` the supervised contrastive loss
(Khosla et al. 2020) of the row's two views among the ``2b`` normalised projected views of the
batch (temperature ``supcon_temperature``), averaged over the two views. The more instances of
its class a batch holds, the more a row is pulled toward them and away from other classes;
``lambda`` moves accuracy between head and tail classes. The two views are the store's
augmented ``views`` when ``fit`` receives them, otherwise the row's features plus Gaussian noise
(``noise_std`` in the preprocessed space); ``views_source_`` says which. The cross-entropy sees
the row's own (non-augmented) features, as the prediction does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from featlt.heads.base import HeadInputError
from featlt.heads.cosine import cosine_init, cosine_logits
from featlt.heads.losses import LossFn
from featlt.heads.preprocess import apply_preprocessor
from featlt.heads.trainable import TorchHead, mlp_embed, param_error


def supervised_contrastive(
    features: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-anchor SupCon loss (Khosla et al. 2020, the "out" form): (m,) for (m, H) unit rows.

    Anchor ``i``'s positives are the other rows with its label; the denominator runs over all
    rows but ``i``. Every anchor needs at least one positive (two views guarantee it).
    """
    sim = features @ features.T / temperature
    self_mask = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(self_mask, -torch.inf)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
    return -pos_log_prob / positive.sum(dim=1).clamp_min(1)


def instance_weights(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``1 - 1/b_i``: (b,) weight of each row, ``b_i`` its class's instances in the batch."""
    in_batch = torch.bincount(targets, minlength=n_classes).to(torch.float32)
    return 1.0 - 1.0 / in_batch[targets]


def cibl_loss(
    n_classes: int, log_prior: np.ndarray, tau: float, lam: float, supcon_temperature: float
) -> LossFn:
    """The CIBL loss on the packed training output ``[logits (b, C) | h1 (b, H) | h2 (b, H)]``."""
    shift = torch.as_tensor(tau * np.asarray(log_prior), dtype=torch.float32)

    def loss(output: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, epoch: int):
        logits = output[:, :n_classes] + shift.to(output.device)
        per_row = F.cross_entropy(logits, targets, reduction="none")
        if lam > 0:
            views = output[:, n_classes:]
            width = views.shape[1] // 2
            both = torch.cat([views[:, :width], views[:, width:]])
            contrast = supervised_contrastive(both, targets.repeat(2), supcon_temperature)
            contrast = 0.5 * (contrast[: targets.shape[0]] + contrast[targets.shape[0]:])
            per_row = per_row + lam * instance_weights(targets, n_classes) * contrast
        return (per_row * weights).sum() / weights.sum().clamp_min(1e-12)

    return loss


class CIBLHead(TorchHead):
    """Class-instance-balanced learning on frozen features [reconstruction].

    Parameters beyond :class:`~featlt.heads.trainable.TorchHead`'s:
        lam: weight ``lambda`` of the contrastive term (0: logit-adjusted cosine head alone).
        s: cosine scale. tau: logit-adjustment strength of the cross-entropy.
        supcon_temperature: temperature of the contrastive similarities.
        noise_std: std of the Gaussian feature noise that makes views when none are given.

    ``fit(X, y, ..., views=V)`` takes augmented views ``V`` (n, n_views, D) of the training rows
    (aligned with X); with one stored view the row's own features are the second view.
    Fitted ``state_``: ``proj_weight`` (H, D), ``proj_bias`` (H,), ``weight`` (C, H);
    ``views_source_`` says where the views came from.
    """

    def __init__(
        self,
        lam: float = 1.0,
        s: float = 16.0,
        tau: float = 1.0,
        supcon_temperature: float = 0.1,
        noise_std: float = 0.5,
        preprocess: str = "standardize",
        hidden: int = 256,
        lr: float = 3e-3,
        weight_decay: float = 1e-3,
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
        self.lam = lam
        self.s = s
        self.tau = tau
        self.supcon_temperature = supcon_temperature
        self.noise_std = noise_std
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

    def _check_cibl_params(self) -> None:
        checks = [
            ("lam", self.lam >= 0, "a float >= 0"),
            ("s", self.s > 0, "a float > 0"),
            ("tau", self.tau >= 0, "a float >= 0"),
            ("supcon_temperature", self.supcon_temperature > 0, "a float > 0"),
            ("noise_std", self.noise_std > 0, "a float > 0"),
            ("hidden", self.hidden >= 1, "an int >= 1 (CIBL needs a projection)"),
        ]
        for name, ok, rule in checks:
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not ok:
                raise param_error(self, name, rule, value)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None, views: Any = None) -> CIBLHead:
        """Fit on ``X`` (n, D), ``y`` (n,) and optional augmented ``views`` (n, V, D)."""
        self._check_cibl_params()
        self._views = self._check_views(views, X)
        seed = self._seed()
        self._noise = torch.Generator().manual_seed(seed)
        try:
            super().fit(X, y, sample_weight, X_val, y_val)
        finally:
            del self._views, self._noise
        return self

    def _check_views(self, views: Any, X: Any) -> np.ndarray | None:
        """The views (n, V, D) aligned with ``X`` (n, D), or None (then noise views)."""
        if views is None:
            self.views_source_ = (f"feature-space noise (Gaussian, std {self.noise_std} in the "
                                  "preprocessed space): no stored views were given")
            return None
        x_shape = np.asarray(X).shape
        views = np.asarray(views)
        if views.ndim != 3 or views.shape[0] != x_shape[0] or views.shape[2] != x_shape[1] \
                or views.shape[1] < 1 or not np.isfinite(views).all():
            raise HeadInputError(
                f"views for {type(self).__name__}: expected finite (n, V, D) = ({x_shape[0]}, "
                f">=1, {x_shape[1]}) aligned with X, got shape {views.shape}; pass the store's "
                "'views' of the training rows (featlt extract --views 2) or none"
            )
        self.views_source_ = f"store views ({views.shape[1]} per row)"
        return views

    def _train_inputs(self, Z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[Z | view 1 | view 2]`` (n, 3D) float32 with stored views, else ``Z`` (n, D)."""
        if self._views is None:
            return Z
        state = self.preprocess_state_
        first = apply_preprocessor(self.preprocess, state, self._views[rows, 0].astype(np.float64))
        second = (Z if self._views.shape[1] == 1 else apply_preprocessor(
            self.preprocess, state, self._views[rows, 1].astype(np.float64)))
        return np.concatenate([Z, first, second], axis=1).astype(np.float32)

    def _init_params(self, rng: np.random.Generator, dim: int, n_out: int) -> dict[str, np.ndarray]:
        return cosine_init(rng, int(self.hidden), dim, n_out)

    def _forward(self, params: dict[str, torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
        return cosine_logits(params, Z, float(self.s))

    def _train_forward(self, params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """``[logits (b, C) | h(view 1) (b, H) | h(view 2) (b, H)]``, projections unit-norm."""
        dim = params["proj_weight"].shape[1]
        clean = inputs[:, :dim]
        if inputs.shape[1] == 3 * dim:
            first, second = inputs[:, dim:2 * dim], inputs[:, 2 * dim:]
        else:
            noise = torch.randn((2, *clean.shape), generator=self._noise).to(clean)
            first, second = clean + self.noise_std * noise[0], clean + self.noise_std * noise[1]
        projected = [F.normalize(mlp_embed(params, v), dim=1, eps=1e-12) for v in (first, second)]
        return torch.cat([self._forward(params, clean), *projected], dim=1)

    def _make_loss(self, target_counts: np.ndarray, max_epochs: int) -> LossFn:
        counts = np.asarray(target_counts, dtype=np.float64)
        return cibl_loss(len(self.classes_), np.log(counts / counts.sum()), float(self.tau),
                         float(self.lam), float(self.supcon_temperature))
