"""The DLSA stages' router and stage fitting (the machinery behind :class:`DLSAHead`).

The router state is a flat dict of arrays (saved like any head state): ``mean``, ``scale`` (the
router's standardiser, (D,)), ``thresholds`` (S,) and per stage ``s``: ``stage{s}.centroids``
(K, D), ``stage{s}.log_weights`` (K,), ``stage{s}.variances`` (K,), ``stage{s}.histogram``
(K, C) class counts of the peeled training rows per component and ``stage{s}.prior`` (C,) their
class shares. ``routing`` (S + 1, C) is the share of each class's training rows that each
stage (the final head last) classifies. See :mod:`featlt.heads.dlsa` for the method.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featlt.cluster.density import DensityMixture, fit_density, log_density_and_cluster
from featlt.heads.base import BaseHead

Val = tuple[np.ndarray, np.ndarray] | None  # (X_val (m, D), y_val (m,) class indices)


def n_router_clusters(n_active: int, n_classes: int, points_per_cluster: int,
                      max_clusters: int) -> int:
    """The router's fixed rule ``K = clip(N / points_per_cluster, C, max_clusters)``, <= N."""
    return int(min(n_active, max(n_classes, min(max_clusters, n_active // points_per_cluster))))


def leave_one_out_histograms(
    histogram: np.ndarray, cluster: np.ndarray, y: np.ndarray, fallback: np.ndarray
) -> np.ndarray:
    """Class shares of each training row's component without the row itself: (n, C).

    Args:
        histogram: (K, C) class counts of the rows per component (the rows below included).
        cluster: (n,) component of each row; y: (n,) its class index.
        fallback: (C,) shares used when the component holds no other row.
    """
    counts = histogram[cluster].astype(np.float64)
    counts[np.arange(y.shape[0]), y] -= 1.0
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), fallback[None, :])


def _mixture(state: dict[str, np.ndarray], s: int) -> DensityMixture:
    return DensityMixture(
        centroids=state[f"stage{s}.centroids"], log_weights=state[f"stage{s}.log_weights"],
        variances=state[f"stage{s}.variances"], global_variance=0.0, prior_strength=0.0,
        train_log_density=np.empty(0),
    )


def _standardise(state: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    return ((X - state["mean"]) / state["scale"]).astype(np.float32)


def route_rows(
    state: dict[str, np.ndarray], X: np.ndarray, n_stages: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stage (n,) int64 of every row of ``X`` (n, D) (``n_stages`` = the final head) and its
    router component at that stage (n,) int64 (-1 for the final head)."""
    Z = _standardise(state, X)
    stage = np.full(X.shape[0], n_stages, dtype=np.int64)
    cluster = np.full(X.shape[0], -1, dtype=np.int64)
    active = np.arange(X.shape[0])
    for s in range(n_stages):
        log_p, comp = log_density_and_cluster(Z[active], _mixture(state, s))
        peel = log_p >= state["thresholds"][s]
        stage[active[peel]], cluster[active[peel]] = s, comp[peel]
        active = active[~peel]
    return stage, cluster


def stage_inputs(
    state: dict[str, np.ndarray], s: int, X: np.ndarray, cluster: np.ndarray, final: bool
) -> np.ndarray:
    """What stage ``s``'s head sees: ``X`` (m, D) for the final head, else ``[X ; P_k]``
    (m, D + C) with the full (not leave-one-out) class shares of each row's component."""
    if final:
        return X
    hist = state[f"stage{s}.histogram"][cluster]
    totals = hist.sum(axis=1, keepdims=True)
    shares = np.where(totals > 0, hist / np.maximum(totals, 1.0), state[f"stage{s}.prior"])
    return np.concatenate([X, shares], axis=1)


def routed_summary(
    routed: np.ndarray, y: np.ndarray, pred: np.ndarray | None, class_counts: np.ndarray
) -> dict[str, Any]:
    """Rows routed to a stage: count, head/mid/tail-third shares (thirds by the full training
    counts), imbalance factor of their class counts, and accuracy when ``pred`` is given.

    Args:
        routed: (n,) bool; y: (n,) class indices; pred: (n,) predicted indices or None.
    """
    from featlt.cluster.splitting import imbalance_factor
    from featlt.evaluation.shots import RELATIVE_GROUPS, shot_groups

    groups = shot_groups(np.asarray(class_counts, dtype=np.int64))
    ys = y[routed]
    counts = np.bincount(ys, minlength=len(class_counts))
    record: dict[str, Any] = {
        "n": int(routed.sum()), "n_classes": int((counts > 0).sum()),
        "imbalance_factor": imbalance_factor(counts),
        "make_up": {g: (float(np.isin(ys, groups[g]).mean()) if ys.size else None)
                    for g in RELATIVE_GROUPS},
    }
    if pred is not None:
        record["accuracy"] = float((pred[routed] == ys).mean()) if ys.size else None
    return record


def _fit_stage_head(
    owner: Any, seed: int, inputs: np.ndarray, y: np.ndarray, weights: np.ndarray,
    val: Val, validated: bool,
) -> BaseHead:
    """A head of the owner's family on the stage rows. Validation rows of classes the stage
    never saw are dropped; when the owner was given validation data (``validated``) but none is
    left, the head trains its full epoch budget; without any, the head carves its own."""
    head = owner._stage_head(seed)
    if val is not None:
        keep = np.isin(val[1], y)
        val = (val[0][keep], val[1][keep]) if keep.any() else None
    if val is None:
        if validated:
            head.set_params(early_stopping=False)
        return head.fit(inputs, y, sample_weight=weights)
    return head.fit(inputs, y, sample_weight=weights, X_val=val[0], y_val=val[1])


def _peel(
    owner: Any, Z: np.ndarray, context: Any, seed: int
) -> tuple[DensityMixture, float, np.ndarray, np.ndarray]:
    """Fit the router on the active rows ``Z`` (n, D) and peel the densest ``rho``:
    ``(mixture, threshold, peeled mask (n,), component (n,))``."""
    n_classes = len(owner.classes_)
    k = n_router_clusters(Z.shape[0], n_classes, int(owner.points_per_cluster),
                          int(owner.max_clusters))
    variance = float(Z.astype(np.float64).var(axis=0).mean()) or 1.0
    mixture = fit_density(Z, context, k, variance, seed=seed,
                          prior_strength=float(owner.prior_strength))
    threshold = float(np.quantile(mixture.train_log_density, 1.0 - float(owner.rho)))
    _, component = log_density_and_cluster(Z, mixture)
    return mixture, threshold, mixture.train_log_density >= threshold, component


def _skip_reason(owner: Any, s: int, y: np.ndarray, peeled: np.ndarray) -> str | None:
    """Why stage ``s`` (0-based) cannot run, or None. ``peeled`` (n,) bool over active rows."""
    sides = {"peeled": y[peeled], "remaining": y[~peeled]}
    minimum = int(owner.min_stage_rows)
    for side, labels in sides.items():
        if labels.size < minimum or np.unique(labels).size < 2:
            return (f"stage {s + 1}: rho={owner.rho} peels {int(peeled.sum())} of {y.size} "
                    f"active training rows, leaving {labels.size} {side} rows of "
                    f"{np.unique(labels).size} classes (needs >= {minimum} rows of >= 2 "
                    f"classes); this and later stages skipped (depth={owner.depth}); lower "
                    "depth or change rho")
    return None


def fit_stages(
    owner: Any, X: np.ndarray, y: np.ndarray, weights: np.ndarray, val: Val, seed: int
) -> tuple[dict[str, np.ndarray], list[BaseHead], list[dict[str, Any]]]:
    """Fit the router and every stage head; returns ``(router state, heads, stage report)``."""
    from featlt.cluster.faiss_ops import resolve_faiss
    from featlt.heads.preprocess import fit_preprocessor

    seeds = [int(c.generate_state(1)[0] & 0x7FFFFFFF)
             for c in np.random.SeedSequence(seed).spawn(2 * int(owner.depth) + 1)]
    scaler = fit_preprocessor("standardize", X)
    state: dict[str, np.ndarray] = {"mean": scaler["mean"], "scale": scaler["scale"]}
    Z = _standardise(state, X)
    Zv = None if val is None else _standardise(state, val[0])
    context = resolve_faiss("cpu" if owner.device == "cpu" else "auto")
    active, val_active = np.arange(X.shape[0]), np.arange(0 if val is None else val[1].size)
    heads: list[BaseHead] = []
    report: list[dict[str, Any]] = []
    thresholds: list[float] = []
    heads_rows: list[np.ndarray] = []  # training rows classified by each stage
    for s in range(int(owner.depth)):
        mixture, threshold, peel, comp = _peel(owner, Z[active], context, seeds[2 * s])
        reason = _skip_reason(owner, s, y[active], peel)
        if reason is not None:
            report.append({"stage": s + 1, "skipped": reason})
            break
        peeled = active[peel]
        hist = np.zeros((mixture.centroids.shape[0], len(owner.classes_)))
        np.add.at(hist, (comp[peel], y[peeled]), 1.0)
        prior = hist.sum(axis=0) / hist.sum()
        state.update({f"stage{s}.centroids": mixture.centroids,
                      f"stage{s}.log_weights": mixture.log_weights,
                      f"stage{s}.variances": mixture.variances,
                      f"stage{s}.histogram": hist, f"stage{s}.prior": prior})
        thresholds.append(threshold)
        train_inputs = np.concatenate(
            [X[peeled], leave_one_out_histograms(hist, comp[peel], y[peeled], prior)], axis=1)
        stage_val, val_active = _route_val(state, s, Zv, val, val_active, mixture, threshold)
        head = _fit_stage_head(owner, seeds[2 * s + 1], train_inputs, y[peeled],
                               weights[peeled], stage_val, val is not None)
        heads.append(head)
        heads_rows.append(peeled)
        report.append(_stage_record(owner, s + 1, "cluster-aided", y, active, peeled, head,
                                    stage_val, threshold, mixture.centroids.shape[0]))
        active = active[~peel]
    state["thresholds"] = np.asarray(thresholds, dtype=np.float64)
    state["routing"] = routing_shares([*heads_rows, active], y, len(owner.classes_))
    final_val = None if val is None else (val[0][val_active], val[1][val_active])
    final = _fit_stage_head(owner, seeds[-1], X[active], y[active], weights[active], final_val,
                            val is not None)
    heads.append(final)
    report.append(_stage_record(owner, len(heads), "final", y, active, active, final,
                                final_val, None, None))
    return state, heads, report


def routing_shares(stage_rows: list[np.ndarray], y: np.ndarray, n_classes: int) -> np.ndarray:
    """``r[s, c]``: the share of class ``c``'s training rows classified by stage ``s``, (S, C);
    each column sums to 1 over the stages.

    Args:
        stage_rows: per stage (the final head last), the indices of its training rows.
        y: (n,) class index of every training row.
    """
    counts = np.stack([np.bincount(y[rows], minlength=n_classes) for rows in stage_rows])
    return counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)


def _route_val(
    state: dict[str, np.ndarray], s: int, Zv: np.ndarray | None, val: Val,
    val_active: np.ndarray, mixture: DensityMixture, threshold: float,
) -> tuple[Val, np.ndarray]:
    """Validation rows peeled at stage ``s`` as stage inputs, and the rows still active."""
    if val is None or Zv is None or val_active.size == 0:
        return None, val_active
    log_p, comp = log_density_and_cluster(Zv[val_active], mixture)
    peel = log_p >= threshold
    rows = val_active[peel]
    inputs = stage_inputs(state, s, val[0][rows], comp[peel], final=False)
    return (inputs, val[1][rows]), val_active[~peel]


def _stage_record(
    owner: Any, stage: int, kind: str, y: np.ndarray, entering: np.ndarray, rows: np.ndarray,
    head: BaseHead, val: Val, threshold: float | None, n_clusters: int | None,
) -> dict[str, Any]:
    """The stage's report: the training rows still active when it starts (``entering``), those
    it classifies (``train``, the rows ``rows``) and its validation rows with accuracy."""

    def mask(indices: np.ndarray) -> np.ndarray:
        out = np.zeros(y.shape[0], dtype=bool)
        out[indices] = True
        return out

    record: dict[str, Any] = {
        "stage": stage, "kind": kind, "threshold": threshold, "n_clusters": n_clusters,
        "entering": routed_summary(mask(entering), y, None, owner.class_counts_),
        "train": routed_summary(mask(rows), y, None, owner.class_counts_),
    }
    if val is not None and val[1].size:
        pred = np.asarray(head.classes_)[np.argmax(head.logits(val[0]), axis=1)]
        record["val"] = routed_summary(np.ones(val[1].size, bool), val[1], pred,
                                       owner.class_counts_)
    return record
