"""Nearest class mean (Kang et al. 2020, "cl2n" features).

Training features are centred by the global training mean and L2-normalised; each class keeps the
mean of its normalised features. A test feature, centred and normalised the same way, scores
``-||z - m_c||^2`` (``metric="l2"``, as in the authors' code [code]) or ``cos(z, m_c)``
(``metric="cosine"``; the authors' code uses an unnormalised dot product there, featlt the true
cosine, as the paper describes). The raw logits are these similarities, so a temperature
(selected on validation) is needed for useful probabilities. The normalisation, class sums and
cosines come from :mod:`featlt.cluster.prototypes` (shared with the separability NCM score).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featlt.cluster.prototypes import centred_unit, class_sums, cosine_to_means
from featlt.heads.base import BaseHead, HeadInputError
from featlt.heads.preprocess import apply_preprocessor, check_preprocess, fit_preprocessor
from featlt.heads.streaming import StreamedFeatures
from featlt.heads.trainable import param_error

METRICS = ("l2", "cosine")


class NCMHead(BaseHead):
    """Nearest class mean on centred, L2-normalised features.

    Parameters:
        metric: l2 | cosine.
        preprocess: preprocessing before centring (none by default).
        class_counts, temperature: as for every head.

    Fitted ``state_``: ``global_mean`` (D,), ``means`` (C, D).
    """

    def __init__(
        self,
        metric: str = "cosine",
        preprocess: str = "none",
        class_counts: Any = None,
        temperature: float = 1.0,
    ):
        self.metric = metric
        self.preprocess = preprocess
        self.class_counts = class_counts
        self.temperature = temperature

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None) -> NCMHead:
        """Compute the class means of ``X`` (n, D), an array or streamed features (then from
        streamed sums); ``X_val``/``y_val`` are accepted and unused (NCM has nothing to stop
        early)."""
        if self.metric not in METRICS:
            raise param_error(self, "metric", f"one of {', '.join(METRICS)}", self.metric)
        check_preprocess(self.preprocess, type(self).__name__)
        X, y_index, weights = self._start_fit(X, y, sample_weight)
        self.preprocess_state_ = fit_preprocessor(self.preprocess, X, weights)
        Z = apply_preprocessor(self.preprocess, self.preprocess_state_, X)
        n_classes = len(self.classes_)
        mass = np.bincount(y_index, weights=weights, minlength=n_classes)
        if np.any(mass <= 0):
            raise HeadInputError(
                "NCMHead.fit: a class has zero total sample_weight; give every class weight"
            )
        if isinstance(Z, StreamedFeatures):  # two passes: the global mean, then class sums
            global_mean = sum(weights[rows] @ values for rows, values in Z.chunks())
            global_mean = global_mean / weights.sum()
            sums = sum(class_sums(centred_unit(values, global_mean, np.float64), y_index[rows],
                                  n_classes, weights[rows]) for rows, values in Z.chunks())
        else:
            global_mean = weights @ Z / weights.sum()
            U = centred_unit(Z, global_mean, np.float64)
            sums = class_sums(U, y_index, n_classes, weights)
        means = sums / mass[:, None]
        self.state_ = {"global_mean": global_mean, "means": means}
        return self

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        Z = apply_preprocessor(self.preprocess, self.preprocess_state_, X)
        U = centred_unit(Z, self.state_["global_mean"], np.float64)
        means = self.state_["means"]
        if self.metric == "cosine":
            return cosine_to_means(U, means, zero_mean_score=0.0)
        return 2.0 * U @ means.T - (U**2).sum(axis=1, keepdims=True) - (means**2).sum(axis=1)
