"""Loss functions of the trainable heads (docs/methods.md, heads), pluggable into the training loop.

Every loss has the signature ``loss(logits, targets, weights, epoch) -> scalar`` with
``logits`` (b, K) float, ``targets`` (b,) int64 in 0..K-1, ``weights`` (b,) per-sample weights.
The prior enters as a per-target vector (K,), so the same losses work over sub-class targets
(K sub-classes with their own counts) as over classes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * v) / sum(w)``: (b,) values and weights -> scalar."""
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)


def cross_entropy() -> LossFn:
    """Plain cross-entropy ``CE(f(z))``."""

    def loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, epoch: int):
        return weighted_mean(F.cross_entropy(logits, targets, reduction="none"), weights)

    return loss


def logit_adjusted(adjustment: np.ndarray) -> LossFn:
    """``CE(f(z) + adjustment)`` with a fixed (K,) adjustment added to every row's logits.

    Logit adjustment (Menon et al. 2021): ``adjustment = tau * log(pi)``; Balanced Softmax
    (Ren et al. 2020): ``adjustment = log(n_c)`` (the same up to a constant shift per row).
    """
    shift = torch.as_tensor(np.asarray(adjustment, dtype=np.float32))

    def loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, epoch: int):
        adjusted = logits + shift.to(logits.device)
        return weighted_mean(F.cross_entropy(adjusted, targets, reduction="none"), weights)

    return loss


def ldam_margins(counts: np.ndarray, max_margin: float) -> np.ndarray:
    """LDAM margins ``m_c ∝ n_c^(-1/4)``, scaled so the largest is ``max_margin``: (K,)."""
    m = 1.0 / np.sqrt(np.sqrt(np.asarray(counts, dtype=np.float64)))
    return m * (max_margin / m.max())


def drw_class_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Class-balanced weights ``(1 - beta) / (1 - beta^n_c)`` normalised to sum to K: (K,)."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return weights / weights.sum() * counts.shape[0]


def ldam_drw(
    counts: np.ndarray, scale: float, max_margin: float, beta: float, drw_epoch: int
) -> LossFn:
    """LDAM loss with deferred re-weighting (Cao et al. 2019), as in the authors' code.

    The logits given to the loss are ``s * cos(w_c, z)``; the target's logit loses ``s * m_y``.
    From epoch ``drw_epoch`` (0-based) on, samples are weighted by class-balanced weights and the
    mean is taken over those weights (``F.cross_entropy(weight=...)``); before, all classes weigh 1.
    """
    margins = torch.as_tensor(ldam_margins(counts, max_margin), dtype=torch.float32)
    class_weights = torch.as_tensor(drw_class_weights(counts, beta), dtype=torch.float32)

    def loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, epoch: int):
        margin = scale * margins.to(logits.device)[targets]
        adjusted = logits.scatter_add(1, targets[:, None], -margin[:, None])
        per_sample = F.cross_entropy(adjusted, targets, reduction="none")
        if epoch >= drw_epoch:
            weights = weights * class_weights.to(logits.device)[targets]
        return weighted_mean(per_sample, weights)

    return loss
