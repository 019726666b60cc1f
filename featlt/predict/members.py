"""The backbones behind a head's features, rebuilt and run on decoded images.

A head fitted on a single store has one backbone; a head fitted on a combined store
(``featlt combine``) has one per member. :func:`build_forward` rebuilds each from the head's
feature provenance (``--weights`` where the recorded weights are not here), checks each against
its record, and groups members that run one network on one input (the same model, weights and
data config, e.g. a backbone and its own ``blocks.4``): a group runs one forward that yields
every member's feature. :meth:`MemberForward.features` then turns a batch of decoded images into
the features the head was fitted on: a single backbone's rounded to the store dtype, or the
members' combined by the recipe (:func:`featlt.store.members.apply_recipe`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from featlt.errors import FeatltError
from featlt.store.members import apply_recipe, describe_backbone, is_combined, members_of


@dataclass(frozen=True)
class MemberRecord:
    """One backbone of a head's features, as recorded."""

    number: int  # 1-based position among the members (1 for a single backbone)
    name: str  # the backbone in words
    provenance: dict[str, Any]  # {"backbone": ..., "run": {"weights_file": ...}}
    dtype: str  # the dtype its features were stored at


def member_records(features: dict[str, Any]) -> list[MemberRecord]:
    """The recorded backbones of a store's provenance ``features``, in member order."""
    runs = ((features.get("run") or {}).get("members") or []) if is_combined(features) else [
        features.get("run") or {}]
    records = []
    for number, member in enumerate(members_of(features), start=1):
        run = runs[number - 1] if number - 1 < len(runs) else {}
        backbone = member["backbone"]
        records.append(MemberRecord(
            number=number, name=describe_backbone(backbone, f"member {number}"),
            provenance={"backbone": backbone, "run": {"weights_file": run.get("weights_file")}},
            dtype=str(member["store"].get("dtype") or "float32")))
    return records


def parse_weights(values: Sequence[str], records: Sequence[MemberRecord],
                  combined: bool) -> dict[int, str]:
    """``--weights`` values -> {member number: weights}.

    A single-backbone head takes one value (FILE, local-dir:FOLDER or hub); a combined head
    takes MEMBER=FILE per member whose weights are not in the zoo, MEMBER being the member's
    number (1..k) or its name when no other member has it.
    """
    if not combined:
        if len(values) > 1:
            raise FeatltError(f"--weights: given {len(values)} times, but this head has one "
                              "backbone; pass one --weights FILE")
        return {1: values[0]} if values else {}
    listing = "; ".join(f"{r.number} = {r.name}" for r in records)
    chosen: dict[int, str] = {}
    for value in values:
        key, sep, weights = value.partition("=")
        matches = [r for r in records if key.strip() in (str(r.number), r.name,
                                                         r.provenance["backbone"].get("model"),
                                                         r.provenance["backbone"].get("zoo"))]
        if not sep or not weights or len(matches) != 1:
            raise FeatltError(
                f"--weights {value}: a combined head takes MEMBER=FILE, MEMBER a member's "
                f"number or unique name ({listing}); e.g. --weights 2=weights.safetensors")
        chosen[matches[0].number] = weights
    return chosen


