"""The shared machinery of heads trained by gradient descent on frozen features.

:class:`TorchHead` fits preprocessing on the training rows, carves or takes validation data,
trains a parameter dict with :func:`featlt.heads.training.train_parameters` and keeps the float64
parameters for prediction. Subclasses give the parameters (``_init_params``), the forward pass
(``_forward``) and the loss (``_make_loss``). Two hooks let later heads train on sub-class
targets: ``_fit_targets`` (class indices -> target indices and the number of targets) and
``_class_logits`` (target logits -> class logits, e.g. ``logsumexp`` over a class's
sub-classes); both are the identity here. Three more let a head train on more than the features
(``_train_inputs``: e.g. augmented views beside them, read by ``_train_forward``) or move its
targets while training (``_retarget``: e.g. CWS's dynamic sub-classes); by default none is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featlt.errors import FeatltError
from featlt.evaluation.metrics import balanced_accuracy_torch
from featlt.heads.base import (
    BaseHead,
    HeadInputError,
    check_validation,
)
from featlt.heads.losses import LossFn
from featlt.heads.preprocess import apply_preprocessor, check_preprocess, fit_preprocessor
from featlt.heads.streaming import StreamedFeatures
from featlt.heads.training import (
    ForwardFn,
    RetargetFn,
    TrainConfig,
    ValidateFn,
    train_parameters,
)

DEVICES = ("auto", "cpu", "cuda")


def param_error(owner: object, name: str, rule: str, value: Any) -> HeadInputError:
    """The scikit-learn style parameter message."""
    return HeadInputError(
        f"The '{name}' parameter of {type(owner).__name__} must be {rule}. Got {value!r} instead."
    )


def mlp_embed(params: dict[str, torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
    """The optional MLP projection ``relu(Z P^T + p)``; the identity without ``proj_weight``."""
    if "proj_weight" not in params:
        return Z
    return torch.relu(Z @ params["proj_weight"].T + params["proj_bias"])


def uniform_init(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """torch.nn.Linear's default initialisation, seeded: U(-1/sqrt(cols), 1/sqrt(cols))."""
    bound = 1.0 / np.sqrt(max(cols, 1))
    return rng.uniform(-bound, bound, size=(rows, cols))


def logit_validator(
    logits_fn: ForwardFn, Zv: np.ndarray | StreamedFeatures, yv: np.ndarray, n_classes: int,
    device: str
) -> ValidateFn:
    """Score parameters on validation: (balanced accuracy, cross-entropy) of ``logits_fn``.

    Args:
        logits_fn: ``(params, Z) -> class logits (n, C)``.
        Zv: (n_val, D) validation inputs of ``logits_fn``, in memory or streamed (read chunk by
            chunk at every validation; only the (n_val,) predictions are kept).
        yv: (n_val,) class indices.
    """
    y_t = torch.as_tensor(yv, dtype=torch.int64, device=device)
    if isinstance(Zv, StreamedFeatures):
        def validate_streamed(params: dict[str, torch.Tensor]) -> tuple[float, float]:
            predictions, nll_sum = [], 0.0
            for positions, values in Zv.chunks():
                logits = logits_fn(params, torch.as_tensor(values, dtype=torch.float32,
                                                           device=device))
                rows = torch.as_tensor(positions, device=device)
                nll_sum += float(torch.nn.functional.cross_entropy(logits, y_t[rows],
                                                                   reduction="sum"))
                predictions.append(logits.argmax(dim=1))
            predicted = torch.cat(predictions)
            return (balanced_accuracy_torch(predicted, y_t, n_classes),
                    nll_sum / max(len(Zv), 1))

        return validate_streamed
    Z_t = torch.as_tensor(Zv, dtype=torch.float32, device=device)

    def validate(params: dict[str, torch.Tensor]) -> tuple[float, float]:
        logits = logits_fn(params, Z_t)
        nll = float(torch.nn.functional.cross_entropy(logits, y_t))
        return balanced_accuracy_torch(logits.argmax(dim=1), y_t, n_classes), nll

    return validate


