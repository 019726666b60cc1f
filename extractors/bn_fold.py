"""Fold eval-mode BatchNorm into the convolution that feeds it (a forward-path speed-up).

In eval mode a BatchNorm is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) *
gamma + beta``, so when ``x`` is a convolution's output the map can live in the convolution's
weights and bias instead::

    scale = gamma / sqrt(var + eps)          # (C_out,)
    W' = W * scale[:, None, None, None]      # (C_out, C_in / groups, kh, kw)
    b' = (b - mean) * scale + beta           # (C_out,)

The network then skips one full read and write of every normalised activation. Measured on this
2-core CPU (benchmarks/bench_forward_paths.py, batch 64, channels_last before and after):
``tf_efficientnet_lite0`` at 160 px, 37 -> 61 img/s at 2 threads (49 of 49 BatchNorms folded);
``mobilenetv3_small_100`` at 96 px, 489 -> 602 img/s at 1 thread; features within 5e-6 of eager.

Pairs are found by running the model once with hooks: a BatchNorm is folded when its input is
the very tensor the convolution just returned. That a convolution's output feeds nothing else
cannot be seen from hooks, so :func:`featlt.extractors.fast_forward.prepare_forward` checks
the folded model against eager on real images and falls back when they differ. Folded are
``nn.Conv2d`` (and timm's ``Conv2dSame``) followed by ``nn.BatchNorm2d`` or timm's
``BatchNormAct2d`` (whose activation is kept); a convolution or BatchNorm called more than once
per forward (shared weights) is left alone, as is any other subclass, whose forward may do more
than the map above.
"""

from __future__ import annotations

import copy
from typing import Any


def fold_batchnorm(model: Any, example: Any) -> tuple[Any, int]:
    """A copy of ``model`` with every convolution -> BatchNorm pair folded; ``model`` is untouched.

    Args:
        model: a module in eval mode.
        example: a batch the model accepts, e.g. (B, 3, H, W) on the model's device; one image
            of it is forwarded to find the pairs.
    Returns:
        (folded copy, number of BatchNorms folded). With nothing to fold the copy equals the
        model.
    """
    import torch

    folded = copy.deepcopy(model)
    pairs = _conv_norm_pairs(folded, example[:1])
    parents = _parents(folded)
    with torch.no_grad():
        for conv, norm in pairs:
            _fold_into(conv, norm)
            parent, name = parents[id(norm)]
            setattr(parent, name, _activation_of(norm))
    return folded, len(pairs)


def _conv_norm_pairs(model: Any, example: Any) -> list[tuple[Any, Any]]:
    """(conv, norm) pairs: ``norm``'s input is the tensor ``conv`` returned; each called once."""
    import torch

    calls: dict[int, int] = {}
    last: list[tuple[Any, Any]] = []  # [(conv, its output)] of the latest convolution
    found: list[tuple[Any, Any]] = []

    def after_conv(conv: Any, _inputs: Any, output: Any) -> None:
        calls[id(conv)] = calls.get(id(conv), 0) + 1
        last[:] = [(conv, output)]

    def before_norm(norm: Any, inputs: Any) -> None:
        calls[id(norm)] = calls.get(id(norm), 0) + 1
        if last and inputs and inputs[0] is last[0][1]:
            found.append((last[0][0], norm))

    hooks = []
    for module in model.modules():
        if _foldable_conv(module):
            hooks.append(module.register_forward_hook(after_conv))
        elif _foldable_norm(module):
            hooks.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    shared = _registered_twice(model)
    return [(conv, norm) for conv, norm in found
            if calls[id(conv)] == 1 and calls[id(norm)] == 1 and id(norm) not in shared]


def _foldable_conv(module: Any) -> bool:
    from timm.layers import Conv2dSame
    from torch import nn

    return type(module) in (nn.Conv2d, Conv2dSame)


def _foldable_norm(module: Any) -> bool:
    """An eval-mode ``nn.BatchNorm2d`` or timm ``BatchNormAct2d`` that uses running statistics."""
    from timm.layers import BatchNormAct2d
    from torch import nn

    return (type(module) in (nn.BatchNorm2d, BatchNormAct2d) and not module.training
            and module.running_mean is not None and module.running_var is not None)


def _registered_twice(model: Any) -> set[int]:
    """ids of modules reachable under more than one name (shared modules)."""
    seen: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        seen[id(module)] = seen.get(id(module), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def _parents(model: Any) -> dict[int, tuple[Any, str]]:
    """id(child) -> (parent module, attribute name) for every submodule."""
    return {id(child): (parent, name)
            for parent in model.modules() for name, child in parent.named_children()}


def _fold_into(conv: Any, norm: Any) -> None:
    """Move ``norm``'s affine map into ``conv``'s weight (C_out, ...) and bias (C_out,)."""
    import torch

    weight = conv.weight.detach().double()
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(mean)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    dtype = conv.weight.dtype
    conv.weight = torch.nn.Parameter(
        (weight * scale.view(-1, *([1] * (weight.ndim - 1)))).to(dtype), requires_grad=False)
    conv.bias = torch.nn.Parameter(((bias - mean) * scale + beta).to(dtype), requires_grad=False)


def _activation_of(norm: Any) -> Any:
    """What is left of ``norm`` once its affine map is folded: timm's drop + act, or nothing."""
    from torch import nn

    if hasattr(norm, "act"):  # BatchNormAct2d: bn -> drop -> act
        return nn.Sequential(norm.drop, norm.act)
    return nn.Identity()
