"""The head protocol (docs/architecture.md, "Contracts") and what every head shares.

A head is a scikit-learn classifier on frozen features:

- ``__init__`` stores parameters only; ``fit(X, y, sample_weight=None)`` returns ``self``;
  learned state ends in ``_``; ``classes_`` maps arbitrary labels to output columns.
- The class prior comes from the ``class_counts`` parameter (one count per class of
  ``classes_``, e.g. the long-tailed training counts of a view) or, when it is None, from ``y``.
- ``logits(X)`` returns the **raw logits** ``(n, C)``, one column per class, also for two
  classes: group mapping, selection and the post-hoc adjustments need every class's logit.
  ``predict_proba`` is ``softmax(logits / temperature)`` and ``predict`` its argmax.
- ``decision_function`` is scikit-learn's: the margin ``logit_1 - logit_0`` ``(n,)`` for two
  classes, the logits ``(n, C)`` otherwise.
- Predictions are computed in float64 on the CPU from numpy state, so they do not depend on the
  batch shape or the training device.

Bad input raises :class:`HeadInputError`, a :class:`~featlt.errors.FeatltError` that is also a
``ValueError`` (what scikit-learn's conformance checks expect).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from featlt.errors import FeatltError
from featlt.heads.streaming import StreamedFeatures

PREDICT_CHUNK = 16384  # rows per float64 inference block (bounds memory, not results)


class HeadInputError(FeatltError, ValueError):
    """Bad input to a head: wrong shape, NaN/Inf, labels or counts that do not fit."""


def check_features(head: BaseEstimator, X: Any, reset: bool, what: str = "X") -> np.ndarray:
    """Validate a feature matrix and return it as float64 ``(n, D)``.

    With ``reset`` the feature count is recorded (``n_features_in_``), otherwise it is checked.
    Streamed features (:class:`~featlt.heads.streaming.StreamedFeatures`) are returned as they
    are after that check: the store refuses non-finite rows as it reads them.
    """
    from sklearn.utils.validation import validate_data

    if isinstance(X, StreamedFeatures):
        return check_streamed_width(head, X, reset, what)
    try:
        X = validate_data(head, X, reset=reset, dtype=np.float64, ensure_all_finite=True)
    except ValueError as err:
        raise HeadInputError(
            f"{what} for {type(head).__name__}: {err} Pass a finite 2-D float array "
            "(n_samples, n_features), e.g. the features of a store read by featlt."
        ) from err
    return X


def check_streamed_width(head: BaseEstimator, X: StreamedFeatures, reset: bool,
                         what: str) -> StreamedFeatures:
    """Record (``reset``) or check ``n_features_in_`` against streamed ``X`` (n, D)."""
    if reset:
        head.n_features_in_ = X.dim
    elif X.dim != head.n_features_in_:
        raise HeadInputError(
            f"{what} for {type(head).__name__}: {X.dim} features, but the head was fitted on "
            f"{head.n_features_in_}; pass features of the same backbone"
        )
    return X


def check_validation(
    head: BaseEstimator, X_val: Any, y_val: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validation rows given to a fitted-in-progress head (``classes_`` set), or None.

    Returns:
        ``(X_val (m, D) float64, y_val (m,) int64 indices into classes_)``; None when neither is
        given. Only one of them, a length mismatch, no rows or labels outside the training
        classes are refused.
    """
    if X_val is None and y_val is None:
        return None
    if X_val is None or y_val is None:
        raise HeadInputError(f"{type(head).__name__}.fit: pass both X_val and y_val, or neither")
    Xv = check_features(head, X_val, reset=False, what="X_val")
    yv = np.asarray(y_val).reshape(-1)
    if yv.shape[0] != Xv.shape[0] or yv.shape[0] == 0:
        raise HeadInputError(
            f"validation data for {type(head).__name__}: X_val has {Xv.shape[0]} rows and "
            f"y_val {yv.shape[0]}; pass one label per row and at least one row"
        )
    unknown = np.setdiff1d(yv, head.classes_)
    if unknown.size:
        raise HeadInputError(
            f"y_val for {type(head).__name__}: labels {unknown[:5].tolist()} do not occur "
            "in the training labels; validate on the training classes only"
        )
    return Xv, np.searchsorted(head.classes_, yv)


