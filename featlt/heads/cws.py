"""CWS head: a linear head over classwise sub-classes, mapped back to classes (docs/methods.md,
"CWS").

[featlt's reconstruction of Yuan et al., Mathematics 2023; no public code] Every class ``c`` is
split into ``K_c`` sub-classes of near-equal size (:func:`featlt.cluster.splitting.classwise_split`:
k-means centroids, then a size-constrained assignment), so the head trains on a label space that
is *less* imbalanced than the classes. The linear head (logit-adjusted loss by default) uses the
sub-class counts as its prior. Class logits come from the group mapping

    mean:  g_c(z) = logsumexp_{k in c} f_{c,k}(z) - log K_c    (prior-neutral, the default)
    sum:   g_c(z) = logsumexp_{k in c} f_{c,k}(z)              (the sum of sub-class probabilities)

The plain sum gives class ``c`` a prior proportional to ``K_c`` and undoes the balancing; both
are reported (``mapping_val_``). With a trainable projection (``hidden > 0``) and ``dynamic``,
sub-class prototypes live in the projected space and move by an exponential moving average once
per epoch, and the samples of each class are re-assigned to its prototypes under the same equal
capacities (the paper's "dynamic" part; the EMA per epoch rather than per step is featlt's).
Without a projection the split is static.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featlt.heads.linear import LinearHead
from featlt.heads.trainable import mlp_embed, param_error
from featlt.heads.training import RetargetFn

MAPPINGS = ("mean", "sum")


def group_logsumexp(logits: torch.Tensor, sub_to_class: np.ndarray) -> torch.Tensor:
    """``logsumexp`` of each class's sub-class logits: (n, S) -> (n, C).

    Args:
        logits: (n, S) sub-class logits.
        sub_to_class: (S,) int class of each sub-class (every class 0..C-1 has at least one).
    """
    n_classes = int(sub_to_class.max()) + 1
    width = int(np.bincount(sub_to_class, minlength=n_classes).max())
    # index (C, width) into the sub-class columns; unused slots point at a -inf column.
    index = np.full((n_classes, width), sub_to_class.size, dtype=np.int64)
    for c in range(n_classes):
        members = np.flatnonzero(sub_to_class == c)
        index[c, : members.size] = members
    padded = torch.cat([logits, logits.new_full((logits.shape[0], 1), -torch.inf)], dim=1)
    return torch.logsumexp(padded[:, torch.from_numpy(index).to(logits.device)], dim=2)


class CWSHead(LinearHead):
    """Classwise-splitting head [reconstruction].

    Parameters beyond :class:`~featlt.heads.linear.LinearHead`'s (whose ``loss`` defaults to
    ``la`` here, applied with the sub-class counts):
        n_ref: target sub-class size of the split rule; None: the median class count.
        m_min: the fewest samples a planned sub-class may hold.
        k_per_class: explicit sub-classes per class (sequence of C ints) instead of the rule.
        mapping: mean (prior-neutral, ``- log K_c``) | sum; how sub-class logits become class
            logits.
        dynamic: with ``hidden > 0``, move prototypes by EMA and re-assign every epoch.
        momentum: EMA momentum ``m`` of the prototypes, ``mu <- m mu + (1 - m) mean``.

    Fitted: ``sub_to_class_`` (S,) class of each sub-class, ``split_plan_`` (the plan with the
    imbalance factor before and after), ``mapping_val_`` (validation balanced accuracy of both
    mappings, when validation data was given), ``reassigned_`` (share of training rows that
    changed sub-class at each dynamic re-assignment) and ``sub_labels_`` (n_train,) the final
    sub-class of each training row (not saved).
    """

    def __init__(
        self,
        n_ref: float | None = None,
        m_min: int = 20,
        k_per_class: Any = None,
        mapping: str = "mean",
        dynamic: bool = True,
        momentum: float = 0.9,
        loss: str = "la",
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
        super().__init__(
            loss=loss, tau=tau, sampling=sampling, preprocess=preprocess, hidden=hidden, lr=lr,
            weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs,
            patience=patience, early_stopping=early_stopping,
            validation_fraction=validation_fraction, class_counts=class_counts,
            temperature=temperature, device=device, random_state=random_state,
        )
        self.n_ref = n_ref
        self.m_min = m_min
        self.k_per_class = k_per_class
        self.mapping = mapping
        self.dynamic = dynamic
        self.momentum = momentum

    def _check_cws_params(self) -> None:
        if self.mapping not in MAPPINGS:
            raise param_error(self, "mapping", f"one of {', '.join(MAPPINGS)}", self.mapping)
        if not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            raise param_error(self, "momentum", "a float in [0, 1)", self.momentum)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None) -> CWSHead:
        """Split, train on sub-classes, and (given validation data) score both mappings."""
        self._check_cws_params()
        super().fit(X, y, sample_weight, X_val, y_val)
        self.mapping_val_ = None
        if X_val is not None and y_val is not None:
            self.mapping_val_ = self._mapping_scores(X_val, y_val)
        return self

    def _mapping_scores(self, X_val: Any, y_val: Any) -> dict[str, float]:
        """Validation balanced accuracy of each mapping (the fitted head is left unchanged)."""
        from featlt.evaluation.metrics import balanced_accuracy

        chosen = self.mapping
        y_index = np.searchsorted(self.classes_, np.asarray(y_val))
        scores = {}
        try:
            for mapping in MAPPINGS:
                self.mapping = mapping
                pred = self.logits(X_val).argmax(axis=1)
                scores[mapping] = float(balanced_accuracy(y_index, pred, len(self.classes_)))
        finally:
            self.mapping = chosen
        return scores

    def _fit_targets(self, Z: np.ndarray, y_index: np.ndarray) -> tuple[np.ndarray, int]:
        """Sub-class of every training row by the balanced classwise split; S sub-classes."""
        from featlt.cluster.splitting import classwise_split
        from featlt.runtime import to_jsonable

        k_per_class = None if self.k_per_class is None else np.asarray(self.k_per_class)
        split = classwise_split(
            Z, y_index, n_classes=len(self.classes_), n_ref=self.n_ref, m_min=int(self.m_min),
            k_per_class=k_per_class, seed=self._seed(),
            device="cpu" if self.device_ == "cpu" else "auto",
        )
        self.sub_to_class_ = split.sub_to_class
        self.split_plan_ = to_jsonable(split.plan_record())
        self.sub_labels_ = split.sub_labels
        self.reassigned_: list[float] = []
        return split.sub_labels, int(split.sub_to_class.size)

    def _class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        grouped = group_logsumexp(logits, np.asarray(self.sub_to_class_))
        if self.mapping == "sum":
            return grouped
        k = np.bincount(np.asarray(self.sub_to_class_), minlength=grouped.shape[1])
        return grouped - torch.as_tensor(np.log(k), dtype=grouped.dtype, device=grouped.device)

    def _retarget(self, Z: np.ndarray, targets: np.ndarray) -> RetargetFn | None:
        """Dynamic CWS: EMA prototypes in the projected space, balanced re-assignment."""
        if not (self.hidden and self.dynamic):
            return None
        from featlt.cluster.splitting import rebalance_within_classes

        sub_to_class = np.asarray(self.sub_to_class_)
        classes = sub_to_class[targets]
        state: dict[str, np.ndarray] = {"labels": targets}

        def retarget(epoch: int, params: dict[str, torch.Tensor]) -> np.ndarray | None:
            if epoch == 0:
                return None
            with torch.no_grad():
                Z_t = torch.as_tensor(Z, dtype=torch.float32, device=params["weight"].device)
                H = mlp_embed(params, Z_t).double().cpu().numpy()
            means = _sub_means(H, state["labels"], sub_to_class.size)
            previous = state.get("prototypes")
            state["prototypes"] = means if previous is None else (
                self.momentum * previous + (1.0 - self.momentum) * means)
            labels = rebalance_within_classes(H, classes, sub_to_class, state["prototypes"])
            self.reassigned_.append(float((labels != state["labels"]).mean()))
            state["labels"] = self.sub_labels_ = labels
            return labels

        return retarget


def _sub_means(H: np.ndarray, labels: np.ndarray, n_subclasses: int) -> np.ndarray:
    """(S, H) mean of the rows of ``H`` (n, H) in each sub-class ``labels`` (n,)."""
    sums = np.zeros((n_subclasses, H.shape[1]))
    np.add.at(sums, labels, H)
    return sums / np.maximum(np.bincount(labels, minlength=n_subclasses), 1)[:, None]
