"""Post-hoc wrappers over a fitted base head (Kang et al. 2020 [code]; Menon et al. 2021 [paper]).

- :class:`TauNorm`: drop the base's bias and rescale each class vector,
  ``w_c <- w_c / ||w_c||^tau``; with ``tau = 0`` it equals the base *without its bias*.
- :class:`LWS`: learnable weight scaling — freeze the base, learn one scale per class,
  ``f_c(z) = s_c * (w_c h(z) + b_c)`` (the bias is scaled too), class-balanced sampling.
- :class:`PostHocLA`: ``f_c(z) - tau * log pi_c``; with ``tau = 0`` it equals the base.

``base`` is a head; an already fitted base is used as it is, an unfitted one is cloned and fitted
on ``fit``'s data (the default base is a plain :class:`~featlt.heads.linear.LinearHead`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featlt.heads.base import (
    BaseHead,
    HeadInputError,
    check_features_labels,
    resolve_class_counts,
)
from featlt.heads.linear import LinearHead
from featlt.heads.losses import cross_entropy
from featlt.heads.streaming import StreamedFeatures
from featlt.heads.trainable import DEVICES, ValidationMixin, logit_validator, param_error
from featlt.heads.training import TrainConfig, train_parameters


def is_fitted(head: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(head)
    except NotFittedError:
        return False
    return True


class PostHocWrapper(BaseHead):
    """Fits or adopts ``base`` and takes its classes, prior and feature count."""

    def _fit_base(
        self, X: Any, y: Any, sample_weight: Any, X_val: Any, y_val: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return validated ``(X (n, D), y_index (n,), sample_weight (n,))`` and set ``base_``."""
        from sklearn.base import clone

        X, y, weights = check_features_labels(self, X, y, sample_weight)
        base = self.base if self.base is not None else LinearHead()
        if is_fitted(base):
            if base.n_features_in_ != X.shape[1]:
                raise HeadInputError(
                    f"{type(self).__name__}: the fitted base expects {base.n_features_in_} "
                    f"features but X has {X.shape[1]}; pass features of the same backbone"
                )
            self.base_ = base
        else:
            self.base_ = clone(base).fit(X, y, sample_weight=weights, X_val=X_val, y_val=y_val)
        self.classes_ = self.base_.classes_
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise HeadInputError(
                f"{type(self).__name__}: labels {unknown[:5].tolist()} were not seen by the base "
                "head; fit the wrapper on the base's training classes"
            )
        self.class_counts_ = self.base_.class_counts_
        self.log_prior_ = self.base_.log_prior_
        return X, np.searchsorted(self.classes_, y), weights


class TauNorm(PostHocWrapper):
    """tau-normalised linear head. ``tau`` in [0, 2] (chosen on validation by the selection).

    ``base`` must be a :class:`~featlt.heads.linear.LinearHead` (it needs a weight matrix).
    """

    def __init__(self, base: Any = None, tau: float = 1.0, temperature: float = 1.0):
        self.base = base
        self.tau = tau
        self.temperature = temperature

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None) -> TauNorm:
        if not isinstance(self.tau, (int, float)) or not 0 <= self.tau <= 2:
            raise param_error(self, "tau", "a float in [0, 2]", self.tau)
        if self.base is not None and not isinstance(self.base, LinearHead):
            raise HeadInputError(
                f"TauNorm needs a base with a linear layer (a LinearHead: linear, crt, la_loss, "
                f"balanced_softmax, mlp_la); got {type(self.base).__name__}"
            )
        self._fit_base(X, y, sample_weight, X_val, y_val)
        return self

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        weight = self.base_.state_["weight"]
        norms = np.maximum(np.linalg.norm(weight, axis=1), 1e-12) ** float(self.tau)
        return self.base_.embed(X) @ (weight / norms[:, None]).T


class PostHocLA(PostHocWrapper):
    """Post-hoc logit adjustment ``f(z) - tau * log pi``.

    ``class_counts`` overrides the base's prior (one count per class of the base).
    """

    def __init__(self, base: Any = None, tau: float = 1.0, class_counts: Any = None,
                 temperature: float = 1.0):
        self.base = base
        self.tau = tau
        self.class_counts = class_counts
        self.temperature = temperature

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None) -> PostHocLA:
        if not isinstance(self.tau, (int, float)) or self.tau < 0:
            raise param_error(self, "tau", "a float >= 0", self.tau)
        _, y_index, _ = self._fit_base(X, y, sample_weight, X_val, y_val)
        if self.class_counts is not None:
            counts = resolve_class_counts(self, self.class_counts, y_index, len(self.classes_))
            self.class_counts_ = counts
            self.log_prior_ = np.log(counts / counts.sum())
        return self

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        return self.base_.logits(X) - float(self.tau) * self.log_prior_


class LWS(ValidationMixin, PostHocWrapper):
    """Learnable weight scaling: one scale per class over the frozen base's logits.

    Scales start at 1 and are trained with cross-entropy and class-balanced sampling (Adam,
    cosine-annealed ``lr``), early-stopped on validation like the trainable heads.
    Fitted: ``scales_`` (C,), ``best_epoch_``, ``n_epochs_``, ``val_score_``, ``history_``.
    """

    def __init__(
        self,
        base: Any = None,
        lr: float = 0.1,
        batch_size: int = 512,
        max_epochs: int = 20,
        patience: int | None = 5,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        temperature: float = 1.0,
        device: str = "auto",
        random_state: int | None = 0,
    ):
        self.base = base
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.temperature = temperature
        self.device = device
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None) -> LWS:
        from featlt.runtime import resolve_torch_device

        for name, ok, rule in (
            ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a float > 0"),
            ("batch_size", isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1,
             "an int >= 1"),
            ("max_epochs", isinstance(self.max_epochs, (int, np.integer)) and self.max_epochs >= 1,
             "an int >= 1"),
            ("device", self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
        ):
            if not ok:
                raise param_error(self, name, rule, getattr(self, name))
        X, y_index, weights = self._fit_base(X, y, sample_weight, X_val, y_val)
        seed = self._seed()
        train_rows, val_rows, Xv, yv = self._validation_rows(y_index, X_val, y_val, seed)
        if val_rows is not None:
            Xv, yv = X[val_rows], y_index[val_rows]
        self.device_ = resolve_torch_device(self.device)
        train_X = X[train_rows]
        # Streamed features: the base's logits (n, C) are computed chunk by chunk as read.
        logits = (train_X.mapped(self.base_.logits, len(self.classes_))
                  if isinstance(train_X, StreamedFeatures) else self.base_.logits(train_X))
        validate = None
        if Xv is not None:
            validate = logit_validator(
                self._scaled, self.base_.logits(Xv), yv, len(self.classes_), self.device_
            )
        result = train_parameters(
            {"scales": np.ones(len(self.classes_))}, self._scaled, logits, y_index[train_rows],
            weights[train_rows], cross_entropy(),
            TrainConfig(lr=float(self.lr), weight_decay=0.0, batch_size=int(self.batch_size),
                        max_epochs=int(self.max_epochs), patience=self.patience,
                        sampling="class_balanced", seed=seed, device=self.device_),
            validate,
        )
        self.scales_ = result.params["scales"]
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = result.n_epochs
        self.val_score_ = result.val_score
        self.history_ = result.history
        return self

    @staticmethod
    def _scaled(params: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        return logits * params["scales"]

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        return self.base_.logits(X) * self.scales_