class _Layers(nn.Module):
    """x: (B, 3, H, W) -> one (B, D_i) feature per requested layer, in one forward.

    ``indices``: per member, None for the pooled pre-logits feature or a
    ``forward_intermediates`` index (pooled over spatial positions), as
    :class:`featlt.extractors.feature_module.FeatureModule` computes each alone.
    """

    def __init__(self, model: nn.Module, indices: Sequence[int | None]):
        super().__init__()
        self.model = model
        self.indices = list(indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inner = sorted({i for i in self.indices if i is not None})
        out: dict[int | None, torch.Tensor] = {}
        if not inner:
            out[None] = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        elif None in self.indices:
            final, maps = self.model.forward_intermediates(x, indices=inner)
            out[None] = self.model.forward_head(final, pre_logits=True)
        else:
            maps = self.model.forward_intermediates(x, indices=inner, intermediates_only=True,
                                                    stop_early=True)
        for index, feature_map in zip(inner, maps if inner else [], strict=True):
            out[index] = feature_map.mean((2, 3))
        return tuple(out[i] for i in self.indices)


@dataclass
class _Group:
    """Members that share one network and one input transform."""

    backbone: Any  # the first member's featlt.extractors.backbones.Backbone
    numbers: list[int]  # member numbers (1-based)
    layers: Any  # _Layers over the backbone's model, or None for a single member


@dataclass
class MemberForward:
    """Decoded images -> the features a head was fitted on (see the module docstring)."""

    records: list[MemberRecord]
    groups: list[_Group]
    combined: bool
    store_dtype: str

    @property
    def forwards(self) -> int:
        """Forward passes per image batch (members of one network share one)."""
        return len(self.groups)

    def features(self, images: Sequence[Any]) -> np.ndarray:
        """(b, D) float32 features of ``images`` (decoded RGB PIL images), at the values the
        head's training rows held."""
        from featlt.extractors.fast_forward import FastForward, choose_forward_path

        parts: dict[int, np.ndarray] = {}
        for group in self.groups:
            batch = torch.stack([group.backbone.transform(image) for image in images])
            if group.layers is None:
                outputs = (group.backbone.forward(batch)[0],)
            else:
                path = choose_forward_path("eager", group.backbone.device,
                                           amp_dtype=group.backbone.amp_dtype)
                outputs = FastForward(group.layers, path, len(images))(batch)
            for number, output in zip(group.numbers, outputs, strict=True):
                parts[number] = output.cpu().numpy()
        ordered = [parts[r.number] for r in self.records]
        if not self.combined:
            return ordered[0].astype(self.store_dtype).astype(np.float32)
        return apply_recipe(ordered, [r.dtype for r in self.records],
                            self.store_dtype).astype(np.float32)


def build_forward(features: dict[str, Any], weights: Sequence[str], device: str,
                  what: str) -> MemberForward:
    """Rebuild and check every backbone of a head's features; group members sharing a network.

    Args:
        features: the provenance of the store the head was fitted on.
        weights: ``--weights`` values (:func:`parse_weights`).
        device: a resolved torch device.
        what: how messages name the head, e.g. ``"head heads/la_loss"``.
    Raises:
        FeatltError: a member's weights are missing (naming the member and ``--weights``); a
            rebuilt backbone differs from its record (naming the attribute).
    """
    from featlt.extractors.backbones import create_backbone
    from featlt.predict.images import backbone_spec_from_provenance
    from featlt.store.provenance import backbone_identity, require_same_provenance

    combined = is_combined(features)
    records = member_records(features)
    chosen = parse_weights(weights, records, combined)
    groups: dict[str, _Group] = {}
    indices: dict[str, list[int | None]] = {}
    for record in records:
        option = f"--weights {record.number}=FILE" if combined else "--weights FILE"
        member = f"{what}: member {record.number} ({record.name})" if combined else what
        spec = backbone_spec_from_provenance(record.provenance, chosen.get(record.number),
                                             option=option, what=member)
        backbone = create_backbone(spec, device=device)  # type: ignore[arg-type]
        require_same_provenance(
            {"backbone": backbone_identity(record.provenance)},
            {"backbone": backbone_identity({"backbone": backbone.provenance})},
            f"{member}: its backbone rebuilt here")
        key = json.dumps([backbone.provenance["model"],
                          backbone.provenance["weights"].get("tensors_sha256"),
                          backbone.provenance["data_config"]], sort_keys=True, default=str)
        if key not in groups:
            groups[key] = _Group(backbone=backbone, numbers=[], layers=None)
            indices[key] = []
        groups[key].numbers.append(record.number)
        indices[key].append(backbone.layer_index)
    for key, group in groups.items():
        if len(group.numbers) > 1:
            group.layers = _Layers(group.backbone.model, indices[key])
    store_dtype = str((features.get("store") or {}).get("dtype") or "float32")
    return MemberForward(records=records, groups=list(groups.values()), combined=combined,
                         store_dtype=store_dtype)

