"""The one training loop of the trainable heads: minibatches, sampling, early stopping.

Reusable by later heads: the forward function, the loss (and through it the prior) and the
targets (classes or sub-classes) are all arguments. Parameters live in a dict of tensors so a
head's forward is a plain function that runs in float32 on the training device and, after
training, in float64 on the CPU for prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from featlt.errors import FeatltError
from featlt.heads.losses import LossFn
from featlt.heads.streaming import StreamedFeatures, epoch_batches

if TYPE_CHECKING:
    from featlt.heads.streaming import Batch

SAMPLING = ("instance", "class_balanced")
# Small training sets get smaller batches and several passes per epoch, so that max_epochs
# means enough optimiser steps: 270 rows with batch 512 would give one Adam step per epoch, and
# even 9 steps of batch 32 leave a linear head at 0.5 training accuracy on 3 separable blobs.
# Sets of MIN_EPOCH_DRAWS rows or more keep one pass per epoch, and from
# MIN_STEPS_PER_EPOCH * batch_size rows (8192 at the defaults) the full batch_size too.
MIN_STEPS_PER_EPOCH = 16  # the batch is lowered (not below MIN_BATCH) to give this many per pass
MIN_BATCH = 32
MIN_EPOCH_DRAWS = 2048  # an epoch draws at least this many rows (several passes) ...
SMALL_EPOCH_STEPS = 64  # ... in at most this many steps (tiny sets: full-batch steps)
ForwardFn = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
# Validation callback: params -> (score to maximise, loss to minimise on ties).
ValidateFn = Callable[[dict[str, torch.Tensor]], tuple[float, float]]
# Called before every epoch: (0-based epoch, params) -> new (n,) targets, or None to keep them
# (dynamic sub-class assignment, e.g. CWS's EMA prototypes).
RetargetFn = Callable[[int, dict[str, torch.Tensor]], "np.ndarray | None"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (echoed into results through the head's parameters)."""

    lr: float  # Adam learning rate, cosine-annealed to 0 over max_epochs
    weight_decay: float  # L2 penalty (Adam's coupled decay) on the parameters named in `decay`
    batch_size: int  # capped so an epoch has >= MIN_STEPS_PER_EPOCH steps (>= MIN_BATCH rows)
    max_epochs: int
    patience: int | None  # epochs without validation improvement before stopping; None: never
    sampling: str = "instance"  # instance | class_balanced (class uniform, then a sample in it)
    first_eligible_epoch: int = 0  # earlier epochs (0-based) are never chosen (LDAM before DRW)
    seed: int = 0
    device: str = "cpu"
    # Torch threads while training on the CPU. Minibatch steps on frozen features are too small
    # to gain from intra-op threads, and on a busy 2-core machine 2 threads ran 8x slower than 1.
    cpu_threads: int = 1


@dataclass
class TrainResult:
    """Chosen parameters (float64 numpy) and what happened."""

    params: dict[str, np.ndarray]
    best_epoch: int  # 1-based epoch whose parameters were kept
    n_epochs: int  # epochs actually run
    val_score: float | None  # validation score of the kept parameters
    val_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)