class ValidationMixin:
    """Validation data for early stopping: given ``X_val``/``y_val``, or carved from train.

    Needs the attributes ``classes_``, ``early_stopping``, ``validation_fraction`` and
    ``random_state``.
    """

    def _validation_rows(
        self, y_index: np.ndarray, X_val: Any, y_val: Any, seed: int
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Return ``(train_rows, val_rows or None, X_val or None, y_val index or None)``.

        Without early stopping there is no validation: given ``X_val``/``y_val`` are ignored.
        """
        from featlt.data.validation import split_validation

        all_rows = np.arange(y_index.shape[0])
        if not self.early_stopping:
            return all_rows, None, None, None
        given = check_validation(self, X_val, y_val)
        if given is not None:
            return all_rows, None, *given
        try:
            tv = split_validation(
                y_index, all_rows, regime="carve", fraction=self.validation_fraction,
                seed=seed,
            )
        except FeatltError as err:
            raise HeadInputError(
                f"{type(self).__name__}.fit: no validation data was given and too little data to "
                f"carve one ({err}); pass X_val/y_val or set early_stopping=False"
            ) from err
        return tv.train, tv.val, None, None

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.SeedSequence().generate_state(1)[0])
        return int(self.random_state)


class TorchHead(ValidationMixin, BaseHead):
    """Base of the trainable heads; the parameters below are shared by all of them.

    Parameters:
        preprocess: none | standardize | l2 | pca_whiten, fitted on the training rows.
        hidden: width of an MLP projection ``relu(P z + p)`` before the classifier; 0: none.
        lr, weight_decay: Adam learning rate (cosine-annealed) and L2 penalty on weights.
        batch_size, max_epochs: minibatch size and epoch budget.
        patience: epochs without validation improvement before stopping.
        early_stopping: keep the epoch with the best validation balanced accuracy (ties: lower
            validation cross-entropy). Validation is ``X_val, y_val`` given to ``fit``, otherwise
            carved from the training rows (``validation_fraction`` of each class with at least 2
            rows). Without it the last epoch is kept.
        class_counts: per-class training counts for the prior (aligned with ``classes_``);
            None: counted from the training labels.
        temperature: ``predict_proba`` is ``softmax(logits / temperature)``.
        device: auto | cpu | cuda for training; prediction runs in float64 on the CPU.
        random_state: seeds initialisation, carving and batch order.
    """

    def _init_params(self, rng: np.random.Generator, dim: int, n_out: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _forward(self, params: dict[str, torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _make_loss(self, target_counts: np.ndarray, max_epochs: int) -> LossFn:
        raise NotImplementedError

    def _config_extra(self) -> dict[str, Any]:
        """Training-config overrides of a subclass (sampling, first eligible epoch)."""
        return {}

    def _fit_targets(self, Z: np.ndarray, y_index: np.ndarray) -> tuple[np.ndarray, int]:
        """Training targets ``(n,)`` and their number K (classes here)."""
        return y_index, len(self.classes_)

    def _class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Map target logits ``(n, K)`` to class logits ``(n, C)`` (identity here)."""
        return logits

    def _train_inputs(self, Z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """What the training forward sees for the training rows ``rows`` of ``fit``'s X:
        ``Z`` (n, D) here (preprocessed features)."""
        return Z

    def _train_forward(self, params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The forward pass used while training, on rows of :meth:`_train_inputs`; the loss
        receives its output. :meth:`_forward` here."""
        return self._forward(params, inputs)

    def _retarget(self, Z: np.ndarray, targets: np.ndarray) -> RetargetFn | None:
        """A per-epoch target update for ``train_parameters`` (None here: fixed targets)."""
        return None

    def _check_params(self) -> None:
        check_preprocess(self.preprocess, type(self).__name__)
        checks = [
            ("hidden", isinstance(self.hidden, (int, np.integer)) and self.hidden >= 0,
             "an int >= 0"),
            ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a float > 0"),
            ("weight_decay", isinstance(self.weight_decay, (int, float))
             and self.weight_decay >= 0, "a float >= 0"),
            ("batch_size", isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1,
             "an int >= 1"),
            ("max_epochs", isinstance(self.max_epochs, (int, np.integer)) and self.max_epochs >= 1,
             "an int >= 1"),
            ("patience", self.patience is None
             or (isinstance(self.patience, (int, np.integer)) and self.patience >= 1),
             "an int >= 1 or None"),
            ("validation_fraction", isinstance(self.validation_fraction, float)
             and 0 < self.validation_fraction < 1, "a float in (0, 1)"),
            ("device", self.device in DEVICES, f"one of {', '.join(DEVICES)}"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise param_error(self, name, rule, getattr(self, name))

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        X_val: Any = None,
        y_val: Any = None,
    ) -> TorchHead:
        """Fit on ``X`` (n, D) and labels ``y`` (n,); early-stop on ``X_val``/``y_val`` if given.

        ``X`` (and ``X_val``) may be :class:`~featlt.heads.streaming.StreamedFeatures`: the
        preprocessing statistics then come from one pass over the chunks and training reads
        them in shuffled chunk order (heads that move their targets, CWS, need arrays).

        Returns:
            self, with ``classes_``, ``class_counts_``, ``log_prior_``, ``preprocess_state_``,
            ``state_`` (float64 parameters), ``best_epoch_``, ``n_epochs_``, ``val_score_``,
            ``history_`` and ``device_``.
        """
        from featlt.runtime import resolve_torch_device

        self._check_params()
        # The prior counts every row of y (or comes from class_counts), before any carving.
        X, y_index, weights = self._start_fit(X, y, sample_weight)
        seed = self._seed()
        train_rows, val_rows, Xv, yv = self._validation_rows(y_index, X_val, y_val, seed)
        if val_rows is not None:
            Xv, yv = X[val_rows], y_index[val_rows]
        X, y_index, weights = X[train_rows], y_index[train_rows], weights[train_rows]
        self.device_ = resolve_torch_device(self.device)
        self.preprocess_state_ = fit_preprocessor(self.preprocess, X, weights)
        Z = apply_preprocessor(self.preprocess, self.preprocess_state_, X)
        targets, n_out = self._fit_targets(Z, y_index)
        target_counts = (self.class_counts_ if n_out == len(self.classes_)
                         else np.bincount(targets, minlength=n_out).astype(np.float64))
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        init = self._init_params(rng, Z.shape[1], n_out)
        validate = None
        if Xv is not None:
            Zv = apply_preprocessor(self.preprocess, self.preprocess_state_, Xv)
            validate = logit_validator(
                lambda params, Z: self._class_logits(self._forward(params, Z)),
                Zv, yv, len(self.classes_), self.device_,
            )
        config = TrainConfig(
            lr=float(self.lr), weight_decay=float(self.weight_decay),
            batch_size=int(self.batch_size), max_epochs=int(self.max_epochs),
            patience=self.patience, seed=seed, device=self.device_,
            **self._config_extra(),
        )
        result = train_parameters(
            init, self._train_forward, self._train_inputs(Z, train_rows), targets, weights,
            self._make_loss(target_counts, int(self.max_epochs)), config, validate,
            decay=tuple(k for k in init if k.endswith("weight")),
            retarget=self._retarget(Z, targets),
        )
        self.state_ = result.params
        self.best_epoch_ = result.best_epoch
        self.n_epochs_ = result.n_epochs
        self.val_score_ = result.val_score
        self.history_ = result.history
        return self

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Preprocessed (and projected) features ``(n, H)`` float64 of validated ``X`` (n, D)."""
        Z = apply_preprocessor(self.preprocess, self.preprocess_state_, X)
        params = {k: torch.from_numpy(v) for k, v in self.state_.items()}
        with torch.no_grad():
            return mlp_embed(params, torch.from_numpy(np.ascontiguousarray(Z))).numpy()

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        Z = torch.from_numpy(
            np.ascontiguousarray(apply_preprocessor(self.preprocess, self.preprocess_state_, X))
        )
        params = {k: torch.from_numpy(v) for k, v in self.state_.items()}
        with torch.no_grad():
            return self._class_logits(self._forward(params, Z)).numpy()
