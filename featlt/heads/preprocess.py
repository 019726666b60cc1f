"""Feature preprocessing fitted on the training rows and saved with the head.

- ``none``: features as stored.
- ``standardize``: subtract the (weighted) training mean, divide by the training std per feature.
- ``l2``: scale every row to unit L2 norm (no fitted state).
- ``pca_whiten``: centre, rotate onto the training covariance's eigenvectors and divide by
  ``sqrt(eigenvalue + eps)`` with ``eps = 1e-3 * mean(eigenvalues)`` (a floor, so directions
  with almost no training variance are not blown up); the components the training rows span
  (eigenvalue above ``1e-10`` of the largest, at most ``min(D, N - 1)``) are kept.
"""

from __future__ import annotations

import numpy as np

from featlt.cluster.prototypes import l2_normalise
from featlt.errors import FeatltError
from featlt.heads.streaming import StreamedFeatures

PREPROCESSING = ("none", "standardize", "l2", "pca_whiten")
WHITEN_FLOOR = 1e-3  # eps = WHITEN_FLOOR * mean eigenvalue
STD_FLOOR = 1e-12  # constant features keep scale 1 instead of dividing by 0
RANK_TOL = 1e-10  # eigenvalues below this share of the largest count as the null space


def check_preprocess(name: str, owner: str) -> str:
    if name not in PREPROCESSING:
        raise FeatltError(
            f"The 'preprocess' parameter of {owner} must be one of {', '.join(PREPROCESSING)}. "
            f"Got {name!r} instead."
        )
    return name


def fit_preprocessor(
    kind: str, X: np.ndarray | StreamedFeatures, sample_weight: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Fit preprocessing on training features.

    Args:
        kind: one of :data:`PREPROCESSING`.
        X: (n, D) float64 training features, in memory or streamed (one pass over the chunks,
            their weighted moments merged).
        sample_weight: (n,) non-negative weights, or None.
    Returns:
        state: float64 arrays (``mean`` (D,), ``scale`` (D,), ``components`` (D, K)) as needed.
    """
    if kind in ("none", "l2"):
        return {}
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    w = w / w.sum()
    if isinstance(X, StreamedFeatures):
        mean, spread = streamed_moments(X, w, full=kind == "pca_whiten")
    else:
        mean = w @ X
        centred = X - mean
        spread = w @ (centred**2) if kind == "standardize" else (centred * w[:, None]).T @ centred
    if kind == "standardize":
        std = np.sqrt(spread)
        return {"mean": mean, "scale": np.where(std > STD_FLOOR, std, 1.0)}
    return whitening_state(mean, spread)


def streamed_moments(
    X: StreamedFeatures, w: np.ndarray, full: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean (D,) and variance (D,) or covariance (D, D) of streamed ``X`` (n, D) in one
    pass: each chunk's centred moments, merged (Chan et al.'s pairwise update).

    Args:
        w: (n,) weights summing to 1.
    """
    mass, mean, spread = 0.0, np.zeros(X.dim), np.zeros((X.dim, X.dim) if full else X.dim)
    for positions, values in X.chunks():
        wc = w[positions]
        chunk_mass = float(wc.sum())
        if chunk_mass == 0.0:
            continue
        chunk_mean = wc @ values / chunk_mass
        centred = values - chunk_mean
        chunk_spread = ((centred * wc[:, None]).T @ centred if full else wc @ (centred**2))
        delta = chunk_mean - mean
        total = mass + chunk_mass
        cross = np.outer(delta, delta) if full else delta**2
        spread = spread + chunk_spread + cross * (mass * chunk_mass / total)
        mean = mean + delta * (chunk_mass / total)
        mass = total
    return mean, spread / mass


def whitening_state(mean: np.ndarray, cov: np.ndarray) -> dict[str, np.ndarray]:
    """``pca_whiten``'s state from the training mean (D,) and weighted covariance (D, D)."""
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    eigvals = np.clip(eigvals[order], 0.0, None)
    # Keep the directions the training rows span (at most min(D, N - 1)); drop the null space.
    keep = max(1, int(np.sum(eigvals > RANK_TOL * max(float(eigvals[0]), STD_FLOOR))))
    order, eigvals = order[:keep], eigvals[:keep]
    eps = WHITEN_FLOOR * max(float(eigvals.mean()), STD_FLOOR)
    return {"mean": mean, "components": eigvecs[:, order] / np.sqrt(eigvals + eps)}


def apply_preprocessor(
    kind: str, state: dict[str, np.ndarray], X: np.ndarray | StreamedFeatures
) -> np.ndarray | StreamedFeatures:
    """Transform ``X`` (n, D) float64 -> (n, D') float64 with fitted ``state``; streamed ``X``
    gets the transform applied to each chunk as it is read."""
    if isinstance(X, StreamedFeatures):
        if kind == "none":
            return X
        width = state["components"].shape[1] if kind == "pca_whiten" else X.dim
        return X.mapped(lambda values: apply_preprocessor(kind, state, values), width)
    if kind == "none":
        return X
    if kind == "l2":
        return l2_normalise(X, np.float64)
    if kind == "standardize":
        return (X - state["mean"]) / state["scale"]
    return (X - state["mean"]) @ state["components"]