class Adam:
    """Adam (Kingma & Ba) with an L2 penalty on the named parameters: the update of
    ``torch.optim.Adam(weight_decay=...)`` on the CPU, step for step (a test pins the two).
    Written out because the first ``torch.optim`` step imports ``torch._dynamo`` (about 2 s per
    process, more on a busy machine) for a few lines of maths.
    """

    def __init__(self, params: dict[str, torch.Tensor], decay: tuple[str, ...], lr: float,
                 weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = params
        self.decay = {k: weight_decay if k in decay else 0.0 for k in params}
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.t = 0

    @torch.no_grad()
    def step(self, grads: tuple[torch.Tensor, ...], lr_factor: float = 1.0) -> None:
        """Apply one update; ``grads`` in the order of ``params``; lr scaled by ``lr_factor``."""
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr * lr_factor / (1 - b1**self.t)
        correction2_sqrt = math.sqrt(1 - b2**self.t)
        for (key, param), grad in zip(self.params.items(), grads, strict=True):
            if self.decay[key]:
                grad = grad.add(param, alpha=self.decay[key])
            self.m[key].lerp_(grad, 1 - b1)
            self.v[key].mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (self.v[key].sqrt() / correction2_sqrt).add_(self.eps)
            param.addcdiv_(self.m[key], denom, value=-step_size)


def effective_batch_size(batch_size: int, n: int) -> int:
    """``batch_size``, lowered for small ``n`` to ``n // MIN_STEPS_PER_EPOCH`` (>= MIN_BATCH)."""
    return max(1, min(batch_size, n, max(MIN_BATCH, n // MIN_STEPS_PER_EPOCH)))


def epoch_draws(n: int, batch: int) -> int:
    """Rows drawn per epoch from ``n`` rows in batches of ``batch``: one pass, or several.

    At least ``min(MIN_EPOCH_DRAWS, SMALL_EPOCH_STEPS * batch)`` rows: a small set gets enough
    optimiser steps per epoch (e.g. 270 rows in batches of 32: 2048 draws, 64 steps); a set of
    MIN_EPOCH_DRAWS rows or more keeps exactly one pass.
    """
    return max(n, min(MIN_EPOCH_DRAWS, SMALL_EPOCH_STEPS * batch))


def epoch_order(
    targets: np.ndarray, sampling: str, generator: np.random.Generator, size: int | None = None
) -> np.ndarray:
    """Row order for one epoch of ``size`` draws (default ``n``).

    Instance: one permutation of the rows per pass (passes concatenated, the last one cut to
    ``size``). Class-balanced: each draw picks a target uniformly among the targets present,
    then a row of it uniformly (rows weighted ``1 / n_target``), with replacement.
    """
    n = targets.shape[0]
    size = n if size is None else size
    if sampling == "instance":
        passes = [generator.permutation(n) for _ in range(-(-size // n))]
        return passes[0] if len(passes) == 1 else np.concatenate(passes)[:size]
    counts = np.bincount(targets)
    p = 1.0 / counts[targets]
    return generator.choice(n, size=size, replace=True, p=p / p.sum())


def train_parameters(
    init: dict[str, np.ndarray],
    forward: ForwardFn,
    Z: np.ndarray | StreamedFeatures,
    targets: np.ndarray,
    weights: np.ndarray,
    loss_fn: LossFn,
    config: TrainConfig,
    validate: ValidateFn | None = None,
    decay: tuple[str, ...] = (),
    retarget: RetargetFn | None = None,
) -> TrainResult:
    """Train ``init`` parameters with Adam on ``Z`` and keep the best validation epoch.

    Args:
        init: initial parameters, name -> float array.
        forward: ``forward(params, Z_batch) -> logits (b, K)``.
        Z: (n, D) preprocessed training features, in memory or streamed by chunks
            (:class:`~featlt.heads.streaming.StreamedFeatures`: chunks in shuffled order).
        targets: (n,) int64 in 0..K-1.
        weights: (n,) per-sample loss weights.
        validate: scores the current parameters on validation data; without it the last epoch
            is kept.
        decay: names of the parameters that get the L2 penalty.
        retarget: called before every epoch; may return new targets (n,) for that epoch (in
            memory only).
    """
    if retarget is not None and isinstance(Z, StreamedFeatures):
        raise FeatltError("train_parameters: moving targets (retarget) need Z in memory")
    if config.sampling not in SAMPLING:
        raise FeatltError(f"sampling '{config.sampling}': use one of {', '.join(SAMPLING)}")
    if config.device != "cpu":
        return _train(init, forward, Z, targets, weights, loss_fn, config, validate, decay,
                      retarget)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.cpu_threads)
    try:
        return _train(init, forward, Z, targets, weights, loss_fn, config, validate, decay,
                      retarget)
    finally:
        torch.set_num_threads(threads)


def memory_batches(
    Z_t: torch.Tensor,
    targets: np.ndarray,
    w_t: torch.Tensor,
    sampling: str,
    rng: np.random.Generator,
    draws: int,
    batch: int,
) -> Iterator[Batch]:
    """One epoch of ``draws`` rows of in-memory ``Z_t`` (n, D) in minibatches of ``batch``, in
    the order of :func:`epoch_order`.

    Args:
        targets: (n,) int64 targets of this epoch; w_t: (n,) per-row loss weights.
    """
    device = Z_t.device
    t_t = torch.as_tensor(targets, dtype=torch.int64, device=device)
    order = torch.as_tensor(epoch_order(targets, sampling, rng, draws), device=device)
    for start in range(0, draws, batch):
        rows = order[start : start + batch]
        yield Z_t[rows], t_t[rows], w_t[rows]


def _train(
    init: dict[str, np.ndarray],
    forward: ForwardFn,
    Z: np.ndarray | StreamedFeatures,
    targets: np.ndarray,
    weights: np.ndarray,
    loss_fn: LossFn,
    config: TrainConfig,
    validate: ValidateFn | None,
    decay: tuple[str, ...],
    retarget: RetargetFn | None = None,
) -> TrainResult:
    device = torch.device(config.device)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed))
    params = {
        k: torch.tensor(v, dtype=torch.float32, device=device, requires_grad=True)
        for k, v in init.items()
    }
    optimizer = Adam(params, decay, config.lr, config.weight_decay)
    if isinstance(Z, StreamedFeatures):
        def batches(targets: np.ndarray, draws: int, batch: int) -> Iterator[Batch]:
            return epoch_batches(Z, targets, weights, config.sampling, rng, draws, batch,
                                 device)
    else:
        Z_t = torch.as_tensor(Z, dtype=torch.float32, device=device)
        w_t = torch.as_tensor(weights, dtype=torch.float32, device=device)

        def batches(targets: np.ndarray, draws: int, batch: int) -> Iterator[Batch]:
            return memory_batches(Z_t, targets, w_t, config.sampling, rng, draws, batch)
    n = Z.shape[0]
    batch = effective_batch_size(config.batch_size, n)
    draws = epoch_draws(n, batch)
    total_steps = -(-draws // batch) * config.max_epochs
    best: tuple[float, float] | None = None
    best_params = {k: v.detach().clone() for k, v in params.items()}
    best_epoch, stale, history = config.max_epochs, 0, []
    epoch = 0
    for epoch in range(config.max_epochs):
        new_targets = None if retarget is None else retarget(epoch, params)
        if new_targets is not None:
            targets = new_targets
        total = 0.0
        for inputs, batch_targets, batch_weights in batches(targets, draws, batch):
            loss = loss_fn(forward(params, inputs), batch_targets, batch_weights, epoch)
            grads = torch.autograd.grad(loss, list(params.values()))
            # Cosine annealing from lr to 0 over all steps of max_epochs.
            optimizer.step(grads, 0.5 * (1.0 + math.cos(math.pi * optimizer.t / total_steps)))
            total += float(loss.detach()) * inputs.shape[0]
        record = {"epoch": epoch + 1, "train_loss": total / draws}
        if validate is not None:
            with torch.no_grad():
                score, val_loss = validate(params)
            record.update(val_score=score, val_loss=val_loss)
            if epoch >= config.first_eligible_epoch:
                if best is None or (score, -val_loss) > (best[0], -best[1]):
                    best, best_epoch, stale = (score, val_loss), epoch + 1, 0
                    best_params = {k: v.detach().clone() for k, v in params.items()}
                else:
                    stale += 1
        history.append(record)
        if config.patience is not None and validate is not None and stale >= config.patience:
            break
    if validate is None:
        best_params = {k: v.detach() for k, v in params.items()}
        best_epoch = epoch + 1
    return TrainResult(
        params={k: v.cpu().numpy().astype(np.float64) for k, v in best_params.items()},
        best_epoch=best_epoch,
        n_epochs=epoch + 1,
        val_score=None if best is None else best[0],
        val_loss=None if best is None else best[1],
        history=history,
    )
