"""Combined feature sets: the recipe that joins members' features, and the member records.

A combined store (``featlt combine``) holds, for every image its members share, the
concatenation of each member's L2-normalised feature. Its provenance ``backbone`` record is::

    {"members": [{"backbone": <the member's backbone record>,
                  "store": {"dtype": <member dtype>, "features": <what the member stores>},
                  "digest": <sha256 of the member's feature identity>}, ...],
     "recipe": RECIPE,
     "feature": {"dim": <sum of the members' widths>}}

Everything here reads either kind of record, so the code that reads backbone records (identity,
static baselines, ``describe``, predict's backbone specs) handles single and combined stores
alike through :func:`members_of`.

Layer: store (imports only the base and numpy).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from featlt.store.provenance import backbone_identity

#: The combination recipe, recorded verbatim in every combined store and applied exactly by
#: :func:`apply_recipe` (``featlt combine``, the in-memory combination, ``predict --images``).
RECIPE = "round to member dtype, L2 per member, concatenate, round to store dtype"
#: ``featlt combine --max-width``'s default: the widest combined feature accepted.
DEFAULT_MAX_WIDTH = 8192
# Below this norm a member's feature row counts as zero and stays zero (no division by ~0).
_TINY_NORM = 1e-12


def is_combined(provenance: dict[str, Any]) -> bool:
    """Whether a store's provenance describes a combined feature set."""
    backbone = provenance.get("backbone")
    return isinstance(backbone, dict) and isinstance(backbone.get("members"), list)


def members_of(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """The member provenances of a store: ``[{"backbone": ..., "store": ...}, ...]``.

    A single-backbone store is its own one member (``backbone`` and ``store`` of its
    provenance), so callers treat both kinds alike.
    """
    if is_combined(provenance):
        return [{"backbone": m.get("backbone") or {}, "store": m.get("store") or {}}
                for m in provenance["backbone"]["members"]]
    return [{"backbone": provenance.get("backbone") or {}, "store": provenance.get("store") or {}}]


def feature_identity(provenance: dict[str, Any]) -> str:
    """JSON of what makes two stores' features the same: backbone identity (members and recipe
    of a combined store included) and store settings; paths, devices and precision aside."""
    store = provenance.get("store") or {}
    record = {"backbone": backbone_identity(provenance), "dtype": store.get("dtype"),
              "features": store.get("features")}
    return json.dumps(record, sort_keys=True, default=str)


def member_record(provenance: dict[str, Any]) -> dict[str, Any]:
    """The ``members`` entry of a combined store for one member store's provenance."""
    store = provenance.get("store") or {}
    return {"backbone": provenance.get("backbone") or {},
            "store": {"dtype": store.get("dtype"), "features": store.get("features")},
            "digest": hashlib.sha256(feature_identity(provenance).encode()).hexdigest()}


def combined_backbone(member_provenances: Sequence[dict[str, Any]], dims: Sequence[int]
                      ) -> dict[str, Any]:
    """The ``backbone`` record of a combined store.

    Args:
        member_provenances: each member store's provenance, in combination order.
        dims: (k,) each member's feature width D_i.
    """
    return {"members": [member_record(p) for p in member_provenances], "recipe": RECIPE,
            "feature": {"dim": int(sum(dims))}}


def describe_backbone(backbone: dict[str, Any], fallback: str = "") -> str:
    """A backbone record in words: zoo name or timm model, resolution, inner layer; the members
    joined by ``" + "`` for a combined record."""
    if isinstance(backbone.get("members"), list):
        return " + ".join(describe_backbone(m.get("backbone") or {}, fallback)
                          for m in backbone["members"])
    name = backbone.get("zoo") or backbone.get("model") or fallback
    parts = [str(name)]
    if backbone.get("resolution"):
        parts.append(f"{backbone['resolution']} px")
    layer = (backbone.get("feature") or {}).get("layer")
    if layer and layer != "pre_logits":
        parts.append(f"layer {layer}")
    return ", ".join(parts)


def is_pretrained(backbone: dict[str, Any]) -> bool:
    """Whether features come from trained weights (not random init, not raw pixels); for a
    combined record, whether any member's do."""
    if isinstance(backbone.get("members"), list):
        return any(is_pretrained(m.get("backbone") or {}) for m in backbone["members"])
    weights = backbone.get("weights") or {}
    source = weights.get("source") if isinstance(weights, dict) else weights
    return source not in (None, "random", "none") and not str(
        backbone.get("model", "")).startswith("pixels")


def l2_rows(features: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, in float64; a zero row stays zero.

    Args:
        features: (n, D) float.
    Returns:
        (n, D) float64.
    """
    values = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, _TINY_NORM)


def apply_recipe(parts: Sequence[np.ndarray], member_dtypes: Sequence[str | np.dtype],
                 store_dtype: str | np.dtype) -> np.ndarray:
    """:data:`RECIPE`: the combined feature of rows that every member computed.

    Each member's rows are rounded to that member's stored dtype (a no-op on rows read from its
    store, the rounding extraction applied to a live backbone's float32 output), L2-normalised
    per row, the members concatenated in order, and the result rounded to the combined store's
    dtype. The same bytes come out whether the rows were read from the members' stores or
    computed from images by ``featlt predict --images``.

    Args:
        parts: k arrays, member i's (n, D_i) features of the same n images in the same order;
            a views array (n, V, D_i) is combined view by view.
        member_dtypes: (k,) each member's stored dtype (float16 or float32).
        store_dtype: the combined store's dtype.
    Returns:
        (n, sum D_i) (or (n, V, sum D_i)) array of ``store_dtype``.
    """
    if len(parts) != len(member_dtypes) or not parts:
        raise ValueError(f"apply_recipe: {len(parts)} parts for {len(member_dtypes)} dtypes")
    rows = {int(p.shape[0]) for p in parts}
    if len(rows) != 1:
        raise ValueError(f"apply_recipe: the members hold different row counts {sorted(rows)}")
    shape = parts[0].shape[:-1]
    flat = [np.asarray(p).reshape(-1, p.shape[-1]).astype(dtype).astype(np.float32)
            for p, dtype in zip(parts, member_dtypes, strict=True)]
    joined = np.concatenate([l2_rows(p) for p in flat], axis=1).astype(store_dtype)
    return joined.reshape(*shape, joined.shape[-1])
