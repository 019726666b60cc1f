"""LogME (You et al., ICML 2021) and featlt's class-balanced LogME. Higher is better.

LogME [paper]: for each class c, a one-vs-rest Bayesian linear regression ``t = X w + e`` with
``t`` the class indicator, prior ``w ~ N(0, I / alpha)`` and noise ``e ~ N(0, I / beta)``; the log
evidence ``log p(t | X, alpha, beta)`` is maximised over (alpha, beta) by the paper's fixed-point
iteration, divided by N, and averaged over classes. No bias term, no feature centring (as in the
paper). Written here from the formula, in the eigenbasis of ``X^T X``, so it needs only the Gram
matrix and the class sums (streamed; no N x N matrix):

    log p = D/2 log a + N/2 log b - 1/2 sum_i log(a + b s_i) - b/2 |t - X m|^2 - a/2 |m|^2
            - N/2 log(2 pi),     m = b (a I + b X^T X)^{-1} X^T t,

with ``s_i`` the eigenvalues of ``X^T X``.

Class-balanced LogME [featlt's design, not a published method]: in plain LogME a tail class's
regression is dominated by its negatives. Here sample i's noise precision is ``beta w_i`` with
``w_i = N / (C n_{y_i})`` (every class carries the same total weight, weights sum to N): the
evidence of that heteroscedastic model is plain LogME on rows scaled by ``sqrt(w_i)`` plus
``1/2 sum_i log w_i``. One eigendecomposition of ``sum_i w_i x_i x_i^T`` serves all classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featlt.separability.scores.common import check_xy, n_classes_of
from featlt.separability.scores.moments import FeatureMoments, feature_moments

MAX_ITER = 100  # the paper stops after at most ~10 iterations; we iterate to tolerance
TOLERANCE = 1e-5  # relative change of alpha / beta that ends the fixed-point iteration
EPS = 1e-12  # keeps the fixed-point denominators positive


@dataclass(frozen=True)
class LogMEResult:
    """LogME per class and its mean."""

    score: float  # mean over present classes of per_class (higher is better)
    per_class: np.ndarray  # (C,) float64 log evidence / N per class; NaN for absent classes
    alpha: np.ndarray  # (C,) float64 prior precision at the maximum
    beta: np.ndarray  # (C,) float64 noise precision at the maximum
    balanced: bool


def log_evidence(
    alpha: float, beta: float, eigvals: np.ndarray, proj: np.ndarray, tt: float, n: int
) -> float:
    """Log evidence of Bayesian linear regression, in the eigenbasis of ``X^T X``.

    Args:
        eigvals: (D,) eigenvalues s of X^T X (>= 0).
        proj: (D,) V^T X^T t, the target's projection on the eigenvectors V.
        tt: t^T t.
        n: number of rows N.
    """
    denom = alpha + beta * eigvals
    m = beta * proj / denom  # posterior mean in the eigenbasis
    residual = max(tt - 2.0 * float(m @ proj) + float((eigvals * m) @ m), 0.0)
    return float(
        0.5 * eigvals.size * np.log(alpha) + 0.5 * n * np.log(beta) - 0.5 * np.log(denom).sum()
        - 0.5 * beta * residual - 0.5 * alpha * float(m @ m) - 0.5 * n * np.log(2 * np.pi)
    )


def maximise_evidence(
    eigvals: np.ndarray, proj: np.ndarray, tt: float, n: int
) -> tuple[float, float]:
    """(alpha, beta) maximising the evidence, by You et al.'s fixed-point iteration."""
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITER):
        denom = alpha + beta * eigvals
        m = beta * proj / denom
        gamma = float((beta * eigvals / denom).sum())
        residual = max(tt - 2.0 * float(m @ proj) + float((eigvals * m) @ m), 0.0)
        new_alpha = gamma / max(float(m @ m), EPS)
        new_beta = max(n - gamma, EPS) / max(residual, EPS)
        done = (abs(new_alpha - alpha) <= TOLERANCE * alpha
                and abs(new_beta - beta) <= TOLERANCE * beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return alpha, beta


def logme_from_moments(moments: FeatureMoments, balanced: bool = False) -> LogMEResult:
    """LogME (or the class-balanced variant) from streamed moments."""
    gram = moments.gram_balanced if balanced else moments.gram
    eigvals, eigvecs = np.linalg.eigh(gram)
    eigvals = np.clip(eigvals, 0.0, None)
    counts = moments.counts
    weights = moments.class_weights if balanced else np.ones(counts.size)
    # X'^T t'_c = w_c * (sum of class c rows); t'^T t'_c = w_c n_c.
    proj_all = eigvecs.T @ (moments.class_sums * weights[:, None]).T  # (D, C)
    n_classes = counts.size
    per_class = np.full(n_classes, np.nan)
    alphas = np.full(n_classes, np.nan)
    betas = np.full(n_classes, np.nan)
    log_weight_sum = float((counts[counts > 0] * np.log(weights[counts > 0])).sum())
    for c in np.flatnonzero(counts):
        tt = float(weights[c] * counts[c])
        alpha, beta = maximise_evidence(eigvals, proj_all[:, c], tt, moments.n)
        evidence = log_evidence(alpha, beta, eigvals, proj_all[:, c], tt, moments.n)
        if balanced:
            evidence += 0.5 * log_weight_sum
        per_class[c], alphas[c], betas[c] = evidence / moments.n, alpha, beta
    return LogMEResult(
        score=float(np.nanmean(per_class)), per_class=per_class, alpha=alphas, beta=betas,
        balanced=balanced,
    )


def logme(X: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> LogMEResult:
    """LogME of features ``X`` (n, D) for labels ``y`` (n,); higher is better."""
    X, y = check_xy(X, y, "LogME features")
    return logme_from_moments(feature_moments(X, y, n_classes_of(y, n_classes)))


def balanced_logme(X: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> LogMEResult:
    """Class-balanced LogME [featlt's design] of ``X`` (n, D), ``y`` (n,); higher is better."""
    X, y = check_xy(X, y, "LogME features")
    return logme_from_moments(feature_moments(X, y, n_classes_of(y, n_classes)), balanced=True)
