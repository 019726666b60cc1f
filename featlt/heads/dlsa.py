"""DLSA-style balanced label-space stages (docs/methods.md, "DLSA").

[Xu et al., ECCV 2022: the staging idea and the cluster-aided classifier read in the authors'
code; the router and the leave-one-out histograms are featlt's reconstruction] A density router
peels the densest fraction ``rho`` of the still-active training rows off at every stage; dense
regions are dominated by head classes, so what remains is progressively more balanced:

1. Router: a cluster-size-weighted Gaussian mixture on faiss k-means of the active rows
   (:func:`featlt.cluster.density.fit_density`, ``K = clip(N_active / points_per_cluster, C,
   max_clusters)``), on standardised features. Rows with ``log p(z)`` at or above the
   ``(1 - rho)`` quantile of the active training rows are peeled; the threshold is kept and
   applied unchanged to validation and test rows.
2. Cluster-aided head: a clone of ``stage_head`` on ``[z ; P_k(z)]``, where ``P_k`` is
   the class histogram of the peeled training rows of the row's most likely component ``k``.
   On train the histogram is computed **leave-one-out** (the row's own label removed), so the
   head cannot learn to copy the label; a component with no other peeled row gives the stage's
   class shares.
3. After ``depth`` stages a final clone of ``stage_head`` takes the remaining rows, with the
   stage-local class counts as its prior (heads that use a prior count it from their labels).
4. Routing prior [featlt's correction]: a stage head trained with the stage-local prior removed
   estimates ``log p(z | c, stage s)``; what a balanced test needs is ``log p(z | c) =
   log p(z | c, s) + log r_{c,s}``, where ``r_{c,s}`` is the share of class ``c``'s training rows
   routed to stage ``s``. Each stage adds ``tau_eff * log r_{c,s}`` to its logits, ``tau_eff``
   being how much of the prior the family's loss removes (1 for Balanced Softmax or class-balanced
   sampling, ``tau`` for the logit-adjusted loss, 0 for plain cross-entropy, whose stage logits
   already estimate the training posterior). Without it (the authors' stages) every stage
   assumes the test rows routed to it are balanced, while dense stages receive mostly head-class
   rows; ``routing_prior=False`` turns it off for comparison.

A row is classified by the first stage whose threshold it passes, else by the final head.
Classes absent from a stage's training rows get the logit ``row minimum - ABSENT_MARGIN`` there.
A stage that would leave fewer than ``min_stage_rows`` rows or fewer than two classes on
either side is skipped, and staging stops there (``stages_`` says so). ``depth = 0`` is the
final head on all rows (DLSA's base).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featlt import __version__
from featlt.errors import FeatltError
from featlt.heads.base import (
    BaseHead,
    check_features,
    check_validation,
)
from featlt.heads.linear import LOSSES, LinearHead, prior_removed
from featlt.heads.trainable import param_error

ABSENT_MARGIN = 50.0  # logit gap below the row minimum for a class a stage never saw
STAGE_FEATURES = ("z", "P_k")


def default_stage_head() -> LinearHead:
    """DLSA's stage head when none is given: a linear Balanced Softmax head."""
    return LinearHead(loss="balanced_softmax")


def stage_family_problem(estimator: Any) -> str | None:
    """Why ``estimator`` cannot be DLSA's stage head, or None.

    A stage head must be a trainable featlt head (it early-stops on the validation rows routed
    to its stage) trained with a ``loss`` of ce, la or balanced_softmax, so that how much of its
    training prior its logits remove (:func:`~featlt.heads.linear.prior_removed`) is known.
    Post-hoc wrappers (a ``base``), LDAM-DRW (margins + deferred re-weighting, no ``loss``) and
    CIBL (cosine + contrast, no ``loss``) are refused.
    """
    if not isinstance(estimator, BaseHead):
        return f"a featlt head estimator, not {type(estimator).__name__}"
    params = estimator.get_params(deep=False)
    if "base" in params:
        return f"{type(estimator).__name__} is a post-hoc wrapper, not a trainable head"
    if "early_stopping" not in params or params.get("loss") not in LOSSES:
        return (f"{type(estimator).__name__} has no loss of {', '.join(LOSSES)} (its prior "
                "removal is unknown)")
    return None


