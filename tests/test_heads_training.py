"""The training loop's optimiser: featlt's Adam against ``torch.optim.Adam``."""

from __future__ import annotations

import math

import torch

from featlt.heads.training import Adam


def test_adam_follows_torch_optim_adam_step_for_step():
    """Same problem, same start: L2 decay on one parameter, none on the other, and the lr
    changing every step (the cosine annealing of the training loop)."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    init = {"weight": torch.randn(3, 5, generator=gen), "bias": torch.randn(3, generator=gen)}

    def loss_of(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(X @ params["weight"].T + params["bias"], y)

    ours = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    theirs = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    adam = Adam(ours, decay=("weight",), lr=0.05, weight_decay=0.01)
    reference = torch.optim.Adam([{"params": [theirs["weight"]], "weight_decay": 0.01},
                                  {"params": [theirs["bias"]], "weight_decay": 0.0}], lr=0.05)
    steps = 100
    for step in range(steps):
        factor = 0.5 * (1 + math.cos(math.pi * step / steps))
        adam.step(torch.autograd.grad(loss_of(ours), list(ours.values())), factor)
        reference.zero_grad()
        loss_of(theirs).backward()
        for group in reference.param_groups:
            group["lr"] = 0.05 * factor
        reference.step()
        for key in init:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    assert (ours["weight"] - init["weight"]).abs().max() > 0.5  # the trajectory went somewhere