def check_features_labels(
    head: BaseEstimator, X: Any, y: Any, sample_weight: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate training input.

    Returns:
        ``(X (n, D) float64, y (n,), sample_weight (n,) float64)``.
    """
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import validate_data

    try:
        if isinstance(X, StreamedFeatures):
            X = check_streamed_width(head, X, True, "X")
            y = np.asarray(y).reshape(-1)
            if y.shape[0] != len(X):
                raise ValueError(f"X has {len(X)} rows but y has {y.shape[0]} labels.")
        else:
            X, y = validate_data(head, X, y, reset=True, dtype=np.float64,
                                 ensure_all_finite=True)
        check_classification_targets(y)
        if sample_weight is None:
            sample_weight = np.ones(X.shape[0])
        else:
            sample_weight = np.broadcast_to(
                np.asarray(sample_weight, dtype=np.float64), (X.shape[0],)
            ).copy()
    except ValueError as err:
        raise HeadInputError(
            f"training data for {type(head).__name__}: {err} Pass finite features "
            "(n_samples, n_features), one class label per row and optional non-negative "
            "sample weights of the same length."
        ) from err
    if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
        raise HeadInputError(
            f"sample_weight for {type(head).__name__}: NaN, Inf or negative weights; "
            "pass finite weights >= 0"
        )
    if not sample_weight.sum() > 0:
        raise HeadInputError(
            f"sample_weight for {type(head).__name__}: all sample weights are zero; give some "
            "rows a positive weight"
        )
    return X, y, sample_weight


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary labels to 0..C-1: returns ``(classes (C,), y_index (n,) int64)``."""
    classes, y_index = np.unique(y, return_inverse=True)
    return classes, y_index.astype(np.int64)


def resolve_class_counts(
    head: BaseEstimator, class_counts: Any, y_index: np.ndarray, n_classes: int
) -> np.ndarray:
    """Per-class training counts ``(C,)`` float64: the ``class_counts`` parameter or from ``y``.

    ``class_counts`` must hold one positive count per class of ``classes_`` (sorted labels).
    """
    if class_counts is None:
        return np.bincount(y_index, minlength=n_classes).astype(np.float64)
    counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
    if counts.shape[0] != n_classes:
        raise HeadInputError(
            f"class_counts for {type(head).__name__}: {counts.shape[0]} counts but y has "
            f"{n_classes} classes; a class absent from the training rows cannot be learned — "
            "give one count per class present in y, or add training rows for the missing class"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts <= 0):
        raise HeadInputError(
            f"class_counts for {type(head).__name__}: every count must be a positive number, "
            f"got {counts.tolist()}"
        )
    return counts


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, C)`` float64 logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def check_temperature(head: BaseEstimator) -> float:
    temperature = head.temperature  # type: ignore[attr-defined]
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise HeadInputError(
            f"The 'temperature' parameter of {type(head).__name__} must be a float > 0. "
            f"Got {temperature!r} instead."
        )
    return float(temperature)


class BaseHead(ClassifierMixin, BaseEstimator):
    """Shared prediction path. Subclasses implement ``fit`` and ``_raw_logits`` (one block of
    validated rows); everything else, and every caller, goes through :meth:`logits`.

    Fitted attributes every head sets: ``classes_`` (C,), ``class_counts_`` (C,) float64,
    ``log_prior_`` (C,) float64 (log of the normalised counts), ``n_features_in_``.
    """

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        """Logits ``(n, C)`` float64 for validated float64 features ``(n, D)``."""
        raise NotImplementedError

    def _start_fit(
        self, X: Any, y: Any, sample_weight: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What every ``fit`` does first: validate ``X`` (n, D), ``y`` (n,) and the weights, set
        ``classes_``, refuse a single class, and set the prior (``class_counts_``,
        ``log_prior_``) from ``self.class_counts`` or from every row of ``y``.

        Returns ``(X (n, D) float64, y_index (n,) class indices, weights (n,))``.
        """
        X, y, weights = check_features_labels(self, X, y, sample_weight)
        self.classes_, y_index = encode_labels(y)
        if len(self.classes_) < 2:
            raise HeadInputError(
                f"{type(self).__name__}.fit: y has only one class ({self.classes_[0]!r}); "
                "a classifier needs at least 2 classes"
            )
        counts = resolve_class_counts(self, self.class_counts, y_index, len(self.classes_))
        self.class_counts_ = counts
        self.log_prior_ = np.log(counts / counts.sum())
        return X, y_index, weights

    def logits(self, X: Any) -> np.ndarray:
        """Raw logits ``(n, C)`` float64 for features ``X`` ``(n, D)`` (an array, or
        :class:`~featlt.heads.streaming.StreamedFeatures` read chunk by chunk), column ``c`` for
        ``classes_[c]`` (no temperature)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        X = check_features(self, X, reset=False)
        if isinstance(X, StreamedFeatures):  # one chunk at a time, only (n, C) kept
            parts = [self._raw_logits(values) for _, values in X.chunks()]
        else:
            parts = [
                self._raw_logits(X[i : i + PREDICT_CHUNK])
                for i in range(0, X.shape[0], PREDICT_CHUNK)
            ]
        if not parts:
            return np.empty((0, len(self.classes_)), dtype=np.float64)
        return np.concatenate(parts)

    def decision_function(self, X: Any) -> np.ndarray:
        """scikit-learn's decision function: for two classes the margin
        ``logit(classes_[1]) - logit(classes_[0])`` ``(n,)``, otherwise :meth:`logits` ``(n, C)``.
        """
        logits = self.logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """``softmax(logits / temperature)``: ``(n, C)`` float64, rows sum to 1."""
        temperature = check_temperature(self)
        return softmax(self.logits(X) / temperature)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba` ``(n, C)``, computed stably."""
        from scipy.special import log_softmax

        return log_softmax(self.logits(X) / check_temperature(self), axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The label (from ``classes_``) with the largest logit, ``(n,)``."""
        logits = self.logits(X)  # first: it refuses an unfitted head
        return self.classes_[np.argmax(logits, axis=1)]