class DLSAHead(BaseHead):
    """Balanced label-space stages over a head family [code + reconstruction].

    Parameters:
        stage_head: the unfitted head every stage clones (``sklearn.base.clone``, as the
            post-hoc wrappers do with ``base``): a trainable head with a ``loss`` of ce, la or
            balanced_softmax (its prior removal must be known), e.g. ``LinearHead(loss="la")``.
            None: ``LinearHead(loss="balanced_softmax")``. Its own ``device``,
            ``random_state`` and (when ``max_epochs`` is set) ``max_epochs`` are replaced by
            this head's, one seed per stage.
        rho: share of the active training rows peeled at each stage, in (0, 1).
        depth: number of peeling stages (0: the final head alone).
        routing_prior: add ``tau_eff * log r_{c,s}`` to each stage's logits (step 4).
        points_per_cluster, max_clusters: the router's ``K = clip(N / points_per_cluster, C,
            max_clusters)``.
        prior_strength: pseudo-samples shrinking each component's variance to the global one.
        min_stage_rows: the fewest rows a stage may leave on either side.
        max_epochs: overrides the stage heads' epoch budget when set.
        class_counts: per-class counts for ``class_counts_`` (the stages use their own counts).
        device, random_state, temperature: as for the other heads.

    Fitted: ``sub_heads_`` (stage heads, then the final head; their ``classes_`` are class
    indices), ``router_state_`` (arrays: standardiser, thresholds, per-stage mixture and
    histogram), ``stages_`` (the per-stage report on train and validation).
    """

    def __init__(
        self,
        stage_head: Any = None,
        rho: float = 0.3,
        depth: int = 1,
        routing_prior: bool = True,
        points_per_cluster: int = 100,
        max_clusters: int = 256,
        prior_strength: float = 10.0,
        min_stage_rows: int = 20,
        max_epochs: int | None = None,
        class_counts: Any = None,
        temperature: float = 1.0,
        device: str = "auto",
        random_state: int | None = 0,
    ):
        self.stage_head = stage_head
        self.rho = rho
        self.depth = depth
        self.routing_prior = routing_prior
        self.points_per_cluster = points_per_cluster
        self.max_clusters = max_clusters
        self.prior_strength = prior_strength
        self.min_stage_rows = min_stage_rows
        self.max_epochs = max_epochs
        self.class_counts = class_counts
        self.temperature = temperature
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        checks = [
            ("rho", isinstance(self.rho, (int, float, np.floating)) and 0 < self.rho < 1,
             "a float in (0, 1) (the share peeled per stage)"),
            ("depth", is_int(self.depth) and self.depth >= 0, "an int >= 0"),
            ("points_per_cluster", is_int(self.points_per_cluster)
             and self.points_per_cluster >= 1, "an int >= 1"),
            ("max_clusters", is_int(self.max_clusters) and self.max_clusters >= 1,
             "an int >= 1"),
            ("prior_strength", isinstance(self.prior_strength, (int, float, np.floating))
             and self.prior_strength >= 0, "a float >= 0"),
            ("min_stage_rows", is_int(self.min_stage_rows) and self.min_stage_rows >= 2,
             "an int >= 2"),
            ("max_epochs", self.max_epochs is None or (is_int(self.max_epochs)
                                                       and self.max_epochs >= 1),
             "None or an int >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise param_error(self, name, rule, getattr(self, name))
        if self.stage_head is not None:
            problem = stage_family_problem(self.stage_head)
            if problem is not None:
                raise param_error(
                    self, "stage_head", "a trainable head trained with a loss of "
                    f"{', '.join(LOSSES)} (e.g. LinearHead(loss='balanced_softmax'), "
                    f"LinearHead(loss='la'), CWSHead()): {problem}", self.stage_head)

    def _stage_head(self, seed: int) -> BaseHead:
        """A fresh, unfitted clone of ``stage_head`` with this head's runtime settings."""
        from sklearn.base import clone

        template = self.stage_head if self.stage_head is not None else default_stage_head()
        head = clone(template)
        params: dict[str, Any] = {"device": self.device, "random_state": seed}
        if self.max_epochs is not None:
            params["max_epochs"] = self.max_epochs
        return head.set_params(**params)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None,
            y_val: Any = None) -> DLSAHead:
        """Fit the router and the stage heads on ``X`` (n, D), ``y`` (n,); the stage heads
        early-stop on the validation rows ``X_val`` (m, D), ``y_val`` (m,) routed to them (or
        carve their own without them).

        ``sample_weight`` (n,) weighs the stage heads' losses. Rows of weight 0 are left out
        of the whole fit (router included), so they change nothing; the router's k-means and
        peeling quantile count the other rows once each, whatever their weight.
        """
        from featlt.heads.dlsa_router import fit_stages

        self._check_params()
        X, y_index, weights = self._start_fit(X, y, sample_weight)
        val = check_validation(self, X_val, y_val)
        kept = weights > 0
        if not kept.all():
            X, y_index, weights = X[kept], y_index[kept], weights[kept]
        seed = 0 if self.random_state is None else int(self.random_state)
        fitted = fit_stages(self, X, y_index, weights, val, seed)
        self.router_state_, self.sub_heads_, self.stages_ = fitted
        return self

    def route(self, X: Any) -> np.ndarray:
        """Stage of every row of ``X`` (n, D): (n,) int64, ``len(sub_heads_) - 1`` = final."""
        from featlt.heads.dlsa_router import route_rows

        X = check_features(self, X, reset=False)
        return route_rows(self.router_state_, X, len(self.sub_heads_) - 1)[0]

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        from featlt.heads.dlsa_router import route_rows, stage_inputs

        if self.routing_prior and "routing" not in self.router_state_:
            raise FeatltError("DLSAHead: this saved head predates the routing prior (no "
                              "'routing' shares in its router state); re-fit it with featlt "
                              f"{__version__}")
        stage, cluster = route_rows(self.router_state_, X, len(self.sub_heads_) - 1)
        logits = np.empty((X.shape[0], len(self.classes_)))
        for s, head in enumerate(self.sub_heads_):
            rows = np.flatnonzero(stage == s)
            if rows.size == 0:
                continue
            inputs = stage_inputs(self.router_state_, s, X[rows], cluster[rows],
                                  final=s == len(self.sub_heads_) - 1)
            stage_logits = head.logits(inputs)
            if self.routing_prior:
                share = self.router_state_["routing"][s, np.asarray(head.classes_)]
                stage_logits = stage_logits + prior_removed(head) * np.log(share)
            logits[rows] = full_columns(stage_logits, head.classes_, len(self.classes_))
        return logits

    def stage_report(self, X: Any, y: Any) -> list[dict[str, Any]]:
        """Per stage on labelled rows ``X`` (n, D), ``y`` (n,) (labels from ``classes_``): rows
        routed, their head/mid/tail-third shares and accuracy on them."""
        from featlt.heads.dlsa_router import routed_summary

        y_index = np.searchsorted(self.classes_, np.asarray(y).reshape(-1))
        stage = self.route(X)
        pred = np.argmax(self.logits(X), axis=1)
        return [routed_summary(stage == s, y_index, pred, self.class_counts_)
                for s in range(len(self.sub_heads_))]


def full_columns(logits: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread a stage head's logits (m, C_s) over all ``n_classes`` columns (m, C).

    ``present`` (C_s,) holds the class index of each column; absent classes get the row's
    minimum minus ABSENT_MARGIN, so they are never predicted and probabilities stay finite.
    """
    out = np.repeat(logits.min(axis=1, keepdims=True) - ABSENT_MARGIN, n_classes, axis=1)
    out[:, np.asarray(present, dtype=np.int64)] = logits
    return out
